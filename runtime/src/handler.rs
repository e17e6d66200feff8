//! A runtime handler: a name the kubelet asks for (`RuntimeClass.handler`) bound to an OCI
//! runtime binary.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("invalid runtime handler name {0:?}: use lowercase letters, digits and '-', at most 63 characters")]
    InvalidName(String),
    #[error("runtime handler {name}: {path} is not usable: {reason}")]
    Unusable { name: HandlerName, path: PathBuf, reason: String },
}

/// A handler name as `RuntimeClass.handler` allows it: a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandlerName(String);

impl HandlerName {
    pub fn new(name: &str) -> Result<Self, HandlerError> {
        let label_ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if label_ok { Ok(HandlerName(name.to_owned())) } else { Err(HandlerError::InvalidName(name.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: HandlerName,
    pub path: PathBuf,
}

impl Handler {
    pub fn new(name: HandlerName, path: PathBuf) -> Self {
        Handler { name, path }
    }

    /// Whether the runtime binary is there to be run: an executable regular file.
    pub fn check(&self) -> Result<(), HandlerError> {
        check_executable(&self.path).map_err(|reason| HandlerError::Unusable {
            name: self.name.clone(),
            path: self.path.clone(),
            reason,
        })
    }
}

fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("not executable".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["runc", "crun", "kata-qemu", "r2"] {
            assert_eq!(HandlerName::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Runc", "-runc", "runc-", "run c", "a/b", &"x".repeat(64)] {
            assert!(matches!(HandlerName::new(bad), Err(HandlerError::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn check_finds_missing_and_non_executable_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let name = HandlerName::new("test").unwrap();

        let missing = Handler::new(name.clone(), dir.path().join("absent"));
        let err = missing.check().unwrap_err().to_string();
        assert!(err.contains("absent") && err.contains("No such file"), "{err}");

        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Handler::new(name.clone(), plain.clone()).check().unwrap_err().to_string();
        assert!(err.contains("not executable"), "{err}");

        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
        Handler::new(name.clone(), plain).check().unwrap();

        let err = Handler::new(name, dir.path().to_owned()).check().unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
