//! A pod's network namespace, kept alive by a bind mount on a file: made by a thread of its own
//! that unshares, so that no other thread (a tokio worker, a pooled blocking thread) ever ends
//! up in it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;

use super::mount::{self, check};

/// A new network namespace with `lo` up, bind-mounted on `path` (created here).
pub(super) fn create(path: &Path) -> io::Result<()> {
    File::create(path)?;
    let target = path.to_owned();
    std::thread::spawn(move || {
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
        lo_up()?;
        // thread-self: /proc/self/ns/net is the main thread's namespace, not this one.
        mount::bind(Path::new("/proc/thread-self/ns/net"), &target)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Unmounts and deletes the namespace's file; a file that is not there, or not mounted, is fine.
pub(super) fn remove(path: &Path) -> io::Result<()> {
    mount::unmount(path, true)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace, as a runtime does for a pod.
fn lo_up() -> io::Result<()> {
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(c"lo".to_bytes()) {
        *to = *from as libc::c_char;
    }
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) })
}
