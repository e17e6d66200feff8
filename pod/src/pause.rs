//! The built-in pause program, compiled from `pause/pause.c` as a static executable.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::pause_spec::PauseProcess;

/// The executable's bytes, to be written into a pod's minimal rootfs or an image layer.
pub const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crisp-pause"));

/// Mount points the runtime needs in the pause's root; made here once, so that the shared
/// read-only rootfs is never written to while pods start.
const MOUNT_POINTS: [&str; 4] = ["proc", "dev", "sys", "etc"];

/// Makes the rootfs every pod's built-in pause runs from, `dir/rootfs`, unless an identical
/// one is there: built beside it and renamed into place, so a crash leaves the old or the new.
pub fn install_rootfs(dir: &Path) -> io::Result<PauseProcess> {
    let rootfs = dir.join("rootfs");
    let process = PauseProcess { rootfs: rootfs.clone(), args: vec!["/pause".into()], env: vec![] };
    if fs::read(rootfs.join("pause")).is_ok_and(|b| b == BINARY) && MOUNT_POINTS.iter().all(|m| rootfs.join(m).is_dir())
    {
        return Ok(process);
    }
    fs::create_dir_all(dir)?;
    let staging: PathBuf = dir.join(format!(".rootfs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging)?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))?;
    for m in MOUNT_POINTS {
        fs::create_dir(staging.join(m))?;
    }
    let binary = staging.join("pause");
    fs::write(&binary, BINARY)?;
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))?;
    fs::File::open(&binary)?.sync_all()?;
    let old = dir.join(format!(".rootfs-old-{}", std::process::id()));
    if rootfs.exists() {
        fs::rename(&rootfs, &old)?;
    }
    fs::rename(&staging, &rootfs)?;
    fs::File::open(dir)?.sync_all()?;
    let _ = fs::remove_dir_all(&old);
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::thread::sleep;
    use std::time::Duration;

    fn start(dir: &tempfile::TempDir) -> Child {
        let path = dir.path().join("pause");
        std::fs::write(&path, BINARY).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Command::new(&path).spawn().unwrap()
    }

    fn signal(child: &Child, sig: libc::c_int) {
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
    }

    /// The ELF program header types, read from a 64-bit little-endian executable.
    fn program_header_types(elf: &[u8]) -> Vec<u32> {
        let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
        let (phoff, phentsize, phnum) =
            (u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize, u16_at(0x36), u16_at(0x38));
        (0..phnum).map(|i| u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap())).collect()
    }

    #[test]
    fn is_a_static_executable() {
        const PT_LOAD: u32 = 1;
        const PT_INTERP: u32 = 3;
        assert_eq!(&BINARY[..4], b"\x7fELF");
        assert_eq!(BINARY[4], 2, "64-bit");
        let types = program_header_types(BINARY);
        assert!(types.contains(&PT_LOAD));
        assert!(!types.contains(&PT_INTERP), "the pause program must not need a dynamic loader");
    }

    #[test]
    fn rootfs_is_installed_once_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let process = install_rootfs(dir.path()).unwrap();
        assert_eq!(process.args, ["/pause"]);
        assert_eq!(fs::read(process.rootfs.join("pause")).unwrap(), BINARY);
        for m in MOUNT_POINTS {
            assert!(process.rootfs.join(m).is_dir(), "{m}");
        }
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&process.rootfs);
        install_rootfs(dir.path()).unwrap();
        assert_eq!(inode(&process.rootfs), before, "an intact rootfs is left as it is");
        fs::write(process.rootfs.join("pause"), b"damaged").unwrap();
        install_rootfs(dir.path()).unwrap();
        assert_eq!(fs::read(process.rootfs.join("pause")).unwrap(), BINARY);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no staging dirs left");
    }

    #[test]
    fn waits_until_terminated_and_exits_zero() {
        for sig in [libc::SIGTERM, libc::SIGINT] {
            let dir = tempfile::tempdir().unwrap();
            let mut child = start(&dir);
            // Signals it does not act on leave it running.
            sleep(Duration::from_millis(100));
            signal(&child, libc::SIGCHLD);
            sleep(Duration::from_millis(100));
            assert!(child.try_wait().unwrap().is_none(), "pause exited before it was told to");
            signal(&child, sig);
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(0), "signal {sig}: {status}");
        }
    }
}
