//! Mounting an image's unpacked layers as one root filesystem with overlayfs.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The kernel reads mount options from one page.
const MAX_OPTIONS: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay mount options for {target} exceed one page ({len} bytes): too many layers")]
    TooManyLayers { target: PathBuf, len: usize },
    #[error("a layer path holds ':' or ',': {0}")]
    BadPath(PathBuf),
    #[error("mounting overlay at {target}: {source}")]
    Mount { target: PathBuf, source: io::Error },
}

/// Where a writable overlay keeps its changes.
pub struct Upper<'a> {
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Mounts `lowers` (topmost first) at `target`; read-only without `upper`, in which case at
/// least two lowers are needed, as overlayfs requires. Blocking.
pub fn mount_overlay(lowers: &[PathBuf], upper: Option<Upper<'_>>, target: &Path) -> Result<(), OverlayError> {
    for path in lowers.iter().map(PathBuf::as_path).chain(upper.iter().flat_map(|u| [u.upper, u.work])) {
        if path.to_string_lossy().contains([':', ',']) {
            return Err(OverlayError::BadPath(path.to_owned()));
        }
    }
    let lowerdir = lowers.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join(":");
    let mut options = format!("lowerdir={lowerdir}");
    let mut flags = MsFlags::empty();
    match &upper {
        Some(u) => options += &format!(",upperdir={},workdir={}", u.upper.display(), u.work.display()),
        None => flags |= MsFlags::MS_RDONLY,
    }
    if options.len() > MAX_OPTIONS {
        return Err(OverlayError::TooManyLayers { target: target.to_owned(), len: options.len() });
    }
    let mount_err = |source| OverlayError::Mount { target: target.to_owned(), source };
    std::fs::create_dir_all(target).map_err(mount_err)?;
    mount(Some("overlay"), target, Some("overlay"), flags, Some(options.as_str())).map_err(|e| mount_err(e.into()))
}

/// Unmounts whatever is mounted at `target`; nothing mounted is no error. Blocking.
pub fn unmount(target: &Path) -> io::Result<()> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn read_only_union_of_lowers() {
        let dir = tempfile::tempdir().unwrap();
        let (top, bottom, target) = (dir.path().join("top"), dir.path().join("bottom"), dir.path().join("merged"));
        fs::create_dir_all(&top).unwrap();
        fs::create_dir_all(&bottom).unwrap();
        fs::write(top.join("a"), "top").unwrap();
        fs::write(bottom.join("a"), "bottom").unwrap();
        fs::write(bottom.join("b"), "b").unwrap();
        mount_overlay(&[top.clone(), bottom.clone()], None, &target).unwrap();
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                unmount(self.0).unwrap();
            }
        }
        let guard = Unmount(&target);
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "top");
        assert_eq!(fs::read_to_string(target.join("b")).unwrap(), "b");
        let err = fs::write(target.join("c"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        drop(guard);
        assert!(!target.join("a").exists());
        unmount(&target).unwrap();
    }

    #[test]
    fn refuses_option_separators_in_paths() {
        let err = mount_overlay(&["/a:b".into(), "/c".into()], None, Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, OverlayError::BadPath(_)));
    }
}
