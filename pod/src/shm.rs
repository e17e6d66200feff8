//! The pod's own `/dev/shm`: a tmpfs its containers share, sized by configuration, so that one
//! pod cannot fill the host's shared memory.

use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Mounts a fresh tmpfs at `path` (created if missing). Blocking.
pub fn mount_shm(path: &Path, size_bytes: u64) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    let options = format!("mode=1777,size={size_bytes}");
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(io::Error::from)
}

/// Unmounts every mount stacked at `path` and removes the directory; nothing there is no error.
pub fn unmount_shm(path: &Path) -> io::Result<()> {
    loop {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(e.into()),
        }
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_mounted(path: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let path = path.to_str().unwrap();
        mounts.lines().any(|l| l.split(' ').nth(4) == Some(path))
    }

    #[test]
    fn mounts_a_sized_tmpfs_and_unmounts_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let shm = dir.path().join("shm");
        mount_shm(&shm, 1 << 20).unwrap();
        let guard = scopeguard(&shm);
        assert!(is_mounted(&shm));
        let stat = nix::sys::statvfs::statvfs(&shm).unwrap();
        assert_eq!(stat.blocks() * stat.fragment_size(), 1 << 20);
        drop(guard);
        assert!(!is_mounted(&shm));
        assert!(!shm.exists());
        unmount_shm(&shm).unwrap();
    }

    /// Unmounts even when an assertion fails first.
    fn scopeguard(path: &Path) -> impl Drop + '_ {
        struct Guard<'a>(&'a Path);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                unmount_shm(self.0).unwrap();
            }
        }
        Guard(path)
    }
}
