//! What every pod of a floor run shares: a private dir (the busybox rootfs, the runtime's
//! state, the pods' bundles), the network's plugin chain, the runtime and a cgroup parent. All of
//! it goes when the run ends, on error and panic too.

use std::fs;
use std::path::{Path, PathBuf};

use super::cni::{Chain, Network};
use super::runc::{self, Runtime};
use super::{FloorConfig, FloorError};
use crate::suite::pod_config::fresh_token;

pub(super) struct Setup {
    pub(super) chain: Chain,
    pub(super) runtime: Runtime,
    pub(super) runtime_version: String,
    /// Every pod's name starts with it: CNI container IDs, runtime IDs and cgroups of this run.
    pub(super) token: String,
    /// Under the root of every cgroup hierarchy, e.g. `crisp-bench-floor-<token>`.
    pub(super) cgroup_parent: String,
    dir: Option<tempfile::TempDir>,
    /// The work dir, when this run made it.
    made_work_dir: Option<PathBuf>,
}

impl Setup {
    pub(super) fn prepare(config: &FloorConfig) -> Result<Setup, FloorError> {
        let chain = Chain::new(Network::first_in(&config.cni_conf_dir)?, &config.cni_bin_dirs)?;
        let runtime_version = runc::version(&config.runtime)?;
        let made_work_dir = (!config.work_dir.exists()).then(|| config.work_dir.clone());
        fs::create_dir_all(&config.work_dir)
            .map_err(|e| FloorError::io(format!("cannot create {}", config.work_dir.display()), e))?;
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&config.work_dir)
            .map_err(|e| FloorError::io(format!("cannot make a dir in {}", config.work_dir.display()), e))?;
        let runtime = Runtime::new(&config.runtime, dir.path().join("runtime"));
        let token = fresh_token();
        let mut setup = Setup {
            chain,
            runtime_version,
            runtime,
            cgroup_parent: format!("crisp-bench-floor-{token}"),
            token,
            dir: Some(dir),
            made_work_dir,
        };
        setup.busybox_rootfs(&config.busybox)?;
        fs::create_dir(setup.pods_dir()).map_err(|e| FloorError::io("cannot create the pods' dir", e))?;
        Ok(setup)
    }

    /// The pause's read-only rootfs and the containers' lower layer: a static busybox that
    /// `sleep` links to, and the mount points runc needs.
    pub(super) fn rootfs(&self) -> PathBuf {
        self.path().join("busybox")
    }

    pub(super) fn pods_dir(&self) -> PathBuf {
        self.path().join("pods")
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("not released").path()
    }

    fn busybox_rootfs(&mut self, busybox: &Path) -> Result<(), FloorError> {
        let rootfs = self.rootfs();
        let made = (|| {
            for dir in ["bin", "proc", "dev", "sys"] {
                fs::create_dir_all(rootfs.join(dir))?;
            }
            fs::copy(busybox, rootfs.join("bin/busybox"))?;
            std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep"))
        })();
        made.map_err(|e| FloorError::io(format!("cannot make a busybox rootfs from {}", busybox.display()), e))
    }

    /// Removes the cgroup parent from every hierarchy and the run's dir: what is still there.
    pub(super) fn release(&mut self) -> Vec<String> {
        let Some(dir) = self.dir.take() else { return Vec::new() };
        let mut left = Vec::new();
        for cgroup in cgroup_dirs(&self.cgroup_parent) {
            if let Err(e) = fs::remove_dir(&cgroup) {
                left.push(format!("cgroup {}: {e}", cgroup.display()));
            }
        }
        let path = dir.path().to_owned();
        if let Err(e) = dir.close() {
            left.push(format!("{}: {e}", path.display()));
        }
        // Another run going on at the same time keeps it: not empty, it stays.
        if let Some(work_dir) = &self.made_work_dir {
            let _ = fs::remove_dir(work_dir);
        }
        left
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for left in self.release() {
            eprintln!("floor: left after the run: {left}");
        }
    }
}

/// `name` in the unified hierarchy (cgroup v2) or in each v1 hierarchy, where it exists.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = fs::read_dir(root).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>());
    [root.to_owned()]
        .into_iter()
        .chain(hierarchies.unwrap_or_default())
        .map(|hierarchy| hierarchy.join(name))
        .filter(|dir| dir.is_dir())
        .collect()
}
