//! Helpers of the root tests: a netns directory that is unmounted on drop, and running code
//! inside a network namespace on a thread of its own.

use std::fs;
use std::path::Path;
use std::thread::{self, JoinHandle};

use nix::mount::{MntFlags, umount2};

/// A directory for network namespaces; on drop, the namespaces left in it are removed and the
/// bind mount `netns::create` made of it is undone.
pub struct NetnsDir {
    dir: tempfile::TempDir,
}

impl NetnsDir {
    pub fn new() -> NetnsDir {
        NetnsDir { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NetnsDir {
    fn drop(&mut self) {
        for entry in fs::read_dir(self.path()).into_iter().flatten().flatten() {
            let _ = crisp_network::netns::remove(&entry.path());
        }
        while mounted(self.path()) {
            if umount2(self.path(), MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

/// Whether something is mounted at `path`.
pub fn mounted(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

/// Runs `work` on a new thread inside the network namespace at `path`; the thread ends with it.
pub fn in_netns<T: Send + 'static>(path: &Path, work: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let netns = netns_rs::get_from_path(path).unwrap();
    thread::spawn(move || {
        netns.enter().unwrap();
        work()
    })
}
