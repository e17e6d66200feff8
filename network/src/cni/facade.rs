//! [`Cni`]: the pod network as the rest of crisp uses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cache::{Cache, Entry};
use super::capabilities::capability_args;
use super::chain::{self, AddFailure, Chain, Network};
use super::error::CniError;
use super::exec::{AttachmentParams, Executor, Plugin};
use super::request::{Attachment, IFNAME, PodNetworkRequest, check_container_id};
use super::result::pod_ips;
use super::version::{SpecVersion, VersionCache};
use crate::NetworkConfig;
use crate::conflist::{self, ConfList, NetworkNotReady};

/// Pods on the CNI network: the network picked from the configuration directory at each ADD,
/// the attachments made remembered under a cache directory.
///
/// The CNI rules for callers: one operation at a time per container id; GC only while no ADD or
/// DEL runs.
#[derive(Debug)]
pub struct Cni {
    config: NetworkConfig,
    cache: Cache,
    exec: Executor,
    versions: VersionCache,
}

impl Cni {
    pub fn new(config: NetworkConfig, cache_dir: PathBuf) -> Cni {
        let exec = Executor::new(&config.plugin_dirs, Duration::from_secs(config.plugin_timeout));
        Cni { config, cache: Cache::new(cache_dir), exec, versions: VersionCache::default() }
    }

    /// Sets how long one plugin may run before it (and what it started) is killed, instead of
    /// the config's `plugin_timeout`.
    pub fn with_timeout(self, timeout: Duration) -> Cni {
        Cni { exec: self.exec.with_timeout(timeout), ..self }
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The network a new pod joins now. Blocking (reads the configuration directory).
    pub fn network(&self) -> Result<ConfList, NetworkNotReady> {
        conflist::pod_network(&self.config)
    }

    /// Attaches a pod to the network picked now, running ADD along its chain with the version
    /// all its plugins support. The attachment is on disk before this returns, and from before
    /// the first plugin runs: an ADD cut short (a crash, a dropped call) leaves what DEL needs.
    /// On failure the chain is DELeted (best effort) and no attachment is left.
    #[tracing::instrument(name = "cni", skip_all, fields(operation = "ADD", container_id = %request.container_id))]
    pub async fn add(&self, request: &PodNetworkRequest) -> Result<Attachment, CniError> {
        let id = &request.container_id;
        check_container_id(id)?;
        let cni_args = request.cni_args()?;
        let args = capability_args(&request.port_mappings, request.bandwidth.as_ref(), request.dns.as_ref());
        let (cache, config, owned_id) = (self.cache.clone(), self.config.clone(), id.clone());
        let (list, plugins) = blocking(move || {
            if cache.load(&owned_id)?.is_some() {
                return Err(CniError::AlreadyAttached(owned_id));
            }
            let list = conflist::pod_network(&config)?;
            let plugins = chain::resolve(&config.plugin_dirs, list.plugin_types())?;
            Ok((list, plugins))
        })
        .await?;
        let version = chain::agree_version(&self.exec, &self.versions, &list, &plugins).await?;
        let network = Network::new(&list, version);
        let mut entry = Entry::new(id, &request.netns, network.clone(), cni_args.clone(), args);
        self.store(&entry).await?;

        let chain = Chain { exec: &self.exec, network: &network, plugins: &plugins };
        let params = AttachmentParams { container_id: id, netns: &request.netns, ifname: IFNAME, args: &cni_args };
        let failure = match chain.add(&params, &entry.capability_args).await {
            Ok(result) => {
                entry.result = Some(result.clone());
                match self.store(&entry).await {
                    Ok(()) => {
                        let ips = pod_ips(&result);
                        return Ok(Attachment { network: network.name, interface: IFNAME.into(), ips, result });
                    }
                    Err(error) => AddFailure { error, last: Some(result) },
                }
            }
            Err(failure) => failure,
        };
        match chain.del(&params, &entry.capability_args, failure.last.as_ref()).await {
            Ok(()) => {
                if let Err(e) = self.remove(id).await {
                    tracing::warn!(container_id = %id, "removing the attachment of a failed ADD: {e}");
                }
            }
            // The entry stays, so that a later `del` frees what the ADD got (an address, rules).
            Err(e) => tracing::warn!(container_id = %id, network = %network.name, "DEL after a failed ADD: {e}"),
        }
        Err(failure.error)
    }

    /// Detaches a pod: DEL along the chain in reverse, with the configuration, arguments and
    /// result the ADD used (whatever the configuration directory holds now). No attachment: Ok.
    /// The attachment is forgotten only once every plugin succeeded.
    #[tracing::instrument(name = "cni", skip_all, fields(operation = "DEL", container_id = %container_id))]
    pub async fn del(&self, container_id: &str) -> Result<(), CniError> {
        let Some((entry, plugins)) = self.attachment(container_id).await? else {
            let (cache, id) = (self.cache.clone(), container_id.to_owned());
            if blocking(move || Ok(cache.was_set_aside(&id))).await? {
                return self.del_without_entry(container_id).await;
            }
            return Ok(());
        };
        let netns = entry.netns.clone();
        // A namespace already removed: the plugins still clean up what is outside it.
        let netns = blocking(move || Ok(if netns.exists() { netns } else { PathBuf::new() })).await?;
        let chain = Chain { exec: &self.exec, network: &entry.network, plugins: &plugins };
        chain.del(&params(&entry, &netns), &entry.capability_args, entry.result.as_ref()).await?;
        self.remove(container_id).await
    }

    /// DEL of an attachment whose entry was set aside as unreadable: what ADD got (an address,
    /// rules) is still held, so the network picked now is told, with no netns (crisp removes
    /// it) and no previous result, as runtimes without a cache do.
    async fn del_without_entry(&self, container_id: &str) -> Result<(), CniError> {
        let (network, plugins) = self.current().await?;
        let entry = Entry::new(container_id, Path::new(""), network, "IgnoreUnknown=1".into(), Default::default());
        let chain = Chain { exec: &self.exec, network: &entry.network, plugins: &plugins };
        chain.del(&params(&entry, Path::new("")), &entry.capability_args, None).await
    }

    /// CHECK along the chain that a pod's attachment is still as ADD made it. Needs CNI 0.4.0;
    /// a network with `disableCheck` passes.
    pub async fn check(&self, container_id: &str) -> Result<(), CniError> {
        let not_attached = || CniError::NotAttached(container_id.to_owned());
        let (entry, plugins) = self.attachment(container_id).await?.ok_or_else(not_attached)?;
        let result = entry.result.as_ref().ok_or_else(not_attached)?;
        let network = &entry.network;
        if network.cni_version < SpecVersion::V0_4_0 {
            return Err(CniError::CheckUnsupported { network: network.name.clone(), version: network.cni_version });
        }
        if network.disable_check {
            return Ok(());
        }
        let chain = Chain { exec: &self.exec, network, plugins: &plugins };
        chain.check(&params(&entry, &entry.netns), &entry.capability_args, result).await
    }

    /// STATUS of the network picked now, if it runs CNI 1.1.0; Ok for older versions.
    pub async fn status(&self) -> Result<(), CniError> {
        let (network, plugins) = self.current().await?;
        if network.cni_version < SpecVersion::V1_1_0 {
            return Ok(());
        }
        Chain { exec: &self.exec, network: &network, plugins: &plugins }.status().await
    }

    /// GC of the network picked now, if it runs CNI 1.1.0 and allows it, telling its plugins the
    /// pods (container ids) still attached; a no-op for older networks. Every plugin runs; the
    /// error lists all failures.
    pub async fn gc(&self, keep: &[String]) -> Result<(), CniError> {
        let (network, plugins) = self.current().await?;
        if network.cni_version < SpecVersion::V1_1_0 || network.disable_gc {
            return Ok(());
        }
        Chain { exec: &self.exec, network: &network, plugins: &plugins }.gc(keep).await
    }

    /// The container ids with an attachment on disk, to reconcile after a restart; unreadable
    /// entries are set aside (and logged) on the way. Blocking.
    pub fn cached(&self) -> Result<Vec<String>, CniError> {
        let mut readable = Vec::new();
        for id in self.cache.list()? {
            if self.cache.load_or_set_aside(&id)?.is_some() {
                readable.push(id);
            }
        }
        Ok(readable)
    }

    /// Drops the temp files of cache writes a crash cut short; at start, before any ADD or DEL.
    /// Blocking.
    pub fn remove_partial_writes(&self) -> Result<(), CniError> {
        self.cache.remove_partial()
    }

    /// The network picked now, its plugins found and its version agreed on.
    async fn current(&self) -> Result<(Network, Vec<Plugin>), CniError> {
        let config = self.config.clone();
        let (list, plugins) = blocking(move || {
            let list = conflist::pod_network(&config)?;
            let plugins = chain::resolve(&config.plugin_dirs, list.plugin_types())?;
            Ok((list, plugins))
        })
        .await?;
        let version = chain::agree_version(&self.exec, &self.versions, &list, &plugins).await?;
        Ok((Network::new(&list, version), plugins))
    }

    /// A pod's attachment on disk, with its network's plugins found.
    async fn attachment(&self, container_id: &str) -> Result<Option<(Entry, Vec<Plugin>)>, CniError> {
        check_container_id(container_id)?;
        let (cache, dirs, id) = (self.cache.clone(), self.config.plugin_dirs.clone(), container_id.to_owned());
        blocking(move || {
            let Some(entry) = cache.load_or_set_aside(&id)? else { return Ok(None) };
            let plugins = entry.network.resolve(&dirs)?;
            Ok(Some((entry, plugins)))
        })
        .await
    }

    async fn store(&self, entry: &Entry) -> Result<(), CniError> {
        let (cache, entry) = (self.cache.clone(), entry.clone());
        blocking(move || cache.store(&entry)).await
    }

    async fn remove(&self, container_id: &str) -> Result<(), CniError> {
        let (cache, id) = (self.cache.clone(), container_id.to_owned());
        blocking(move || cache.remove(&id)).await
    }
}

fn params<'a>(entry: &'a Entry, netns: &'a Path) -> AttachmentParams<'a> {
    AttachmentParams { container_id: &entry.container_id, netns, ifname: &entry.if_name, args: &entry.cni_args }
}

/// Runs file system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
