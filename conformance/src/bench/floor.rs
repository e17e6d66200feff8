//! Floor: the pod the `containers` workload asks a runtime for (a network namespace on the CNI
//! network, a pause holding the pod's IPC, UTS and PID namespaces, a `sleep` container joining
//! them on an overlay rootfs) made directly, with no daemon: the least that work costs on this
//! host, which a runtime's times read as a ratio over. None of crisp's code is used: the CNI
//! chain, the bundles and the runtime calls are this module's own.
//!
//! Every syscall and child process runs on one blocking thread; the network namespace is made
//! on a thread of its own.

mod bundle;
mod cni;
mod mount;
mod netns;
mod pod;
mod report;
mod runc;
mod setup;

use std::io;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use report::{FloorReport, POD, StepTimes};

use setup::Setup;

#[derive(Debug, Clone)]
pub struct FloorConfig {
    /// The network is this dir's first network file by name, as crisp picks it.
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for, in order: the plugins' `CNI_PATH`.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// An OCI runtime with runc's command line.
    pub runtime: PathBuf,
    /// A static busybox: the pause's rootfs and the container's lower layer are made of it.
    pub busybox: PathBuf,
    /// Each run makes a dir of its own in it (bundles, rootfs, netns files, runtime state) and
    /// removes it at the end.
    pub work_dir: PathBuf,
}

impl Default for FloorConfig {
    /// crisp's defaults, and Debian's busybox-static.
    fn default() -> Self {
        FloorConfig {
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
            runtime: "/usr/sbin/runc".into(),
            busybox: "/bin/busybox".into(),
            work_dir: "/run/crisp-bench-floor".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("not root: the floor makes namespaces, mounts and cgroups")]
    NotRoot,
    #[error("no conflist in {}{}", dir.display(), rejected.iter().map(|r| format!("; {r}")).collect::<String>())]
    NoNetwork { dir: PathBuf, rejected: Vec<String> },
    #[error("CNI plugin {plugin} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("CNI {command} of plugin {plugin}: {message}")]
    Cni { command: &'static str, plugin: String, message: String },
    #[error("{runtime} {command} {id}: {stderr}")]
    Runtime { runtime: String, command: &'static str, id: String, stderr: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("left behind: {}", .0.join("; "))]
    Leftovers(Vec<String>),
    #[error("stopped before the end")]
    Stopped,
}

impl FloorError {
    fn io(what: impl Into<String>, source: io::Error) -> FloorError {
        FloorError::Io { what: what.into(), source }
    }
}

/// Makes and tears down `count` pods one after the other, after one untimed pod (the first
/// one pays for cold caches). Dropping the future stops the run after the pod being made,
/// which is torn down as every pod is.
pub async fn run(config: &FloorConfig, count: NonZeroUsize) -> Result<FloorReport, FloorError> {
    if unsafe { libc::geteuid() } != 0 {
        return Err(FloorError::NotRoot);
    }
    // The pods' inits outlive the runc that made them; as the subreaper this process gets them
    // instead of PID 1, which on this host never reaps them, and reaps them after delete.
    // SAFETY: prctl with plain integers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(FloorError::io("cannot become a child subreaper", io::Error::last_os_error()));
    }
    let config = config.clone();
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let stopped = stop.0.clone();
    match tokio::task::spawn_blocking(move || bench(&config, count, &stopped)).await {
        Ok(result) => result,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

fn bench(config: &FloorConfig, count: NonZeroUsize, stopped: &AtomicBool) -> Result<FloorReport, FloorError> {
    let mut setup = Setup::prepare(config)?;
    pod::time(&setup, "warm-up")?;
    let mut samples = Vec::with_capacity(count.get());
    for iteration in 0..count.get() {
        if stopped.load(Ordering::Relaxed) {
            return Err(FloorError::Stopped);
        }
        samples.push(pod::time(&setup, &iteration.to_string())?);
    }
    let network = &setup.chain.network;
    let report = FloorReport::new(
        format!("{} ({})", network.path.display(), network.name),
        setup.runtime_version.clone(),
        &samples,
    );
    let left = setup.release();
    if !left.is_empty() {
        return Err(FloorError::Leftovers(left));
    }
    Ok(report)
}

/// Tells the blocking run to stop when the future awaiting it is dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
