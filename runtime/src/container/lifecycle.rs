//! Containers from creation to removal, on their pod's monitor and the OCI runtime.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::Shared;
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use oci_spec::runtime::Spec;

use super::model::{ContainerKey, ContainerRecord, MountRecord, Stage, UserRecord};
use super::store::{Container, ContainerStore, StoreError};
use crate::events::{ContainerEvents, EventKind};
use crate::monitor::{
    AttachRequest, ContainerStdio, CreateOptions, ExecCancel, ExecRequest, ExecStreamRequest, ExitRecord, Monitor,
    MonitorError, read_exit,
};
use crate::oci::{OciError, OciRuntime};
use crate::{CgroupManager, ContainerId, persist};

mod exits;

/// How long a killed container may take to be reaped before Stop gives up waiting.
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("container ID prefix {0:?} matches more than one container")]
    Ambiguous(String),
    /// The request names no container, or names one in a way crisp cannot keep.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("container {0} is not running")]
    NotRunning(ContainerId),
    #[error("container {id} is {state}, not created: it can only be started once")]
    NotCreated { id: ContainerId, state: &'static str },
    /// What the caller's preparation (rootfs, spec) refused or failed at, as it said it.
    #[error("{message}")]
    Prepare { kind: PrepareFailure, message: String },
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("container records: {0}")]
    Store(#[from] StoreError),
    #[error("writing the OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0} was interrupted: {1}")]
    Interrupted(&'static str, String),
}

/// The kinds of preparation failure the daemon tells apart for its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareFailure {
    /// The request asked for something impossible or unsafe.
    Invalid,
    /// Something it names (an image, a sandbox, a file) is not there.
    Missing,
    /// The host failed.
    Internal,
}

impl ContainerError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::Io { what, source }
    }
}

pub struct ContainersConfig {
    /// Records and writable layers: `root/<id>/`.
    pub root: PathBuf,
    /// What a reboot clears: the mounted rootfs, bundle and exit record: `state/<id>/`.
    pub state: PathBuf,
    pub cgroup_manager: CgroupManager,
    pub events: Arc<dyn ContainerEvents>,
}

/// What CreateContainer asked for, translated by the daemon.
pub struct NewContainer {
    pub key: ContainerKey,
    pub fingerprint: String,
    pub image: String,
    pub image_id: String,
    pub image_ref: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub log_path: Option<PathBuf>,
    pub mounts: Vec<MountRecord>,
    pub stop_signal: i32,
    pub stdio: ContainerStdio,
    /// The pod's runtime and monitor.
    pub runtime: Arc<OciRuntime>,
    pub monitor_dir: PathBuf,
}

/// Where a new container's files go, for the daemon's preparation to fill.
#[derive(Debug, Clone)]
pub struct ContainerDirs {
    pub id: ContainerId,
    /// Where the root filesystem is to be mounted.
    pub rootfs: PathBuf,
    /// The container's own writable layer and overlayfs's work dir, kept across reboots.
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// What the daemon made of a new container: its rootfs is mounted, and this is its spec.
pub struct Prepared {
    pub spec: Spec,
    pub user: Option<UserRecord>,
}

pub type Prepare =
    Box<dyn FnOnce(ContainerDirs) -> Pin<Box<dyn Future<Output = Result<Prepared, ContainerError>> + Send>> + Send>;

/// A container's state as the CRI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone)]
pub struct ContainerView {
    pub record: ContainerRecord,
    pub state: ContainerState,
    /// How it ended; none while it has not.
    pub exit: Option<Exit>,
}

/// What an ExecSync got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    /// stdout or stderr passed the cap, and the command was killed for it.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status, 128 + the signal for a killed process.
    pub code: i32,
    pub finished_at_ns: i64,
    /// The process ended without its monitor seeing it (a reboot, a killed monitor): its code
    /// is unknown.
    pub lost: bool,
    /// Killed by the kernel for going over its memory limit.
    pub oom_killed: bool,
}

impl Exit {
    /// What is reported for a container that vanished without a record, as containerd does.
    const LOST: Exit = Exit { code: 255, finished_at_ns: 0, lost: true, oom_killed: false };

    fn recorded(record: &ExitRecord) -> Exit {
        Exit {
            code: record.exit_code,
            finished_at_ns: record.finished_at_ns,
            lost: false,
            oom_killed: record.oom_killed,
        }
    }
}

type Creation = Shared<Pin<Box<dyn Future<Output = Result<ContainerId, Arc<ContainerError>>> + Send>>>;

pub struct Containers {
    config: ContainersConfig,
    store: Arc<ContainerStore>,
    creating: Mutex<HashMap<ContainerKey, (String, Creation)>>,
    exits: exits::Exits,
}

impl Containers {
    /// Loads the containers and undoes those whose creation a crash interrupted.
    pub async fn open(config: ContainersConfig) -> Result<Arc<Containers>, ContainerError> {
        let (root, state) = (config.root.clone(), config.state.clone());
        let (store, orphans) = blocking(move || {
            persist::create_private_dir(&state).map_err(ContainerError::io(format!("creating {}", state.display())))?;
            Ok(ContainerStore::open(&root)?)
        })
        .await?;
        let containers = Arc::new(Containers {
            config,
            store: Arc::new(store),
            creating: Mutex::new(HashMap::new()),
            exits: exits::Exits::default(),
        });
        for dir in orphans {
            if let Err(e) = blocking(move || remove_dir(&dir)).await {
                tracing::warn!("removing a container dir without a record: {e}");
            }
        }
        containers.remove_stray_state().await;
        for container in containers.store.all() {
            let record = container.record();
            // Started by the runtime, but the daemon died before it wrote so.
            if record.stage == Stage::Created && runs(&record) {
                let started = matches!(
                    containers.runtime_of(&record).state(&record.id).await,
                    Ok(Some(state)) if state.status == crate::oci::OciStatus::Running
                );
                if started && let Err(e) = containers.update(&container, |r| r.stage = Stage::Started).await {
                    tracing::warn!(id = %container.id, "recording a start the daemon missed: {e}");
                }
            }
            if container.record().stage == Stage::Removing {
                tracing::warn!(id = %container.id, "finishing a removal a crash interrupted");
                if let Err(e) = containers.destroy(&container).await {
                    tracing::error!(id = %container.id, "removing the container: {e}; Remove will try again");
                }
            }
            if container.record().stage == Stage::Creating {
                tracing::warn!(id = %container.id, "undoing a container whose creation was interrupted");
                if let Err(e) = containers.destroy(&container).await {
                    tracing::error!(id = %container.id, "undoing the container: {e}; Remove will try again");
                    let _ = containers.update(&container, |r| r.stage = Stage::Failed).await;
                }
            }
        }
        // What ended while the daemon was down is no news; what ends from now on is.
        containers.ignore_past_exits();
        tokio::spawn(exits::watch(Arc::downgrade(&containers)));
        Ok(containers)
    }

    /// Unmounts and removes the runtime state (`state/<id>`, its rootfs mount) of containers
    /// without a record: a crash after a removal took the record, or one set aside as
    /// unreadable, whose state is left to the operator.
    async fn remove_stray_state(&self) {
        let state = self.config.state.clone();
        let Ok(entries) = blocking(move || {
            std::fs::read_dir(&state)
                .and_then(|d| d.map(|e| e.map(|e| e.file_name())).collect::<std::io::Result<Vec<_>>>())
                .map_err(ContainerError::io(format!("reading {}", state.display())))
        })
        .await
        .inspect_err(|e| tracing::warn!("listing container state: {e}")) else {
            return;
        };
        for name in entries {
            let Some(id) = name.to_str().and_then(|n| ContainerId::parse(n).ok()) else { continue };
            if self.owns(&id) {
                continue;
            }
            let dir = self.config.state.join(id.as_str());
            tracing::warn!(dir = %dir.display(), "removing the runtime state of no container");
            let result = blocking(move || {
                let rootfs = dir.join("rootfs");
                unmount(&rootfs).map_err(ContainerError::io(format!("unmounting {}", rootfs.display())))?;
                remove_dir(&dir)
            });
            if let Err(e) = result.await {
                tracing::warn!("removing the runtime state of no container: {e}");
            }
        }
    }

    /// Whether a runtime container of this ID is one of ours: recorded, or with a record set
    /// aside as unreadable (left to the operator).
    pub fn owns(&self, id: &ContainerId) -> bool {
        self.store.get(id).is_some() || self.store.dir_of(id).join("container.json.corrupt").exists()
    }

    /// Creates a container, or returns the one made for the same pod, name and attempt by an
    /// earlier call (waiting for it while it is being made).
    pub async fn create(
        self: &Arc<Self>,
        new: NewContainer,
        prepare: Prepare,
    ) -> Result<ContainerId, Arc<ContainerError>> {
        new.key.check_name().map_err(|why| Arc::new(ContainerError::Invalid(why)))?;
        let creation = {
            let mut creating = self.creating.lock().expect("creating lock");
            if let Some((fingerprint, creation)) = creating.get(&new.key) {
                if *fingerprint != new.fingerprint {
                    return Err(Arc::new(taken(&new.key, None)));
                }
                creation.clone()
            } else {
                if let Some(existing) = self.store.by_key(&new.key) {
                    let record = existing.record();
                    if record.stage == Stage::Failed {
                        return Err(Arc::new(ContainerError::AlreadyExists(format!(
                            "container {} failed to be created and is not undone yet: remove it",
                            record.id
                        ))));
                    }
                    if record.stage == Stage::Removing {
                        return Err(Arc::new(ContainerError::AlreadyExists(format!(
                            "container {} is being removed: retry once it is gone",
                            record.id
                        ))));
                    }
                    if record.fingerprint != new.fingerprint || record.stage == Stage::Creating {
                        return Err(Arc::new(taken(&new.key, Some(&record.id))));
                    }
                    return Ok(record.id);
                }
                let (containers, key, fingerprint) = (self.clone(), new.key.clone(), new.fingerprint.clone());
                let entry_key = key.clone();
                // Its own task, so that a caller that gives up does not leave a half-made container.
                let task = tokio::spawn(async move {
                    let _done = Finished { containers: containers.clone(), key };
                    containers.make(new, prepare).await.map_err(Arc::new)
                });
                let creation: Creation = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(Arc::new(ContainerError::Interrupted("CreateContainer", e.to_string())))
                    })
                }
                .boxed()
                .shared();
                creating.insert(entry_key, (fingerprint, creation.clone()));
                creation
            }
        };
        creation.await
    }

    async fn make(&self, new: NewContainer, prepare: Prepare) -> Result<ContainerId, ContainerError> {
        let id = ContainerId::random();
        let state_dir = self.config.state.join(id.as_str());
        let root_dir = self.store.dir_of(&id);
        let record = ContainerRecord {
            id: id.clone(),
            key: new.key,
            fingerprint: new.fingerprint,
            image: new.image,
            image_id: new.image_id,
            image_ref: new.image_ref,
            labels: new.labels,
            annotations: new.annotations,
            log_path: new.log_path,
            mounts: new.mounts,
            stop_signal: new.stop_signal,
            created_at_ns: now_ns(),
            started_at_ns: None,
            stage: Stage::Creating,
            pid: None,
            pid_start_time: None,
            user: None,
            resources: None,
            handler: new.runtime.handler().name.to_string(),
            runtime_path: new.runtime.handler().path.clone(),
            runtime_root: new.runtime.root().to_owned(),
            monitor_dir: new.monitor_dir,
            rootfs: state_dir.join("rootfs"),
            exit_file: state_dir.join("exit.json"),
        };
        let store = self.store.clone();
        let (container, _op) = blocking(move || Ok(store.insert(record)?)).await?;
        let dirs = ContainerDirs {
            id: id.clone(),
            rootfs: state_dir.join("rootfs"),
            upper: self.upper_dir(&id),
            work: root_dir.join("work"),
        };
        match self.setup(&container, &new.runtime, dirs, prepare, new.stdio).await {
            Ok(()) => {
                self.emit(EventKind::Created, &id, &container.record().key.sandbox_id);
                Ok(id)
            }
            Err(e) => {
                tracing::info!(%id, "container creation failed, undoing it: {e}");
                if let Err(undo) = self.destroy(&container).await {
                    tracing::error!(%id, "undoing a failed container: {undo}; Remove will try again");
                    let _ = self.update(&container, |r| r.stage = Stage::Failed).await;
                }
                Err(e)
            }
        }
    }

    async fn setup(
        &self,
        container: &Arc<Container>,
        runtime: &OciRuntime,
        dirs: ContainerDirs,
        prepare: Prepare,
        stdio: ContainerStdio,
    ) -> Result<(), ContainerError> {
        let record = container.record();
        let state_dir = self.config.state.join(record.id.as_str());
        let (upper, work, rootfs_dir) = (dirs.upper.clone(), dirs.work.clone(), dirs.rootfs.clone());
        blocking(move || {
            for dir in [&upper, &work] {
                std::fs::create_dir_all(dir).map_err(ContainerError::io(format!("creating {}", dir.display())))?;
            }
            std::fs::create_dir_all(&rootfs_dir)
                .map_err(ContainerError::io(format!("creating {}", rootfs_dir.display())))
        })
        .await?;
        let prepared = prepare(dirs).await?;
        let bundle = state_dir.join("bundle");
        let request = runtime.create_request(record.id.clone(), bundle.clone(), record.exit_file.clone());
        let options = CreateOptions {
            cgroups_path: prepared
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_ref())
                .map(|p| p.display().to_string()),
            stdio: Some(stdio),
        };
        let mut resources = prepared.spec.linux().as_ref().and_then(|l| l.resources().clone());
        if let Some(r) = resources.as_mut() {
            r.set_devices(None);
        }
        let (spec, monitor_dir) = (prepared.spec, record.monitor_dir.clone());
        let pid = blocking(move || {
            std::fs::create_dir_all(&bundle).map_err(ContainerError::io(format!("creating {}", bundle.display())))?;
            spec.save(bundle.join("config.json"))?;
            let monitor = attach(&monitor_dir)?;
            Ok(monitor.create_container(&request, &options)?)
        })
        .await?;
        let user = prepared.user;
        let pid_start_time = start_time(pid);
        self.update(container, move |r| {
            r.pid = Some(pid);
            r.pid_start_time = pid_start_time;
            r.user = user;
            r.resources = resources;
            r.stage = Stage::Created;
        })
        .await
    }

    /// Starts a created container; anything else is FailedPrecondition for the caller.
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.find(id)?;
        let _op = container.op.lock().await;
        let view = self.view(&container);
        if view.record.stage != Stage::Created || view.state != ContainerState::Created {
            let state = match view.state {
                ContainerState::Running => "running",
                ContainerState::Exited => "exited",
                ContainerState::Created => "being created",
            };
            return Err(ContainerError::NotCreated { id: container.id.clone(), state });
        }
        // Taken before the process runs, so that a process that ends at once never shows a
        // finish before its start.
        let started_at = now_ns();
        self.runtime_of(&view.record).start(&container.id).await?;
        self.update(&container, move |r| {
            r.stage = Stage::Started;
            r.started_at_ns = Some(started_at);
        })
        .await?;
        self.emit(EventKind::Started, &container.id, &view.record.key.sandbox_id);
        Ok(())
    }

    /// Sends the stop signal, waits up to `timeout`, then kills; a missing or exited container
    /// is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), ContainerError> {
        let Some(container) = self.find_optional(id)? else {
            return Ok(());
        };
        let record = {
            let _op = container.op.lock().await;
            if !self.is_current(&container) {
                return Ok(());
            }
            container.record()
        };
        // The grace period runs without the lock: a later Stop with a shorter one, or a
        // Remove, kills at once instead of waiting for this one to end.
        self.kill(&record, timeout).await?;
        self.notice_exit(&container);
        Ok(())
    }

    /// Kills the container if it runs and deletes everything it had; a missing one is fine.
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let Some(container) = self.find_optional(id)? else {
            return Ok(());
        };
        let _op = container.op.lock().await;
        if !self.is_current(&container) {
            return Ok(());
        }
        // Its end is news before its removal, as when it ends by itself.
        let record = container.record();
        if record.stage == Stage::Started {
            if self.view(&container).state != ContainerState::Exited {
                self.kill(&record, Duration::ZERO).await?;
            }
            self.notice_exit(&container);
        }
        self.destroy(&container).await?;
        self.emit(EventKind::Deleted, &container.id, &record.key.sandbox_id);
        self.exits.forget(&container.id);
        Ok(())
    }

    /// Sets new cgroup limits on a created or running container.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        let container = self.find(id)?;
        let _op = container.op.lock().await;
        let view = self.view(&container);
        if view.record.stage == Stage::Creating || view.state == ContainerState::Exited {
            return Err(ContainerError::NotRunning(view.record.id.clone()));
        }
        self.runtime_of(&view.record).update(&view.record.id, &resources).await?;
        self.update(&container, move |r| r.resources = Some(resources)).await
    }

    /// Has the monitor reopen a running container's log after the kubelet rotated it.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.running(id)?;
        blocking(move || {
            let monitor = attach(&record.monitor_dir)?;
            Ok(monitor.reopen_log(&record.id)?)
        })
        .await
    }

    /// Runs `process` (an OCI process) in a running container through its monitor, with its
    /// output capped at `cap_bytes` per stream, killed after `timeout`.
    pub async fn exec_sync(
        &self,
        id: &str,
        process: oci_spec::runtime::Process,
        timeout: Option<Duration>,
        cap_bytes: u64,
    ) -> Result<ExecOutput, ContainerError> {
        let record = self.running(id)?;
        let runtime = self.runtime_of(&record);
        let dir = self.exec_dir(&record);
        let systemd_cgroup = self.config.cgroup_manager == CgroupManager::Systemd;
        // A caller that gives up (the kubelet cancels a hook) ends the command too.
        let cancel = ExecCancel::default();
        let _on_drop = CancelOnDrop(cancel.clone());
        blocking(move || {
            let result = (|| {
                let process_file = write_process(&dir, &process)?;
                let monitor = attach(&record.monitor_dir)?;
                let result = monitor.exec_cancellable(
                    &ExecRequest {
                        id: record.id.clone(),
                        runtime: runtime.handler().path.clone(),
                        runtime_root: runtime.root().to_owned(),
                        systemd_cgroup,
                        process: process_file,
                        timeout_ms: timeout.map(|t| t.as_millis() as u64),
                        output_dir: dir.clone(),
                        cap_bytes,
                    },
                    &cancel,
                )?;
                let read = |name: &str| {
                    let path = dir.join(name);
                    std::fs::read(&path).map_err(ContainerError::io(format!("reading {}", path.display())))
                };
                Ok(ExecOutput {
                    exit_code: result.exit_code,
                    stdout: read("stdout")?,
                    stderr: read("stderr")?,
                    timed_out: result.timed_out,
                    truncated: result.truncated,
                })
            })();
            let _ = std::fs::remove_dir_all(&dir);
            result
        })
        .await
    }

    /// Connects to a running container's stdio through its monitor.
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<StdioSession, ContainerError> {
        let record = self.running(id)?;
        blocking(move || {
            let monitor = attach(&record.monitor_dir)?;
            let request = AttachRequest { id: record.id.clone(), stdin, stdout, stderr };
            let (stream, tty) = monitor.attach_stdio(&request)?;
            Ok(StdioSession { stream, tty, scratch: None })
        })
        .await
    }

    /// Runs `process` in a running container with its stdio streamed (a pty if the process
    /// asks for a terminal); closing the session's connection kills it.
    pub async fn exec_stream(
        &self,
        id: &str,
        process: oci_spec::runtime::Process,
        stdin: bool,
    ) -> Result<StdioSession, ContainerError> {
        let record = self.running(id)?;
        let runtime = self.runtime_of(&record);
        let dir = self.exec_dir(&record);
        let systemd_cgroup = self.config.cgroup_manager == CgroupManager::Systemd;
        blocking(move || {
            // Removed with the session, or here if it never begins.
            let scratch = Scratch(dir.clone());
            let process_file = write_process(&dir, &process)?;
            let tty = process.terminal().unwrap_or(false);
            let monitor = attach(&record.monitor_dir)?;
            let stream = monitor.exec_stream(&ExecStreamRequest {
                id: record.id.clone(),
                runtime: runtime.handler().path.clone(),
                runtime_root: runtime.root().to_owned(),
                systemd_cgroup,
                process: process_file,
                tty,
                stdin,
            })?;
            Ok(StdioSession { stream, tty, scratch: Some(scratch) })
        })
        .await
    }

    /// A running container's record: what exec, attach and log reopening act on.
    fn running(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let view = self.status(id)?;
        if view.state != ContainerState::Running {
            return Err(ContainerError::NotRunning(view.record.id.clone()));
        }
        Ok(view.record)
    }

    /// A directory of its own for one exec (its process file, ExecSync's output).
    fn exec_dir(&self, record: &ContainerRecord) -> PathBuf {
        self.config.state.join(record.id.as_str()).join(format!("exec-{}", ContainerId::random()))
    }

    pub fn status(&self, id: &str) -> Result<ContainerView, ContainerError> {
        let container = self.find(id)?;
        let view = self.view(&container);
        if view.record.stage == Stage::Creating {
            return Err(ContainerError::NotFound(id.to_owned()));
        }
        Ok(view)
    }

    /// Every container past its creation.
    pub fn list(&self) -> Vec<ContainerView> {
        self.store.all().iter().map(|c| self.view(c)).filter(|v| v.record.stage != Stage::Creating).collect()
    }

    /// The container's own writable layer, whose size is the container's disk use.
    pub fn upper_dir(&self, id: &ContainerId) -> PathBuf {
        self.store.dir_of(id).join("upper")
    }

    /// Whether a container exists, being created or not.
    pub fn exists(&self, id: &ContainerId) -> bool {
        self.store.get(id).is_some()
    }

    /// A pod's containers past their creation, as ContainerStatus shows them.
    pub fn views_of_sandbox(&self, sandbox_id: &str) -> Vec<ContainerView> {
        let ours = self.store.all().into_iter().filter(|c| c.record().key.sandbox_id == sandbox_id);
        ours.map(|c| self.view(&c)).filter(|v| v.record.stage != Stage::Creating).collect()
    }

    /// The containers of a pod, creating ones too: the pod's Stop and Remove wait for them.
    pub fn of_sandbox(&self, sandbox_id: &str) -> Vec<ContainerId> {
        self.store.all().iter().filter(|c| c.record().key.sandbox_id == sandbox_id).map(|c| c.id.clone()).collect()
    }

    fn view(&self, container: &Container) -> ContainerView {
        let record = container.record();
        let exit = read_exit(&record.exit_file).ok().flatten();
        let (state, exit) = match (record.stage, exit) {
            (_, Some(exit)) => (ContainerState::Exited, Some(Exit::recorded(&exit))),
            (Stage::Creating, None) => (ContainerState::Created, None),
            (Stage::Failed | Stage::Removing, None) => (ContainerState::Exited, Some(Exit::LOST)),
            // A dead process whose monitor lives is being reaped: its record is on its way.
            (stage, None) if runs(&record) || crate::monitor::runs(&record.monitor_dir) => {
                (if stage == Stage::Started { ContainerState::Running } else { ContainerState::Created }, None)
            }
            // Gone without a record of how: a reboot or a monitor killed with it.
            (_, None) => (ContainerState::Exited, Some(Exit::LOST)),
        };
        ContainerView { record, state, exit }
    }

    async fn kill(&self, record: &ContainerRecord, timeout: Duration) -> Result<(), ContainerError> {
        let runtime = self.runtime_of(record);
        if !timeout.is_zero() && record.stage == Stage::Started {
            runtime.kill(&record.id, record.stop_signal, false).await?;
            if self.wait_exit(record, timeout).await {
                return Ok(());
            }
        }
        runtime.kill(&record.id, libc::SIGKILL, true).await?;
        self.wait_exit(record, KILL_WAIT).await;
        Ok(())
    }

    /// Whether the container's exit was recorded (or its runtime state says it is gone)
    /// within `within`.
    async fn wait_exit(&self, record: &ContainerRecord, within: Duration) -> bool {
        // Never created by the runtime: nothing to wait for.
        if record.pid.is_none() {
            return true;
        }
        let deadline = Instant::now() + within;
        loop {
            let gone_unrecorded = !runs(record) && !crate::monitor::runs(&record.monitor_dir);
            if record.exit_file.exists() || gone_unrecorded {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills, deletes from the runtime, unmounts and forgets a container.
    async fn destroy(&self, container: &Arc<Container>) -> Result<(), ContainerError> {
        // Marked first: its exit record goes with its state dir below, and a crash after that
        // must not leave a record that reads as running. A creation being undone stays hidden.
        if !matches!(container.record().stage, Stage::Creating | Stage::Removing) {
            self.update(container, |r| r.stage = Stage::Removing).await?;
        }
        let record = container.record();
        self.kill(&record, Duration::ZERO).await?;
        self.runtime_of(&record).delete(&record.id, true).await?;
        let (rootfs, state_dir) = (record.rootfs.clone(), self.config.state.join(record.id.as_str()));
        blocking(move || {
            unmount(&rootfs).map_err(ContainerError::io(format!("unmounting {}", rootfs.display())))?;
            remove_dir(&state_dir)
        })
        .await?;
        let (store, id) = (self.store.clone(), record.id.clone());
        blocking(move || Ok(store.remove(&id)?)).await
    }

    fn runtime_of(&self, record: &ContainerRecord) -> OciRuntime {
        let name = crate::HandlerName::new(&record.handler)
            .unwrap_or_else(|_| crate::HandlerName::new("unknown").expect("a valid handler name"));
        OciRuntime::new(
            crate::Handler::new(name, record.runtime_path.clone()),
            record.runtime_root.clone(),
            self.config.cgroup_manager,
        )
    }

    async fn update(
        &self,
        container: &Arc<Container>,
        change: impl FnOnce(&mut ContainerRecord) + Send + 'static,
    ) -> Result<(), ContainerError> {
        let (store, container) = (self.store.clone(), container.clone());
        blocking(move || Ok(store.update(&container, change)?)).await
    }

    fn is_current(&self, container: &Arc<Container>) -> bool {
        self.store.get(&container.id).is_some_and(|c| Arc::ptr_eq(&c, container))
    }

    fn find(&self, id: &str) -> Result<Arc<Container>, ContainerError> {
        self.find_optional(id)?.ok_or_else(|| ContainerError::NotFound(id.to_owned()))
    }

    /// By full ID or a prefix only one ID has.
    fn find_optional(&self, id: &str) -> Result<Option<Arc<Container>>, ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::Invalid("empty container ID".into()));
        }
        if let Ok(full) = ContainerId::parse(id) {
            return Ok(self.store.get(&full));
        }
        let mut matches = self.store.all().into_iter().filter(|c| c.id.as_str().starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(Some(one)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(id.to_owned())),
        }
    }
}

fn taken(key: &ContainerKey, existing: Option<&ContainerId>) -> ContainerError {
    let which = existing.map(|id| format!(" by container {id}")).unwrap_or_else(|| " by one being created".into());
    ContainerError::AlreadyExists(format!(
        "container name {} (attempt {}) in pod {} is taken{which} with a different configuration",
        key.name, key.attempt, key.sandbox_id
    ))
}

/// A process's stdio as [`crate::monitor::frame::Frame`]s on a connection to its monitor.
pub struct StdioSession {
    stream: std::os::unix::net::UnixStream,
    /// The process has a terminal: one output stream, and resizes apply.
    pub tty: bool,
    scratch: Option<Scratch>,
}

/// An exec's directory (its process file), removed when the exec's session ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl StdioSession {
    /// The connection, and what must live as long as it is used.
    pub fn into_parts(self) -> (std::os::unix::net::UnixStream, impl Send + 'static) {
        (self.stream, self.scratch)
    }
}

/// Cancels an exec when the future waiting for it is dropped.
struct CancelOnDrop(ExecCancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Takes a finished creation out of the map, however it finished.
struct Finished {
    containers: Arc<Containers>,
    key: ContainerKey,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.containers.creating.lock().expect("creating lock").remove(&self.key);
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22); none for a
/// process that is gone or a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the container's init still runs: its pid alive and the same process as at create,
/// so that a pid reused after a reboot does not count.
fn runs(record: &ContainerRecord) -> bool {
    record.pid.is_some_and(|pid| start_time(pid).is_some_and(|t| record.pid_start_time.is_none_or(|r| r == t)))
}

/// Writes an exec's OCI process into its directory (made here) for the runtime's `--process`.
fn write_process(dir: &Path, process: &oci_spec::runtime::Process) -> Result<PathBuf, ContainerError> {
    std::fs::create_dir_all(dir).map_err(ContainerError::io(format!("creating {}", dir.display())))?;
    let file = dir.join("process.json");
    let json = serde_json::to_vec(process)
        .map_err(|e| ContainerError::Io { what: "encoding the exec process".into(), source: e.into() })?;
    std::fs::write(&file, json).map_err(ContainerError::io(format!("writing {}", file.display())))?;
    Ok(file)
}

/// The pod's monitor, which is gone once the pod stopped.
fn attach(dir: &Path) -> Result<Monitor, ContainerError> {
    Monitor::attach(dir)?.ok_or_else(|| ContainerError::Prepare {
        kind: PrepareFailure::Missing,
        message: format!("the pod's monitor ({}) is gone: the pod is stopped", dir.display()),
    })
}

fn unmount(target: &Path) -> std::io::Result<()> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn remove_dir(dir: &Path) -> Result<(), ContainerError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ContainerError::Io { what: format!("removing {}", dir.display()), source: e })
        }
        _ => Ok(()),
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ContainerError> + Send + 'static,
) -> Result<T, ContainerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ContainerError::Interrupted("a blocking task", e.to_string()))?
}
