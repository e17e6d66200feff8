//! A runtime handler: a name the kubelet asks for (`RuntimeClass.handler`) bound to an OCI
//! runtime binary.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
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

/// How long the runtime may take to answer each question at start: a hung binary must not hold
/// the daemon's start.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Handler {
    /// Whether the runtime is usable, and what it offers on this kernel. It must be an
    /// executable that answers `--version`; `features` (runc has it since 1.1) is optional: a
    /// runtime without the command, or whose answer fails, offers nothing beyond the basics.
    pub async fn probe(&self, kernel: (u32, u32)) -> Result<HandlerFeatures, HandlerError> {
        self.check()?;
        let unusable =
            |reason: String| HandlerError::Unusable { name: self.name.clone(), path: self.path.clone(), reason };
        let version = self.ask("--version").await.map_err(unusable)?;
        if !version.status.success() {
            let said = String::from_utf8_lossy(&version.stderr).lines().next().unwrap_or_default().to_owned();
            return Err(unusable(format!("`--version` failed ({}): {said}", version.status)));
        }
        Ok(match self.ask("features").await {
            Ok(out) if out.status.success() => features_from(&out.stdout, kernel),
            _ => HandlerFeatures::default(),
        })
    }

    /// Runs the runtime with one argument, for at most [`PROBE_TIMEOUT`]. The runtime runs in a
    /// process group of its own, killed whole on the timeout, so that nothing it started is left.
    async fn ask(&self, arg: &str) -> Result<std::process::Output, String> {
        let mut command = tokio::process::Command::new(&self.path);
        command
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| format!("cannot run it: {e}"))?;
        let group = child.id().and_then(|pid| i32::try_from(pid).ok());
        match tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!("`{arg}`: {e}")),
            Err(_) => {
                if let Some(group) = group {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::SIGKILL);
                }
                Err(format!("`{arg}` did not answer within {PROBE_TIMEOUT:?}"))
            }
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
    async fn a_runtime_must_run_and_answer_its_version_but_features_are_optional() {
        let dir = tempfile::tempdir().unwrap();
        let name = HandlerName::new("test").unwrap();
        let script = |file: &str, body: &str| {
            let path = dir.path().join(file);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            Handler::new(name.clone(), path)
        };
        // crun 1.8 answers `--version` but has no `features` command.
        let no_features = script("old", r#"[ "$1" = --version ] && exit 0; echo "unknown command $1" >&2; exit 1"#);
        assert_eq!(no_features.probe((6, 1)).await.unwrap(), HandlerFeatures::default());
        let rro = script("rro", r#"[ "$1" = features ] && echo '{"mountOptions": ["rro"]}'; exit 0"#);
        assert!(rro.probe((6, 1)).await.unwrap().recursive_read_only);

        let err = script("broken", "echo 'libfoo.so: not found' >&2; exit 1").probe((6, 1)).await.unwrap_err();
        let err = err.to_string();
        assert!(err.contains("`--version` failed") && err.contains("libfoo.so: not found"), "{err}");
        let missing = Handler::new(name.clone(), dir.path().join("absent"));
        assert!(missing.probe((6, 1)).await.unwrap_err().to_string().contains("No such file"));
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, [0u8, 1, 2, 3]).unwrap();
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = Handler::new(name, garbage).probe((6, 1)).await.unwrap_err().to_string();
        assert!(err.contains("garbage is not usable"), "{err}");
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
