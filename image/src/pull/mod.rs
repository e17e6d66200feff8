//! Pulling an image: manifest (through an index to the host's platform), config, and each layer
//! streamed to disk, verified, and unpacked once; the image record is committed last.

mod credentials;
mod endpoint;
mod error;
mod fetch;
mod manifest;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use tracing::Instrument;

pub use credentials::Credentials;
pub use endpoint::{Endpoint, endpoints};
pub use error::PullError;
/// The document parsers on their own, for the fuzz targets (fuzz/).
#[doc(hidden)]
pub use manifest::{parse_config, parse_manifest};

use self::manifest::{Descriptor, MAX_DOCUMENT_SIZE, Manifest};
use crate::config::RegistryConfig;
use crate::digest::{Digest, chain_ids};
use crate::reference::Reference;
use crate::store::{Content, ImageRecord, ImageStore, Ingest};
use crate::unpack::{self, Compression, Limits, UnpackError};

/// Layers fetched and unpacked at once per pull.
const LAYER_CONCURRENCY: usize = 3;
/// Chunks of a blob on their way to disk.
const WRITE_QUEUE: usize = 16;
/// More layers than overlayfs stacks well: refused before anything is fetched.
const MAX_LAYERS: usize = 256;

type PullFuture = Shared<BoxFuture<'static, Result<ImageRecord, PullError>>>;

pub struct Puller {
    store: Arc<ImageStore>,
    registries: Vec<RegistryConfig>,
    limits: Limits,
    /// Pulls under way by reference and credentials: a second pull of the same waits for the
    /// first. Each runs as a task of its own, so a caller that gives up (a deadline) does not
    /// leave a half-done pull holding the store.
    inflight: Mutex<HashMap<(String, u64), PullFuture>>,
    /// Layer bytes received from registries, for the daemon's metrics.
    fetched: AtomicU64,
}

impl Puller {
    pub fn new(store: Arc<ImageStore>, registries: Vec<RegistryConfig>, limits: Limits) -> Arc<Puller> {
        // oci-client's HTTP stack needs a process-wide TLS provider; ring is the lean one.
        // Installing fails only when one is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(Puller { store, registries, limits, inflight: Mutex::new(HashMap::new()), fetched: AtomicU64::new(0) })
    }

    /// Layer bytes received from registries since start, verified or not.
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    pub async fn pull(
        self: &Arc<Self>,
        reference: Reference,
        credentials: Credentials,
    ) -> Result<ImageRecord, PullError> {
        let key = (reference.to_string(), credentials.fingerprint());
        let pull = {
            let mut inflight = self.inflight.lock().expect("inflight pulls");
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let this = self.clone();
                    // A child of the first caller's span: the pull it started.
                    let span = tracing::info_span!("pull", image = %reference);
                    let task = tokio::spawn(
                        async move {
                            let result = this.pull_from_endpoints(&reference, &credentials).await;
                            this.inflight.lock().expect("inflight pulls").remove(&key);
                            result
                        }
                        .instrument(span),
                    );
                    async move { task.await.unwrap_or_else(|e| Err(PullError::Store(format!("pull task: {e}")))) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        pull.await
    }

    async fn pull_from_endpoints(
        &self,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<ImageRecord, PullError> {
        let mut failures = Vec::new();
        for endpoint in endpoints(&self.registries, reference) {
            // The kubelet's credentials are for the registry itself; mirrors get none.
            let auth = if endpoint.upstream { credentials.registry_auth() } else { RegistryAuth::Anonymous };
            match self.pull_from(&endpoint, reference, &auth).await {
                Ok(record) => return Ok(record),
                // Content that fails verification or a store that fails is no reason to ask
                // the next endpoint: the next would get the same.
                Err(e) if !e.is_endpoint_failure() => return Err(e),
                Err(e) => {
                    tracing::info!(%reference, %endpoint, "pull failed, trying the next endpoint: {e}");
                    failures.push((endpoint, e));
                }
            }
        }
        Err(PullError::from_endpoint_failures(reference, failures))
    }

    async fn pull_from(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<ImageRecord, PullError> {
        let client = endpoint.client();
        let http = endpoint.http_client().map_err(|e| PullError::Unreachable {
            reference: reference.to_string(),
            message: format!("{endpoint}: setting up HTTP: {e}"),
        })?;
        let fetcher = fetch::Fetcher { client: &client, http: &http, endpoint, reference, auth };
        let remote = endpoint.reference(reference);
        let (top, top_digest) = fetcher.manifest(&remote).await?;
        let (manifest_bytes, manifest_digest, config, layers) =
            match manifest::parse_manifest(&top).map_err(|why| PullError::invalid(reference, why))? {
                Manifest::Image { config, layers } => (top.clone(), top_digest.clone(), config, layers),
                Manifest::Index(entries) => {
                    let (os, arch) = manifest::host_platform();
                    let entry = manifest::pick_platform(&entries).ok_or_else(|| {
                        PullError::invalid(reference, format!("the image index has no manifest for {os}/{arch}"))
                    })?;
                    let by_digest = oci_client::Reference::with_digest(
                        remote.registry().to_owned(),
                        remote.repository().to_owned(),
                        entry.digest.to_string(),
                    );
                    let (bytes, digest) = fetcher.manifest(&by_digest).await?;
                    match manifest::parse_manifest(&bytes).map_err(|why| PullError::invalid(reference, why))? {
                        Manifest::Image { config, layers } => (bytes, digest, config, layers),
                        Manifest::Index(_) => return Err(PullError::invalid(reference, "an index inside an index")),
                    }
                }
            };

        if layers.len() > MAX_LAYERS {
            return Err(PullError::invalid(reference, format!("{} layers, more than {MAX_LAYERS}", layers.len())));
        }
        if let Some(huge) = layers.iter().find(|l| l.size > self.limits.max_bytes) {
            return Err(PullError::invalid(
                reference,
                format!("layer {} is {} bytes, over the {} byte limit", huge.digest, huge.size, self.limits.max_bytes),
            ));
        }
        let _pulling = self.store.pulling().await;
        let config_bytes = fetch_document(&client, &remote, &config, endpoint, reference).await?;
        let image_config = manifest::parse_config(&config_bytes).map_err(|why| PullError::invalid(reference, why))?;
        if image_config.diff_ids.len() != layers.len() {
            return Err(PullError::invalid(
                reference,
                format!("the config lists {} layers, the manifest {}", image_config.diff_ids.len(), layers.len()),
            ));
        }
        self.store_document(&manifest_digest, &manifest_bytes).await?;
        self.store_document(&config.digest, &config_bytes).await?;

        let chain = chain_ids(&image_config.diff_ids);
        let diff_ids = &image_config.diff_ids;
        // By index: a closure over borrowed tuples is not general enough for a shared future.
        // Every layer runs to its end before a failure is reported: an unpack on a blocking
        // thread cannot be cancelled, and must not outlive the pull that started it.
        let outcomes: Vec<Result<(), PullError>> = futures::stream::iter(0..layers.len())
            .map(|i| self.ensure_layer(&client, &remote, endpoint, reference, &layers[i], &diff_ids[i], &chain[i]))
            .buffer_unordered(LAYER_CONCURRENCY)
            .collect()
            .await;
        outcomes.into_iter().collect::<Result<Vec<()>, _>>()?;

        let size = layers
            .iter()
            .try_fold(manifest_bytes.len() as u64 + config.size, |total, l| total.checked_add(l.size))
            .ok_or_else(|| PullError::invalid(reference, "layer sizes add up past 2^64 bytes"))?;
        let record = ImageRecord {
            id: config.digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            manifest: manifest_digest,
            layers: layers.iter().map(|l| l.digest.clone()).collect(),
            chain_ids: chain,
            size,
            config: image_config.summary,
            generation: 0,
        };
        let (store, tagged_as) = (self.store.clone(), reference.clone());
        let record =
            blocking(move || store.commit_image(record, &tagged_as, &top_digest).map_err(PullError::store)).await?;
        tracing::info!(%reference, id = %record.id, "pulled from {endpoint}");
        Ok(record)
    }

    async fn store_document(&self, digest: &Digest, bytes: &[u8]) -> Result<(), PullError> {
        let _lock = self.store.lock_content(Content::Blob, digest).await;
        if self.store.has_blob(digest) {
            return Ok(());
        }
        let mut ingest = self.store.ingest().map_err(PullError::store)?;
        ingest.write(bytes).map_err(PullError::store)?;
        let (digest, size) = (digest.clone(), bytes.len() as u64);
        blocking(move || ingest.commit(&digest, size).map(drop).map_err(PullError::store)).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn ensure_layer(
        &self,
        client: &oci_client::Client,
        remote: &oci_client::Reference,
        endpoint: &Endpoint,
        reference: &Reference,
        layer: &Descriptor,
        diff_id: &Digest,
        chain_id: &Digest,
    ) -> Result<(), PullError> {
        if self.store.has_layer(chain_id) {
            return Ok(());
        }
        let _layer_lock = self.store.lock_content(Content::Layer, chain_id).await;
        if self.store.has_layer(chain_id) {
            return Ok(());
        }
        {
            let _blob_lock = self.store.lock_content(Content::Blob, &layer.digest).await;
            if !self.store.has_blob(&layer.digest) {
                download(&self.store, &self.fetched, client, remote, layer, endpoint, reference).await?;
            }
        }
        let compression = Compression::from_media_type(&layer.media_type);
        let store = self.store.clone();
        let (blob, diff_id, chain_id, limits) =
            (store.blob_path(&layer.digest), diff_id.clone(), chain_id.clone(), self.limits);
        let reference_text = reference.to_string();
        let span = tracing::info_span!("unpack", layer = %layer.digest);
        blocking(move || {
            let _unpacking = span.enter();
            let invalid = |why: String| PullError::Invalid { reference: reference_text.clone(), reason: why };
            let workdir = store.layer_workdir().map_err(PullError::store)?;
            let unpacked = std::fs::File::open(&blob)
                .map_err(|e| PullError::Store(format!("{}: {e}", blob.display())))
                .and_then(|mut file| {
                    let compression = match compression {
                        Some(c) => c,
                        None => {
                            let mut magic = [0u8; 8];
                            let n = file.read(&mut magic).map_err(|e| PullError::Store(e.to_string()))?;
                            std::io::Seek::rewind(&mut file).map_err(|e| PullError::Store(e.to_string()))?;
                            Compression::sniff(&magic[..n])
                        }
                    };
                    unpack::unpack(std::io::BufReader::new(file), compression, &workdir, &limits).map_err(|e| match e {
                        UnpackError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                            PullError::NoSpace(e.to_string())
                        }
                        e => invalid(format!("layer {}: {e}", blob.display())),
                    })
                });
            let result = unpacked.and_then(|unpacked| {
                if unpacked.diff_id != diff_id {
                    return Err(invalid(format!(
                        "layer's uncompressed digest is {}, the config says {diff_id}",
                        unpacked.diff_id
                    )));
                }
                store.commit_layer(&workdir, &chain_id).map_err(PullError::store)
            });
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&workdir);
            }
            result
        })
        .await
    }
}

/// Streams a blob into the store, checking its size as it comes and its digest at the end.
async fn download(
    store: &Arc<ImageStore>,
    fetched: &AtomicU64,
    client: &oci_client::Client,
    remote: &oci_client::Reference,
    layer: &Descriptor,
    endpoint: &Endpoint,
    reference: &Reference,
) -> Result<(), PullError> {
    let descriptor = oci_descriptor(layer);
    let mut stream =
        client.pull_blob_stream(remote, &descriptor).await.map_err(|e| PullError::registry(endpoint, reference, e))?;
    // The file is written on a blocking thread the chunks are handed to; a full channel slows
    // the download to the disk's pace.
    let mut ingest = store.ingest().map_err(PullError::store)?;
    let (chunks, mut to_write) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || -> Result<Ingest, PullError> {
        while let Some(chunk) = to_write.blocking_recv() {
            ingest.write(&chunk).map_err(PullError::store)?;
        }
        Ok(ingest)
    });
    let mut received = 0u64;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failure = Some(PullError::stream(endpoint, reference, e));
                break;
            }
        };
        received += chunk.len() as u64;
        fetched.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if received > layer.size {
            failure = Some(PullError::invalid(
                reference,
                format!("blob {} is larger than its {} bytes", layer.digest, layer.size),
            ));
            break;
        }
        if chunks.send(chunk).await.is_err() {
            break; // the writer failed: its error is the one to report
        }
    }
    drop(chunks);
    let written = writer.await.map_err(|e| PullError::Store(format!("blob writer: {e}")))?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    let ingest = written?;
    let (digest, size, reference) = (layer.digest.clone(), layer.size, reference.clone());
    blocking(move || ingest.commit(&digest, size).map(drop).map_err(|e| PullError::invalid(&reference, e.to_string())))
        .await
}

/// Runs fsyncs, renames and the like off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PullError> + Send + 'static,
) -> Result<T, PullError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| PullError::Store(format!("blocking task: {e}")))?
}

/// Reads a config into memory, refusing more than the cap, and verifies it.
async fn fetch_document(
    client: &oci_client::Client,
    remote: &oci_client::Reference,
    descriptor: &Descriptor,
    endpoint: &Endpoint,
    reference: &Reference,
) -> Result<Vec<u8>, PullError> {
    check_document_size(reference, "config", descriptor.size as usize)?;
    let stream = client
        .pull_blob_stream(remote, &oci_descriptor(descriptor))
        .await
        .map_err(|e| PullError::registry(endpoint, reference, e))?;
    let bytes = fetch::read_capped(
        stream.stream,
        descriptor.size as usize,
        |e| PullError::stream(endpoint, reference, e),
        || {
            PullError::invalid(
                reference,
                format!("config {} is larger than its {} bytes", descriptor.digest, descriptor.size),
            )
        },
    )
    .await?;
    let actual = Digest::of(&bytes);
    if actual != descriptor.digest || bytes.len() as u64 != descriptor.size {
        return Err(PullError::invalid(
            reference,
            format!(
                "config is {actual} ({} bytes), want {} ({} bytes)",
                bytes.len(),
                descriptor.digest,
                descriptor.size
            ),
        ));
    }
    Ok(bytes)
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size as i64,
        ..Default::default()
    }
}

fn check_document_size(reference: &Reference, what: &str, size: usize) -> Result<(), PullError> {
    if size > MAX_DOCUMENT_SIZE {
        return Err(PullError::invalid(
            reference,
            format!("the {what} is {size} bytes, over the {MAX_DOCUMENT_SIZE} byte limit"),
        ));
    }
    Ok(())
}
