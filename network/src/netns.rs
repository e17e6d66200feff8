//! Persistent network namespaces for pods, bind-mounted under a directory as `ip netns` does.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use netns_rs::{Env, NetNs};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    #[error("network namespace {0} already exists")]
    Exists(PathBuf),
    #[error("creating network namespace {path}: {source}")]
    Create { path: PathBuf, source: netns_rs::Error },
    #[error("creating network namespace {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("bringing lo up in network namespace {path}: {source}")]
    Loopback { path: PathBuf, source: io::Error },
    #[error("removing network namespace {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// A netns-rs environment whose persist directory is the one crisp was given.
struct DirEnv(PathBuf);

impl Env for DirEnv {
    fn persist_dir(&self) -> PathBuf {
        self.0.clone()
    }
}

/// Making the directory a shared mount point bind-mounts it onto itself when it is not one yet;
/// two threads doing that at once would stack two mounts.
static INIT: Mutex<()> = Mutex::new(());

/// Creates a persistent network namespace bind-mounted at `dir/name` (`dir` made a shared mount
/// point, as `ip netns` does) and brings its `lo` up. Blocking: the namespace is entered only on
/// threads of its own, which end afterwards.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(NetnsError::InvalidName(name.to_owned()));
    }
    let path = dir.join(name);
    let env = DirEnv(dir.to_owned());
    {
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        env.init().map_err(|source| NetnsError::Create { path: path.clone(), source })?;
    }
    // netns-rs would mount over an existing namespace; claiming the name first refuses that.
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(NetnsError::Exists(path)),
        Err(source) => return Err(NetnsError::Io { path, source }),
    }
    let netns = match NetNs::new_with_env(name, env) {
        Ok(netns) => netns,
        Err(source) => {
            // netns-rs removes its mount point only when the mount itself failed.
            let _ = fs::remove_file(&path);
            return Err(NetnsError::Create { path, source });
        }
    };
    let up = thread::scope(|s| {
        s.spawn(|| {
            netns.enter().map_err(|e| io::Error::other(e.to_string()))?;
            loopback_up()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread panicked")))
    });
    drop(netns);
    if let Err(source) = up {
        if let Err(e) = remove(&path) {
            tracing::warn!("cleaning up after a failed netns create: {e}");
        }
        return Err(NetnsError::Loopback { path, source });
    }
    Ok(path)
}

/// Connects to `localhost:port` in the network namespace at `path`, over IPv4 and then IPv6, as
/// port forwarding does. A socket stays in the namespace it was made in whichever thread uses it
/// later. Blocking: the namespace is entered only on a thread of its own, which ends afterwards.
pub fn connect_local(path: &Path, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let netns = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(path)?;
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on a descriptor we hold, for this thread only (no CLONE_NEWNS).
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let v4 = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout);
            v4.or_else(|e| {
                TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), timeout).map_err(|_| e)
            })
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread panicked")))
    })
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq we own.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Unmounts and deletes a namespace made by [`create`]; a path already gone is not an error.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    let remove_err = |source| NetnsError::Remove { path: path.to_owned(), source };
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(remove_err(e)),
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(remove_err(io::Error::other("not a network namespace path")));
    };
    match NetNs::get_from_env(name, DirEnv(dir.to_owned())).and_then(NetNs::remove) {
        Ok(()) => {}
        // A mount point left by a create that failed before its mount: nothing to unmount.
        Err(netns_rs::Error::UnmountError(_, errno)) if errno as i32 == libc::EINVAL => {}
        Err(e) => return Err(remove_err(io::Error::other(e.to_string()))),
    }
    // netns-rs ignores a failure to delete the mount point; a leftover file is an error here.
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(remove_err(e)),
    }
}
