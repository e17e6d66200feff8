//! The mounts a floor pod makes: its network namespace's bind mount and its container's overlay.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Bind-mounts `source` on `target`.
pub(super) fn bind(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target) = (c_path(source)?, c_path(target)?);
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) })
}

/// Mounts on `target` the overlay of `lower` under the writable `upper` (`work` its scratch dir).
pub(super) fn overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let (target, options) = (c_path(target)?, CString::new(options).map_err(io::Error::other)?);
    let overlay: &CStr = c"overlay";
    check(unsafe { libc::mount(overlay.as_ptr(), target.as_ptr(), overlay.as_ptr(), 0, options.as_ptr().cast()) })
}

/// Unmounts `target`; with `detach`, also while something still uses it. Not mounted is fine.
pub(super) fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    match check(unsafe { libc::umount2(c_path(target)?.as_ptr(), flags) }) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => Ok(()),
        result => result,
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

pub(super) fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
