//! Unix socket addresses hold at most 107 bytes, less than a deep state dir and a 64-digit
//! container ID need: long paths are reached through an open descriptor of their directory.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `sun_path` is 108 bytes with the terminating NUL.
const MAX_SUN_PATH: usize = 107;

/// Calls `f` with `path`, or with `/proc/self/fd/<dir>/<name>` when `path` is too long, keeping
/// the directory open for the call.
pub(crate) fn with_socket_path<T>(path: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    if path.as_os_str().len() <= MAX_SUN_PATH {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = File::options().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir)?;
    let short: PathBuf = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    f(&short)
}

/// A path another process can connect to `path` by: `path` itself when it fits, else
/// `/proc/<our pid>/fd/<dir>/<name>`, valid while the returned directory stays open.
pub(crate) fn reachable_path(path: &Path) -> io::Result<(PathBuf, Option<File>)> {
    if path.as_os_str().len() <= MAX_SUN_PATH {
        return Ok((path.to_owned(), None));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok((path.to_owned(), None));
    };
    let dir = File::options().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir)?;
    let short = Path::new(&format!("/proc/{}/fd/{}", std::process::id(), dir.as_raw_fd())).join(name);
    Ok((short, Some(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn binds_and_connects_beyond_the_address_limit() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(100)).join("e".repeat(64));
        std::fs::create_dir_all(&deep).unwrap();
        let socket = deep.join("monitor.sock");
        assert!(socket.as_os_str().len() > MAX_SUN_PATH);
        let listener = with_socket_path(&socket, |p| UnixListener::bind(p)).unwrap();
        assert!(socket.exists(), "the socket is made where it was asked for");
        let _client = with_socket_path(&socket, |p| UnixStream::connect(p)).unwrap();
        listener.accept().unwrap();
    }
}
