//! What the services share: the configuration and what was learnt about the host at start.

use std::sync::{Arc, RwLock};

use std::collections::BTreeMap;
use std::path::PathBuf;

use crisp_image::{ImageRecord, ImageStore, Puller, Reference, StoreError};
use crisp_network::PodCidr;
use crisp_network::cni::Cni;
use crisp_pod::events::EventHub;
use crisp_pod::{PodError, Pods, PodsConfig};
use crisp_runtime::container::{ContainerError, Containers, ContainersConfig};
use crisp_runtime::oci::OciRuntime;
use crisp_runtime::spec::HostFeatures;
use crisp_runtime::{Handler, HandlerError, HandlerFeatures, HandlerName, OomScoreAdjPolicy};

use crate::config::Config;
use crate::streaming::Streaming;

pub struct Daemon {
    pub config: Config,
    /// The configured runtime handlers, validated.
    pub handlers: Vec<Handler>,
    pub default_handler: HandlerName,
    /// What each handler's runtime offers on this kernel, or why it is not usable, asked once
    /// at start.
    handler_probes: BTreeMap<HandlerName, Result<HandlerFeatures, HandlerError>>,
    pub oom_score_adj: OomScoreAdjPolicy,
    /// The node's pod CIDR from the kubelet's last `UpdateRuntimeConfig`.
    pub pod_cidr: RwLock<Option<PodCidr>>,
    pub images: Arc<ImageStore>,
    pub puller: Arc<Puller>,
    pub cni: Arc<Cni>,
    pub pods: Arc<Pods>,
    pub containers: Arc<Containers>,
    /// Lifecycle events of pods and containers, for GetContainerEvents.
    pub events: Arc<EventHub>,
    /// What the host's kernel and cgroups offer containers, probed once.
    pub host: HostFeatures,
    /// Tokens and the URL for Exec, Attach and PortForward.
    pub streaming: Streaming,
    /// The previous CPU read of each container and pod, for the stats' nano-cores.
    pub cpu_rates: crisp_runtime::stats::CpuRates,
    /// Per pod: CreateContainer holds it shared, pod Stop and Remove exclusively, so that no
    /// container is made in a pod being torn down.
    pod_gates: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
    /// `pod.pause_image` parsed; none for the built-in pause.
    pause_image: Option<Reference>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("runtime handlers: {0}")]
    Handler(#[from] crisp_runtime::HandlerError),
    #[error("probing oom_score_adj limits: {0}")]
    OomScoreAdj(std::io::Error),
    #[error("opening the image store: {0}")]
    Images(#[from] StoreError),
    #[error("pod.pause_image: {0}")]
    PauseImage(#[from] crisp_image::ReferenceError),
    #[error("the monitor program {path} is not usable: {reason}")]
    Monitor { path: PathBuf, reason: String },
    #[error("installing the pause rootfs: {0}")]
    PauseRootfs(std::io::Error),
    #[error("opening the pod sandboxes: {0}")]
    Pods(#[from] PodError),
    #[error("probing the host's cgroups and kernel: {0}")]
    Host(std::io::Error),
    #[error("opening the containers: {0}")]
    Containers(#[from] ContainerError),
    #[error("streaming: {0}")]
    Streaming(#[from] crate::streaming::StreamingError),
}

/// The monitor ships beside the daemon, as one package.
const MONITOR_BINARY: &str = "crisp-monitor";

impl Daemon {
    pub async fn new(config: Config) -> Result<Daemon, DaemonError> {
        let handlers = config.runtime.handlers()?;
        let default_handler = HandlerName::new(&config.runtime.default_handler)?;
        let host = HostFeatures::detect().map_err(DaemonError::Host)?;
        // A broken handler fails only the pods asking for it, saying why, not the daemon.
        let probes = futures::future::join_all(handlers.iter().map(|h| h.probe(host.kernel))).await;
        let handler_probes: BTreeMap<_, _> = handlers.iter().map(|h| h.name.clone()).zip(probes).collect();
        for e in handler_probes.values().filter_map(|probe| probe.as_ref().err()) {
            tracing::error!("{e}: pods asking for it fail until crisp is restarted with it fixed");
        }
        let oom_score_adj =
            OomScoreAdjPolicy::detect(config.runtime.restrict_oom_score_adj).map_err(DaemonError::OomScoreAdj)?;
        let images = Arc::new(ImageStore::open(&config.server.root)?);
        let puller = Puller::new(images.clone(), config.image.registries.clone(), config.image.unpack_limits());
        let pause_image =
            Some(&config.pod.pause_image).filter(|p| !p.is_empty()).map(|p| Reference::parse(p)).transpose()?;
        let root = &config.server.root;
        let state = &config.server.state;
        let cni = Arc::new(Cni::new(config.network.clone(), root.join("network").join("cache")));
        let runtimes: BTreeMap<String, Arc<OciRuntime>> = handlers
            .iter()
            .map(|h| {
                let runtime_root = state.join("runtime").join(h.name.as_str());
                let runtime = OciRuntime::new(h.clone(), runtime_root, config.runtime.cgroup_manager)
                    .with_timeout(std::time::Duration::from_secs(config.runtime.command_timeout));
                (h.name.to_string(), Arc::new(runtime))
            })
            .collect();
        let pause_dir = root.join("pause");
        let pause = tokio::task::spawn_blocking(move || crisp_pod::pause::install_rootfs(&pause_dir))
            .await
            .map_err(|e| DaemonError::PauseRootfs(std::io::Error::other(e)))?
            .map_err(DaemonError::PauseRootfs)?;
        let events = Arc::new(EventHub::default());
        let pods = Pods::open(
            PodsConfig {
                root: root.join("pods"),
                state: state.join("pods"),
                netns_dir: state.join("netns"),
                monitor_binary: monitor_binary()?,
                cgroup_manager: config.runtime.cgroup_manager,
                oom_score_adj,
                shm_size: config.pod.shm_size,
                pause,
                runtimes: runtimes.clone(),
                default_handler: default_handler.to_string(),
                events: events.clone(),
            },
            cni.clone(),
        )
        .await?;
        let containers = Containers::open(ContainersConfig {
            root: root.join("containers"),
            state: state.join("containers"),
            cgroup_manager: config.runtime.cgroup_manager,
            events: events.clone(),
        })
        .await?;
        // After both domains settled their records: what the runtimes still hold beyond them is
        // a crash's leftover, and deleting it lets a stray pod's monitor exit.
        for runtime in runtimes.values() {
            runtime.delete_unowned(|id| pods.owns(id) || containers.owns(id)).await;
        }
        events.bind(&pods, &containers);
        let streaming = Streaming::bind(&config.streaming)?;
        Ok(Daemon {
            config,
            handlers,
            default_handler,
            handler_probes,
            oom_score_adj,
            pod_cidr: RwLock::new(None),
            images,
            puller,
            cni,
            pods,
            containers,
            events,
            host,
            streaming,
            cpu_rates: Default::default(),
            pod_gates: Default::default(),
            pause_image,
        })
    }

    /// The configured pause image is never collected and shows as pinned.
    pub fn is_pinned(&self, image: &ImageRecord) -> bool {
        self.pause_image.as_ref().is_some_and(|r| {
            r.tagged().is_some_and(|t| image.repo_tags.contains(&t))
                || r.digest().is_some_and(|d| image.repo_digests.contains(&r.with_digest(d)))
        })
    }

    pub fn pod_gate(&self, sandbox_id: &str) -> Arc<tokio::sync::RwLock<()>> {
        self.pod_gates.lock().expect("pod gates lock").entry(sandbox_id.to_owned()).or_default().clone()
    }

    /// Forgets a removed pod's gate.
    pub fn drop_pod_gate(&self, sandbox_id: &str) {
        self.pod_gates.lock().expect("pod gates lock").remove(sandbox_id);
    }

    pub fn pause_image(&self) -> Option<&Reference> {
        self.pause_image.as_ref()
    }

    /// What `handler`'s runtime offers; nothing for a handler crisp does not have or cannot use.
    pub fn handler_features(&self, handler: &HandlerName) -> HandlerFeatures {
        self.handler_probes.get(handler).and_then(|probe| probe.as_ref().ok()).copied().unwrap_or_default()
    }

    /// Whether the handler a pod asks for (empty: the default) was found usable at start. One
    /// crisp does not have is for the pods to refuse, as unknown.
    pub fn usable_handler(&self, handler: &str) -> Result<(), HandlerError> {
        let name = if handler.is_empty() { self.default_handler.as_str() } else { handler };
        match self.handler_probes.iter().find(|(n, _)| n.as_str() == name) {
            Some((_, Err(e))) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    pub fn default_handler(&self) -> &Handler {
        self.handlers
            .iter()
            .find(|h| h.name == self.default_handler)
            .expect("configuration validation keeps the default handler among the handlers")
    }
}

fn monitor_binary() -> Result<PathBuf, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let unusable = |path: PathBuf, reason: String| DaemonError::Monitor { path, reason };
    let exe =
        std::env::current_exe().map_err(|e| unusable(MONITOR_BINARY.into(), format!("finding crisp's path: {e}")))?;
    let path = exe.with_file_name(MONITOR_BINARY);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(path),
        Ok(_) => Err(unusable(path, "not an executable file".into())),
        Err(e) => Err(unusable(path, format!("{e} (it is installed beside crisp)"))),
    }
}
