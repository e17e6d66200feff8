//! Pod sandboxes from start to end: run, stop, remove, and what is found after a restart.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crisp_network::cni::{Cni, PodNetworkRequest};
use crisp_network::netns;
use crisp_runtime::events::EventKind;
use crisp_runtime::monitor::{Monitor, MonitorError};
use crisp_runtime::oci::{OciRuntime, OciStatus};
use crisp_runtime::persist::create_private_dir;
use crisp_runtime::{CgroupManager, ContainerId, Handler, HandlerName, OomScoreAdjPolicy};
use futures::FutureExt;
use futures::future::Shared;
use tracing::Instrument;

use crate::cgroup::cgroups_path;
use crate::error::PodError;
use crate::events::EventHub;
use crate::files::{PodFiles, validate_hostname};
use crate::key::PodKey;
use crate::model::{NamespaceMode, PodNetwork, SandboxConfig, SandboxId, SandboxRecord, SandboxState};
use crate::pause_spec::{PauseProcess, pause_spec};
use crate::shm;
use crate::store::{Sandbox, SandboxStore, StoreError, remove_dir};
use crate::sysctl::Sysctls;
use crate::translate;

/// How long a stopped pause may take to be reaped before Stop gives up on waiting for it.
const EXIT_WAIT: Duration = Duration::from_secs(10);

pub struct PodsConfig {
    /// Records and pod files: `root/<id>/`.
    pub root: PathBuf,
    /// What a reboot clears: shm mounts, bundles, monitors, exit records: `state/<id>/`.
    pub state: PathBuf,
    pub netns_dir: PathBuf,
    pub monitor_binary: PathBuf,
    pub cgroup_manager: CgroupManager,
    pub oom_score_adj: OomScoreAdjPolicy,
    pub shm_size: u64,
    pub pause: PauseProcess,
    /// The OCI runtimes by handler name; `default_handler` among them.
    pub runtimes: BTreeMap<String, Arc<OciRuntime>>,
    pub default_handler: String,
    pub events: Arc<EventHub>,
}

/// What the pause runs from.
#[derive(Debug, Clone)]
pub enum PauseSource {
    /// crisp's own pause program and its shared read-only rootfs.
    BuiltIn,
    /// The configured pause image: its unpacked layers (topmost first), mounted read-only.
    Image { lowers: Vec<PathBuf>, args: Vec<String>, env: Vec<String> },
}

/// A ready sandbox as a new container of it needs it.
#[derive(Debug, Clone)]
pub struct ContainerContext {
    pub record: SandboxRecord,
    pub runtime: Arc<OciRuntime>,
    pub monitor_dir: PathBuf,
    /// The pod's own `/dev/shm`; none when the pod uses the host's IPC namespace.
    pub shm: Option<PathBuf>,
    pub hostname_file: PathBuf,
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
}

/// A sandbox as the CRI reports it: its record and whether its pause still runs.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub record: SandboxRecord,
    pub ready: bool,
}

type Creation = Shared<Pin<Box<dyn Future<Output = Result<SandboxId, Arc<PodError>>> + Send>>>;

pub struct Pods {
    config: PodsConfig,
    store: Arc<SandboxStore>,
    cni: Arc<Cni>,
    /// Sandboxes being created, by pod: a retried RunPodSandbox waits for the first one.
    creating: Mutex<HashMap<PodKey, (SandboxConfig, Creation)>>,
}

/// Where one sandbox's runtime state lives.
struct StateDirs {
    dir: PathBuf,
}

impl StateDirs {
    fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    fn monitor(&self) -> PathBuf {
        self.dir.join("monitor")
    }
    fn pause_exit(&self) -> PathBuf {
        self.dir.join("pause.exit")
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// Mount points for the pause image's rootfs, as its top layer, so that the runtime never
    /// writes into the image's shared layers.
    fn rootfs_base(&self) -> PathBuf {
        self.dir.join("rootfs-base")
    }
}

impl Pods {
    /// Loads the sandboxes and finishes what a crash interrupted: half-made sandboxes are
    /// undone, leftovers of removed ones cleaned.
    pub async fn open(config: PodsConfig, cni: Arc<Cni>) -> Result<Arc<Pods>, PodError> {
        let (root, state) = (config.root.clone(), config.state.clone());
        let (store, leftovers) = tokio::task::spawn_blocking(move || {
            create_private_dir(&state).map_err(|source| StoreError::Io { path: state.clone(), source })?;
            SandboxStore::open(&root)
        })
        .await
        .map_err(|e| PodError::Interrupted("loading sandboxes", e.to_string()))??;
        let pods = Arc::new(Pods { config, store: Arc::new(store), cni, creating: Mutex::new(HashMap::new()) });
        // One sandbox that cannot be cleaned up must not keep the node's runtime down: what fails
        // here is logged and left for Stop, Remove or the next start to finish.
        for dir in leftovers.orphan_dirs {
            if let Err(e) = blocking(move || remove_dir(&dir).map_err(PodError::from)).await {
                tracing::warn!("removing a sandbox dir without a record: {e}");
            }
        }
        for sandbox in pods.store.all() {
            if sandbox.record().state == SandboxState::Creating {
                tracing::warn!(id = %sandbox.id, "undoing a sandbox whose creation was interrupted");
                pods.undo(&sandbox).await;
            }
        }
        pods.clean_strays().await;
        // Plugins that keep state of their own (CNI 1.1) drop what no sandbox holds.
        let attached: Vec<String> =
            pods.store.all().iter().filter(|s| s.record().netns.is_some()).map(|s| s.id.to_string()).collect();
        if let Err(e) = pods.cni.gc(&attached).await {
            tracing::warn!("CNI GC: {e}");
        }
        Ok(pods)
    }

    /// Undoes a sandbox that never became ready. If that fails, the sandbox stays, marked for
    /// Stop and Remove to finish the job, rather than being forgotten with its leftovers.
    async fn undo(&self, sandbox: &Arc<Sandbox>) {
        let id = &sandbox.id;
        let result = match self.teardown(&sandbox.record()).await {
            Ok(()) => self.forget(id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(%id, "undoing the sandbox: {e}; Stop or Remove will try again");
            if let Err(e) = self.update(sandbox, |r| r.state = SandboxState::Stopping).await {
                tracing::error!(%id, "marking the sandbox for clean-up: {e}");
            }
        }
    }

    /// Runtime state, netns and CNI attachments that no record owns: a crash between making them
    /// and writing the record that names them, or after removing it. A sandbox whose record was
    /// set aside as unreadable is left alone, all of it, for the operator. Attachments are
    /// detached before their netns goes, so that the plugins still find their interface.
    async fn clean_strays(&self) {
        let owned = |name: &str| {
            SandboxId::parse(name).is_some_and(|id| self.store.get(&id).is_some())
                || self.config.root.join(name).join("sandbox.json.corrupt").exists()
        };
        let warn = |what: &str, e: PodError| tracing::warn!("cleaning up {what}: {e}");
        match list_dir(&self.config.state) {
            Ok(dirs) => {
                for dir in dirs.into_iter().filter(|d| !d.file_name().and_then(|n| n.to_str()).is_some_and(owned)) {
                    tracing::warn!(dir = %dir.display(), "removing the runtime state of no sandbox");
                    // Its monitor exits once the runtime containers no record owns are deleted.
                    let monitor_dir = StateDirs { dir: dir.clone() }.monitor();
                    let shutdown = blocking(move || match Monitor::attach(&monitor_dir)? {
                        Some(monitor) => Ok(monitor.shutdown()?),
                        None => Ok(()),
                    });
                    if let Err(e) = shutdown.await {
                        warn("a monitor", e);
                    }
                    if let Err(e) = self.remove_state(&dir).await {
                        warn("runtime state", e);
                    }
                }
            }
            Err(e) => warn("runtime state", e),
        }
        let cni = self.cni.clone();
        if let Err(e) = blocking(move || cni.remove_partial_writes().map_err(PodError::from)).await {
            warn("CNI cache temp files", e);
        }
        let cni = self.cni.clone();
        match blocking(move || cni.cached().map_err(PodError::from)).await {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !owned(id)) {
                    tracing::warn!(%id, "detaching a CNI attachment of no sandbox");
                    if let Err(e) = self.cni.del(&id).await {
                        warn("a CNI attachment", e.into());
                    }
                }
            }
            Err(e) => warn("CNI attachments", e),
        }
        match list_dir(&self.config.netns_dir) {
            Ok(paths) => {
                for path in paths.into_iter().filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(owned)) {
                    tracing::warn!(path = %path.display(), "removing a network namespace of no sandbox");
                    if let Err(e) = blocking(move || netns::remove(&path).map_err(PodError::from)).await {
                        warn("a network namespace", e);
                    }
                }
            }
            Err(e) => warn("network namespaces", e),
        }
    }

    /// Whether a runtime container of this ID is a sandbox's pause: recorded, or with a record
    /// set aside as unreadable (left to the operator).
    pub fn owns(&self, runtime_id: &ContainerId) -> bool {
        SandboxId::parse(runtime_id.as_str()).is_some_and(|id| {
            self.store.get(&id).is_some() || self.config.root.join(id.as_str()).join("sandbox.json.corrupt").exists()
        })
    }

    /// Creates a sandbox, or returns the one made for the same pod by an earlier call.
    pub async fn run(self: &Arc<Self>, config: SandboxConfig, pause: PauseSource) -> Result<SandboxId, Arc<PodError>> {
        let runtime = self.runtime_for(&config.runtime_handler).map_err(Arc::new)?;
        let config = validate(config).map_err(Arc::new)?;
        let creation = {
            let mut creating = self.creating.lock().expect("creating lock");
            if let Some((first, creation)) = creating.get(&config.key) {
                if *first != config {
                    return Err(Arc::new(different_pod(&config.key, None)));
                }
                creation.clone()
            } else {
                if let Some(existing) = self.store.by_key(&config.key) {
                    let record = existing.record();
                    if record.config != config {
                        return Err(Arc::new(different_pod(&config.key, Some(&record.id))));
                    }
                    if self.is_ready(&record) {
                        return Ok(record.id);
                    }
                    return Err(Arc::new(PodError::AlreadyExists(format!(
                        "pod {} already has sandbox {}, which is not ready: stop and remove it first",
                        config.key, record.id
                    ))));
                }
                // Its own task, so that a caller that gives up does not leave a half-made sandbox.
                let pods = self.clone();
                let key = config.key.clone();
                let first = config.clone();
                // In the caller's span, so that the network and runtime calls trace under its RPC.
                let task = tokio::spawn(
                    async move {
                        // Dropped on panic too, so a retry after a crashed creation starts afresh.
                        let _done = Finished { pods: pods.clone(), key };
                        pods.create(config, runtime, pause).await.map_err(Arc::new)
                    }
                    .in_current_span(),
                );
                let creation: Creation = async move {
                    task.await.unwrap_or_else(|e| Err(Arc::new(PodError::Interrupted("RunPodSandbox", e.to_string()))))
                }
                .boxed()
                .shared();
                creating.insert(first.key.clone(), (first, creation.clone()));
                creation
            }
        };
        creation.await
    }

    async fn create(
        &self,
        config: SandboxConfig,
        runtime: Arc<OciRuntime>,
        pause: PauseSource,
    ) -> Result<SandboxId, PodError> {
        let id = SandboxId::random();
        let host_network = config.namespaces.network == NamespaceMode::Node;
        let record = SandboxRecord {
            id: id.clone(),
            cgroups_path: cgroups_path(self.config.cgroup_manager, &config.cgroup_parent, &id)?,
            netns: (!host_network).then(|| self.config.netns_dir.join(id.as_str())),
            hostname: effective_hostname(&config.hostname)?,
            config,
            created_at_ns: now_ns(),
            state: SandboxState::Creating,
            handler: runtime.handler().name.to_string(),
            runtime_path: runtime.handler().path.clone(),
            runtime_root: runtime.root().to_owned(),
            network: None,
            pause_pid: None,
            pause_start_time: None,
        };
        // The first record names everything about to be made, so a crash at any point after
        // it can be undone on the next start. Its lock is held until the sandbox is ready or
        // undone: Stop and Remove wait for it.
        let store = self.store_handle();
        let (sandbox, _op) = blocking(move || store.insert(record).map_err(PodError::from)).await?;
        match self.setup(&sandbox, &runtime, pause).await {
            Ok(()) => {
                let view = self.view(&sandbox);
                self.config.events.sandbox(EventKind::Created, &view, now_ns());
                self.config.events.sandbox(EventKind::Started, &view, now_ns());
                Ok(id)
            }
            Err(e) => {
                tracing::info!(%id, "sandbox creation failed, undoing it: {e}");
                self.undo(&sandbox).await;
                Err(e)
            }
        }
    }

    async fn setup(&self, sandbox: &Arc<Sandbox>, runtime: &OciRuntime, pause: PauseSource) -> Result<(), PodError> {
        let record = sandbox.record();
        let config = &record.config;
        let dirs = self.state_dirs(&record.id);

        if let Some(path) = &record.netns {
            let (dir, name) = (self.config.netns_dir.clone(), record.id.to_string());
            let made = blocking(move || netns::create(&dir, &name).map_err(PodError::from)).await?;
            debug_assert_eq!(&made, path);
            let attachment = self
                .cni
                .add(&PodNetworkRequest {
                    container_id: record.id.to_string(),
                    netns: path.clone(),
                    pod_name: config.key.name.clone(),
                    pod_namespace: config.key.namespace.clone(),
                    pod_uid: config.key.uid.clone(),
                    // A mapping without a host port only documents the container port.
                    port_mappings: config
                        .port_mappings
                        .iter()
                        .filter(|p| p.host_port != 0)
                        .map(translate::port_mapping)
                        .collect(),
                    bandwidth: translate::bandwidth(&config.bandwidth),
                    dns: translate::dns(&config.dns),
                })
                .await?;
            self.update(sandbox, move |r| {
                r.network = Some(PodNetwork { network: attachment.network, ips: attachment.ips })
            })
            .await?;
        }

        let record = sandbox.record();
        let files = PodFiles::new(self.store.dir_of(&record.id));
        let ips = record.network.as_ref().map(|n| n.ips.clone()).unwrap_or_default();
        let (hostname, dns, host_network) = (record.hostname.clone(), record.config.dns.clone(), record.host_network());
        let log_dir = record.config.log_directory.clone();
        let ipc_shared = record.config.namespaces.ipc != NamespaceMode::Node;
        let (shm_dir, shm_size) = (dirs.shm(), self.config.shm_size);
        blocking(move || {
            files.write(&hostname, &dns, &ips, host_network)?;
            if let Some(dir) = log_dir {
                std::fs::create_dir_all(&dir)
                    .map_err(PodError::io(format!("creating log directory {}", dir.display())))?;
            }
            if ipc_shared {
                shm::mount_shm(&shm_dir, shm_size).map_err(PodError::io(format!("mounting {}", shm_dir.display())))?;
            }
            Ok(())
        })
        .await?;

        let pause = match pause {
            PauseSource::BuiltIn => self.config.pause.clone(),
            PauseSource::Image { lowers, args, env } => {
                let (base, rootfs) = (dirs.rootfs_base(), dirs.rootfs());
                let target = rootfs.clone();
                blocking(move || {
                    for dir in ["proc", "dev", "sys", "etc"] {
                        std::fs::create_dir_all(base.join(dir))
                            .map_err(PodError::io(format!("creating {}", base.display())))?;
                    }
                    let lowers: Vec<PathBuf> = std::iter::once(base).chain(lowers).collect();
                    Ok(crisp_image::overlay::mount_overlay(&lowers, None, &target)?)
                })
                .await?;
                PauseProcess { rootfs, args, env }
            }
        };
        let spec = pause_spec(&record, &pause, &self.config.oom_score_adj)?;
        let bundle = dirs.bundle();
        let monitor_dir = dirs.monitor();
        let binary = self.config.monitor_binary.clone();
        let request = runtime.create_request(record.id.container_id().clone(), bundle.clone(), dirs.pause_exit());
        let handler = runtime.handler().name.clone();
        let pid = blocking(move || {
            std::fs::create_dir_all(&bundle).map_err(PodError::io(format!("creating {}", bundle.display())))?;
            let config_json = bundle.join("config.json");
            spec.save(&config_json)?;
            let monitor = Monitor::spawn(&binary, &monitor_dir)?;
            monitor.create(&request).map_err(|e| match e {
                e @ MonitorError::Runtime { .. } => PodError::HandlerRefused { handler, source: e },
                e => e.into(),
            })
        })
        .await?;
        let start_time = process_start_time(pid);
        self.update(sandbox, move |r| {
            r.pause_pid = Some(pid);
            r.pause_start_time = start_time;
        })
        .await?;
        runtime.start(record.id.container_id()).await?;
        self.update(sandbox, |r| r.state = SandboxState::Ready).await
    }

    /// Stops a sandbox's pause and frees its network; a missing or stopped sandbox is fine.
    pub async fn stop(&self, id: &str) -> Result<(), PodError> {
        let Some(sandbox) = self.find_optional(id)? else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        if !self.is_current(&sandbox) {
            return Ok(());
        }
        if sandbox.record().state == SandboxState::NotReady {
            return Ok(());
        }
        self.teardown(&sandbox.record()).await?;
        self.update(&sandbox, |r| {
            r.state = SandboxState::NotReady;
            r.network = None;
        })
        .await?;
        self.config.events.sandbox(EventKind::Stopped, &self.view(&sandbox), now_ns());
        Ok(())
    }

    /// Stops the sandbox if needed and deletes everything it had; a missing one is fine.
    pub async fn remove(&self, id: &str) -> Result<(), PodError> {
        let Some(sandbox) = self.find_optional(id)? else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        if !self.is_current(&sandbox) {
            return Ok(());
        }
        if sandbox.record().state != SandboxState::NotReady {
            self.teardown(&sandbox.record()).await?;
            self.config.events.sandbox(EventKind::Stopped, &self.view(&sandbox), now_ns());
        }
        let last = self.view(&sandbox);
        self.forget(&sandbox.id).await?;
        self.config.events.sandbox(EventKind::Deleted, &last, now_ns());
        Ok(())
    }

    /// Whether a sandbox found before waiting for its lock is still the one in the store: a
    /// Remove that held the lock meanwhile has made it history.
    fn is_current(&self, sandbox: &Arc<Sandbox>) -> bool {
        self.store.get(&sandbox.id).is_some_and(|s| Arc::ptr_eq(&s, sandbox))
    }

    /// What a container of a ready sandbox joins: the pause's namespaces, the pod's files,
    /// monitor, runtime and cgroup parent.
    pub fn container_context(&self, id: &str) -> Result<ContainerContext, PodError> {
        let view = self.status(id)?;
        if !view.ready {
            return Err(PodError::NotReady(view.record.id.to_string()));
        }
        let dirs = self.state_dirs(&view.record.id);
        let files = PodFiles::new(self.store.dir_of(&view.record.id));
        Ok(ContainerContext {
            runtime: self.runtime_of(&view.record)?,
            monitor_dir: dirs.monitor(),
            shm: (view.record.config.namespaces.ipc != NamespaceMode::Node).then(|| dirs.shm()),
            hostname_file: files.hostname(),
            hosts_file: files.hosts(),
            resolv_conf: files.resolv_conf(),
            record: view.record,
        })
    }

    /// A sandbox still being made is not there yet, as with containerd: the kubelet's retry of
    /// RunPodSandbox joins its creation instead of stopping it halfway.
    pub fn status(&self, id: &str) -> Result<SandboxView, PodError> {
        let sandbox = self.find(id)?;
        let view = self.view(&sandbox);
        if view.record.state == SandboxState::Creating {
            return Err(PodError::NotFound(id.to_owned()));
        }
        Ok(view)
    }

    pub fn list(&self) -> Vec<SandboxView> {
        self.store.all().iter().map(|s| self.view(s)).filter(|v| v.record.state != SandboxState::Creating).collect()
    }

    fn view(&self, sandbox: &Sandbox) -> SandboxView {
        let record = sandbox.record();
        SandboxView { ready: self.is_ready(&record), record }
    }

    /// Ready while its pause runs: not reaped by its monitor, and the same process (start
    /// time) as the one started, so a reused PID after a reboot does not count.
    ///
    /// Its monitor must run too: without it no container can be created, logged or exec'd in
    /// the pod, and a NOTREADY pod is what makes the kubelet make a new one.
    fn is_ready(&self, record: &SandboxRecord) -> bool {
        record.state == SandboxState::Ready
            && !self.state_dirs(&record.id).pause_exit().exists()
            && record.pause_pid.is_some_and(|pid| process_start_time(pid) == record.pause_start_time)
            && crisp_runtime::monitor::runs(&self.state_dirs(&record.id).monitor())
    }

    /// Undoes everything a sandbox may have, in reverse order of making it; each step is a no-op
    /// when there is nothing to undo.
    async fn teardown(&self, record: &SandboxRecord) -> Result<(), PodError> {
        let dirs = self.state_dirs(&record.id);
        let cid = record.id.container_id();
        let runtime = self.runtime_of(record)?;
        runtime.kill(cid, libc::SIGKILL, false).await?;
        // The monitor reaps the pause and records its exit; wait for that record rather than
        // removing the directory it is being written to.
        let monitor_dir = dirs.monitor();
        let monitor = blocking(move || Ok(Monitor::attach(&monitor_dir)?)).await?;
        let deadline = Instant::now() + EXIT_WAIT;
        while !dirs.pause_exit().exists() && Instant::now() < deadline {
            match runtime.state(cid).await? {
                Some(state) if state.status == OciStatus::Running => {}
                _ if monitor.is_none() => break,
                None => break,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        runtime.delete(cid, true).await?;
        if let Some(monitor) = monitor {
            blocking(move || Ok(monitor.shutdown()?)).await?;
        }
        if record.netns.is_some() {
            self.cni.del(record.id.as_str()).await?;
        }
        if let Some(path) = record.netns.clone() {
            blocking(move || netns::remove(&path).map_err(PodError::from)).await?;
        }
        let (shm_dir, rootfs) = (dirs.shm(), dirs.rootfs());
        blocking(move || unmount_all(&shm_dir, &rootfs)).await
    }

    /// Drops a torn-down sandbox: its runtime state, then its record and files.
    async fn forget(&self, id: &SandboxId) -> Result<(), PodError> {
        self.remove_state(&self.state_dirs(id).dir).await?;
        let store = self.store_handle();
        let id = id.clone();
        blocking(move || store.remove(&id).map_err(PodError::from)).await
    }

    async fn remove_state(&self, dir: &Path) -> Result<(), PodError> {
        let dir = dir.to_owned();
        blocking(move || {
            let dirs = StateDirs { dir };
            unmount_all(&dirs.shm(), &dirs.rootfs())?;
            remove_dir(&dirs.dir).map_err(PodError::from)
        })
        .await
    }

    async fn update(
        &self,
        sandbox: &Arc<Sandbox>,
        change: impl FnOnce(&mut SandboxRecord) + Send + 'static,
    ) -> Result<(), PodError> {
        let store = self.store_handle();
        let sandbox = sandbox.clone();
        blocking(move || store.update(&sandbox, change).map_err(PodError::from)).await
    }

    fn store_handle(&self) -> Arc<SandboxStore> {
        self.store.clone()
    }

    /// Where a sandbox's monitor keeps its pid and socket.
    pub fn monitor_dir(&self, id: &SandboxId) -> PathBuf {
        self.state_dirs(id).monitor()
    }

    fn state_dirs(&self, id: &SandboxId) -> StateDirs {
        StateDirs { dir: self.config.state.join(id.as_str()) }
    }

    /// The runtime that runs a sandbox's pause: its handler as configured now, or, if the
    /// handler was removed or changed since, the binary and state dir the sandbox was made with.
    fn runtime_of(&self, record: &SandboxRecord) -> Result<Arc<OciRuntime>, PodError> {
        if let Some(runtime) = self.config.runtimes.get(&record.handler)
            && (record.runtime_path.as_os_str().is_empty()
                || (runtime.handler().path == record.runtime_path && runtime.root() == record.runtime_root))
        {
            return Ok(runtime.clone());
        }
        if record.runtime_path.as_os_str().is_empty() {
            return Err(PodError::UnknownHandler(record.handler.clone()));
        }
        let name = HandlerName::new(&record.handler).map_err(|_| PodError::UnknownHandler(record.handler.clone()))?;
        Ok(Arc::new(OciRuntime::new(
            Handler::new(name, record.runtime_path.clone()),
            record.runtime_root.clone(),
            self.config.cgroup_manager,
        )))
    }

    fn runtime_for(&self, handler: &str) -> Result<Arc<OciRuntime>, PodError> {
        let name = if handler.is_empty() { &self.config.default_handler } else { handler };
        self.config.runtimes.get(name).cloned().ok_or_else(|| PodError::UnknownHandler(handler.to_owned()))
    }

    /// A sandbox by full ID or by a prefix that only one ID has, as crictl passes them.
    fn find(&self, id: &str) -> Result<Arc<Sandbox>, PodError> {
        self.find_optional(id)?.ok_or_else(|| PodError::NotFound(id.to_owned()))
    }

    fn find_optional(&self, id: &str) -> Result<Option<Arc<Sandbox>>, PodError> {
        if id.is_empty() {
            return Err(PodError::Invalid("empty pod sandbox ID".into()));
        }
        if let Some(full) = SandboxId::parse(id) {
            return Ok(self.store.get(&full));
        }
        let mut matches = self.store.all().into_iter().filter(|s| s.id.as_str().starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(Some(one)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(PodError::Ambiguous(id.to_owned())),
        }
    }
}

fn different_pod(key: &PodKey, existing: Option<&SandboxId>) -> PodError {
    let which = existing.map(|id| format!(" as sandbox {id}")).unwrap_or_else(|| " being created".into());
    PodError::AlreadyExists(format!("pod {key} already exists{which} with a different configuration"))
}

/// Checks what the kubelet asked for; sysctl keys come back in the dotted form the runtime
/// writes, so what is validated is what runs.
fn validate(mut config: SandboxConfig) -> Result<SandboxConfig, PodError> {
    config.sysctls = Sysctls::validate(
        config.sysctls.iter(),
        config.namespaces.network == NamespaceMode::Node,
        config.namespaces.ipc == NamespaceMode::Node,
    )?
    .into_map();
    if config.namespaces.network == NamespaceMode::Container || config.namespaces.ipc == NamespaceMode::Container {
        return Err(PodError::Invalid(
            "network and IPC namespaces are per pod or the host's, never per container".into(),
        ));
    }
    if !config.hostname.is_empty() {
        validate_hostname(&config.hostname)?;
    }
    config.dns.validate()?;
    if let Some(dir) = &config.log_directory
        && (!dir.is_absolute() || dir.components().any(|c| c == std::path::Component::ParentDir))
    {
        return Err(PodError::Invalid(format!("log_directory {} is not an absolute path without '..'", dir.display())));
    }
    Ok(config)
}

/// Takes a finished creation out of the map, however it finished.
struct Finished {
    pods: Arc<Pods>,
    key: PodKey,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.pods.creating.lock().expect("creating lock").remove(&self.key);
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PodError> + Send + 'static,
) -> Result<T, PodError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| PodError::Interrupted("a blocking task", e.to_string()))?
}

fn unmount_all(shm_dir: &Path, rootfs: &Path) -> Result<(), PodError> {
    shm::unmount_shm(shm_dir).map_err(PodError::io(format!("unmounting {}", shm_dir.display())))?;
    crisp_image::overlay::unmount(rootfs).map_err(PodError::io(format!("unmounting {}", rootfs.display())))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, PodError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            entries.map(|e| e.map(|e| e.path()).map_err(PodError::io(format!("reading {}", dir.display())))).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PodError::Io { what: format!("reading {}", dir.display()), source: e }),
    }
}

fn effective_hostname(asked: &str) -> Result<String, PodError> {
    if !asked.is_empty() {
        return Ok(asked.to_owned());
    }
    let node = nix::unistd::gethostname().map_err(|e| PodError::io("reading the node's hostname")(e.into()))?;
    Ok(node.to_string_lossy().into_owned())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22); none for
/// a process that is gone or a zombie.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}
