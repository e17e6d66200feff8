//! What the services share: the configuration and what was learnt about the host at start.

use std::sync::{Arc, RwLock};

use crisp_image::{ImageRecord, ImageStore, Puller, Reference, StoreError};
use crisp_network::PodCidr;
use crisp_runtime::{Handler, HandlerName, OomScoreAdjPolicy};

use crate::config::Config;

pub struct Daemon {
    pub config: Config,
    /// The configured runtime handlers, validated.
    pub handlers: Vec<Handler>,
    pub default_handler: HandlerName,
    pub oom_score_adj: OomScoreAdjPolicy,
    /// The node's pod CIDR from the kubelet's last `UpdateRuntimeConfig`.
    pub pod_cidr: RwLock<Option<PodCidr>>,
    pub images: Arc<ImageStore>,
    pub puller: Arc<Puller>,
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
}

impl Daemon {
    pub fn new(config: Config) -> Result<Daemon, DaemonError> {
        let handlers = config.runtime.handlers()?;
        let default_handler = HandlerName::new(&config.runtime.default_handler)?;
        let oom_score_adj =
            OomScoreAdjPolicy::detect(config.runtime.restrict_oom_score_adj).map_err(DaemonError::OomScoreAdj)?;
        let images = Arc::new(ImageStore::open(&config.server.root)?);
        let puller = Puller::new(images.clone(), config.image.registries.clone(), config.image.unpack_limits());
        let pause_image =
            Some(&config.pod.pause_image).filter(|p| !p.is_empty()).map(|p| Reference::parse(p)).transpose()?;
        Ok(Daemon {
            config,
            handlers,
            default_handler,
            oom_score_adj,
            pod_cidr: RwLock::new(None),
            images,
            puller,
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

    pub fn default_handler(&self) -> &Handler {
        self.handlers
            .iter()
            .find(|h| h.name == self.default_handler)
            .expect("configuration validation keeps the default handler among the handlers")
    }
}
