//! Container identifiers as the CRI and the OCI runtimes see them.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("invalid container id {0:?}: want 64 lowercase hex digits")]
pub struct InvalidContainerId(pub String);

/// A container (or sandbox) id: 64 lowercase hex digits, as containerd and CRI-O make them. The
/// fixed form keeps ids safe as file names and runtime arguments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// A fresh id from the kernel's random source.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes);
        ContainerId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidContainerId> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(ContainerId(s.to_owned()))
        } else {
            Err(InvalidContainerId(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// getrandom(2) without flags blocks only until the pool is first seeded and then cannot fail
/// for a valid buffer, so an error here means a broken kernel, not a condition to handle.
fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the writable slice `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            assert!(err.kind() == std::io::ErrorKind::Interrupted, "getrandom failed: {err}");
            continue;
        }
        filled += n as usize;
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContainerId {
    type Error = InvalidContainerId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        ContainerId::parse(&s)
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let a = ContainerId::random();
        let b = ContainerId::random();
        assert_ne!(a, b);
        assert_eq!(ContainerId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn parse_wants_64_lowercase_hex() {
        let ok = "0123456789abcdef".repeat(4);
        assert_eq!(ContainerId::parse(&ok).unwrap().to_string(), ok);
        for bad in [String::new(), ok[..63].to_owned(), format!("{ok}0"), ok.to_uppercase(), ok.replace('a', "g")] {
            assert!(ContainerId::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_checks_the_form() {
        let id = ContainerId::random();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ContainerId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ContainerId>("\"../etc\"").is_err());
    }
}
