//! The built-in pause program, compiled from `pause/pause.c` as a static executable.

/// The executable's bytes, to be written into a pod's minimal rootfs or an image layer.
pub const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crisp-pause"));

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
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
