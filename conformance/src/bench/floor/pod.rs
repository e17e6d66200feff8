//! One floor pod, each step timed: its network namespace, CNI ADD, the pause (created and
//! started), then the container on an overlay rootfs (mounted, created and started). Teardown
//! undoes whatever was done, in reverse, whether the pod came up or not, and on panic too.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::runc::Runtime;
use super::setup::Setup;
use super::{FloorError, bundle, mount, netns};

/// One pod's wall times, and its addresses.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) netns: Duration,
    pub(super) cni_add: Duration,
    pub(super) pause: Duration,
    pub(super) container: Duration,
    /// From the first step's start to the container running.
    pub(super) pod: Duration,
    pub(super) addresses: Vec<String>,
}

/// Makes pod `name` and tears it down; its times, once nothing of it is left. What a failed
/// pod left goes to stderr beside its error.
pub(super) fn time(setup: &Setup, name: &str) -> Result<Sample, FloorError> {
    let mut pod = Pod::new(setup, name)?;
    let made = pod.make();
    let left = pod.teardown();
    match made {
        Ok(_) if !left.is_empty() => Err(FloorError::Leftovers(left)),
        Ok(sample) => Ok(sample),
        Err(error) => {
            report_leftovers(&pod.id, left);
            Err(error)
        }
    }
}

/// What a pod has made so far: what teardown must undo.
struct Pod<'a> {
    setup: &'a Setup,
    /// The CNI container ID, and the prefix of the runtime's IDs.
    id: String,
    dir: PathBuf,
    netns: Option<PathBuf>,
    /// Set once ADD ran, with its final result if it succeeded: DEL runs either way.
    cni: Option<Option<Value>>,
    /// The runtime ID, and the init's pid once created.
    pause: Option<(String, Option<u32>)>,
    overlay: Option<PathBuf>,
    container: Option<(String, Option<u32>)>,
}

impl<'a> Pod<'a> {
    fn new(setup: &'a Setup, name: &str) -> Result<Pod<'a>, FloorError> {
        let id = format!("{}-{name}", setup.token);
        let dir = setup.pods_dir().join(&id);
        fs::create_dir(&dir).map_err(|e| FloorError::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Pod { setup, id, dir, netns: None, cni: None, pause: None, overlay: None, container: None })
    }

    fn make(&mut self) -> Result<Sample, FloorError> {
        let started = Instant::now();
        let netns = self.dir.join("netns");
        self.netns = Some(netns.clone());
        netns::create(&netns).map_err(|e| FloorError::io("cannot create a network namespace", e))?;
        let netns_time = started.elapsed();

        let step = Instant::now();
        self.cni = Some(None);
        let attached = self.setup.chain.add(&self.id, &netns)?;
        self.cni = Some(Some(attached.result));
        let addresses = attached.addresses;
        let cni_add = step.elapsed();

        let step = Instant::now();
        let pause_id = format!("{}-pause", self.id);
        let spec = bundle::pause(&self.setup.rootfs(), &netns, &self.cgroups_path(&pause_id));
        let bundle = self.bundle("pause", &spec)?;
        self.pause = Some((pause_id.clone(), None));
        let pause_pid = self.setup.runtime.create(&pause_id, &bundle)?;
        self.pause = Some((pause_id.clone(), Some(pause_pid)));
        self.setup.runtime.start(&pause_id)?;
        let pause = step.elapsed();

        let step = Instant::now();
        let rootfs = self.overlay()?;
        let container_id = format!("{}-sleep", self.id);
        let spec = bundle::container(&rootfs, pause_pid, &self.cgroups_path(&container_id));
        let bundle = self.bundle("sleep", &spec)?;
        self.container = Some((container_id.clone(), None));
        let container_pid = self.setup.runtime.create(&container_id, &bundle)?;
        self.container = Some((container_id.clone(), Some(container_pid)));
        self.setup.runtime.start(&container_id)?;
        let container = step.elapsed();

        Ok(Sample { netns: netns_time, cni_add, pause, container, pod: started.elapsed(), addresses })
    }

    fn cgroups_path(&self, runtime_id: &str) -> String {
        format!("/{}/{runtime_id}", self.setup.cgroup_parent)
    }

    /// A bundle dir holding `spec` as its config.json.
    fn bundle(&self, name: &str, spec: &Value) -> Result<PathBuf, FloorError> {
        let bundle = self.dir.join(name);
        let written = fs::create_dir(&bundle)
            .and_then(|()| fs::write(bundle.join("config.json"), serde_json::to_vec(spec).expect("JSON")));
        written.map_err(|e| FloorError::io(format!("cannot write the bundle {}", bundle.display()), e))?;
        Ok(bundle)
    }

    /// The container's rootfs: the busybox rootfs under a fresh writable layer, as an image's
    /// layers are under a container's.
    fn overlay(&mut self) -> Result<PathBuf, FloorError> {
        let (upper, work, rootfs) = (self.dir.join("upper"), self.dir.join("work"), self.dir.join("rootfs"));
        let mounted = [&upper, &work, &rootfs]
            .iter()
            .try_for_each(fs::create_dir)
            .and_then(|()| mount::overlay(&self.setup.rootfs(), &upper, &work, &rootfs));
        mounted.map_err(|e| FloorError::io(format!("cannot mount an overlay on {}", rootfs.display()), e))?;
        self.overlay = Some(rootfs.clone());
        Ok(rootfs)
    }

    /// Undoes what was made, last first; every step is tried whatever failed before. What could
    /// not be undone, in words.
    fn teardown(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        let runtime = &self.setup.runtime;
        if let Some((id, pid)) = self.container.take() {
            left.extend(delete(runtime, &id, pid));
        }
        if let Some(rootfs) = self.overlay.take() {
            left.extend(mount::unmount(&rootfs, false).err().map(|e| format!("overlay {}: {e}", rootfs.display())));
        }
        if let Some((id, pid)) = self.pause.take() {
            left.extend(delete(runtime, &id, pid));
        }
        if let (Some(added), Some(netns)) = (self.cni.take(), &self.netns) {
            left.extend(self.setup.chain.del(&self.id, netns, added.as_ref()).err().map(|e| e.to_string()));
        }
        if let Some(netns) = self.netns.take() {
            left.extend(netns::remove(&netns).err().map(|e| format!("netns {}: {e}", netns.display())));
        }
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => left.push(format!("{}: {e}", self.dir.display())),
            _ => {}
        }
        left
    }
}

/// Deletes container `id` and reaps its init `pid`, which [`super::run`] made this process's
/// child: this host's PID 1 reaps no orphan, so it would stay a zombie. runc's delete returns
/// once the init is dead, so the wait never blocks. What is left, in words.
fn delete(runtime: &Runtime, id: &str, pid: Option<u32>) -> Option<String> {
    if let Err(error) = runtime.delete(id) {
        return Some(error.to_string());
    }
    let pid = libc::pid_t::try_from(pid?).ok()?;
    // SAFETY: waitpid writes only the status it is given.
    let reaped = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    (reaped != pid).then(|| format!("{id}: its init {pid} was not reaped: {}", io::Error::last_os_error()))
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let left = self.teardown();
        report_leftovers(&self.id, left);
    }
}

fn report_leftovers(pod: &str, left: Vec<String>) {
    for left in left {
        eprintln!("floor: left by pod {pod}: {left}");
    }
}
