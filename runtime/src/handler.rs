//! A runtime handler: a name the kubelet asks for (`RuntimeClass.handler`) bound to an OCI
//! runtime binary.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What a handler can do beyond the OCI runtime spec's basics, as the CRI's Status declares it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerFeatures {
    /// Recursive read-only (`rro`) bind mounts.
    pub recursive_read_only: bool,
}

/// The first kernel with `mount_setattr(2)`, which `rro` needs.
const RRO_KERNEL: (u32, u32) = (5, 12);

/// How long the runtime may take to describe itself at start.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(10);

impl Handler {
    /// Asks the runtime (`runc features`, which runc has had since 1.1) on this kernel. A runtime
    /// without the command, or that does not answer in time, offers nothing.
    pub async fn probe_features(&self, kernel: (u32, u32)) -> HandlerFeatures {
        let mut command = tokio::process::Command::new(&self.path);
        command.arg("features").stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        command.kill_on_drop(true);
        let answer = tokio::time::timeout(FEATURES_TIMEOUT, command.output()).await;
        match answer {
            Ok(Ok(out)) if out.status.success() => features_from(&out.stdout, kernel),
            _ => HandlerFeatures::default(),
        }
    }
}

/// What a runtime's `features` JSON offers on a kernel of this version.
fn features_from(features: &[u8], kernel: (u32, u32)) -> HandlerFeatures {
    HandlerFeatures { recursive_read_only: kernel >= RRO_KERNEL && lists_mount_option(features, "rro") }
}

/// Whether an OCI runtime's `features` JSON lists `option` among its mount options.
fn lists_mount_option(features: &[u8], option: &str) -> bool {
    let Ok(features) = serde_json::from_slice::<serde_json::Value>(features) else { return false };
    features["mountOptions"].as_array().is_some_and(|options| options.iter().any(|o| o == option))
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
    fn mount_options_of_features() {
        let runc = br#"{"ociVersionMin": "1.0.0", "mountOptions": ["bind", "ro", "rro", "rw"]}"#;
        assert!(lists_mount_option(runc, "rro"));
        assert!(!lists_mount_option(runc, "rnosuid"));
        assert!(!lists_mount_option(br#"{"mountOptions": ["bind", "ro"]}"#, "rro"));
        assert!(!lists_mount_option(br#"{"hooks": ["prestart"]}"#, "rro"));
        assert!(!lists_mount_option(b"unknown command features", "rro"));
    }

    #[test]
    fn recursive_read_only_needs_the_option_and_mount_setattr() {
        let runc = br#"{"mountOptions": ["rro"]}"#;
        assert!(features_from(runc, (6, 1)).recursive_read_only);
        assert!(features_from(runc, (5, 12)).recursive_read_only);
        assert!(!features_from(runc, (5, 11)).recursive_read_only);
        assert!(!features_from(br#"{"mountOptions": ["ro"]}"#, (6, 1)).recursive_read_only);
    }

    #[tokio::test]
    async fn runtimes_that_cannot_say_offer_nothing() {
        let name = HandlerName::new("test").unwrap();
        let failing = Handler::new(name.clone(), "/bin/false".into());
        assert_eq!(failing.probe_features((6, 1)).await, HandlerFeatures::default());
        let missing = Handler::new(name, "/nonexistent/runc".into());
        assert_eq!(missing.probe_features((6, 1)).await, HandlerFeatures::default());
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
