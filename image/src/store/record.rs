//! One JSON record per image under `images/<id hex>.json`, written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StoreError, io_err};
use crate::atomic;
use crate::digest::{Digest, ImageId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config's digest.
    pub id: ImageId,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// The platform manifest the image was pulled by.
    pub manifest: Digest,
    /// Compressed layer blobs, bottom first.
    pub layers: Vec<Digest>,
    /// The unpacked layers, bottom first.
    pub chain_ids: Vec<Digest>,
    /// Manifest, config and compressed layers, in bytes.
    pub size: u64,
    pub config: ImageConfigSummary,
    /// When the record was last written, in a daemon-wide increasing order: which of two
    /// records claiming one tag (a crash in the middle of moving it) is the newer.
    #[serde(default)]
    pub generation: u64,
}

/// Nanoseconds since the epoch, never equal to or below the last one handed out.
pub fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// What creating a container needs from the image config, kept so that no config is read on a
/// container's start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfigSummary {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub volumes: Vec<String>,
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: String,
}

impl ImageRecord {
    /// Every blob the image owns.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.id, &self.manifest].into_iter().chain(self.layers.iter())
    }
}

pub(super) fn dir(root: &Path) -> PathBuf {
    root.join("images")
}

fn path(root: &Path, id: &ImageId) -> PathBuf {
    dir(root).join(format!("{}.json", id.hex()))
}

pub(super) fn write(root: &Path, record: &ImageRecord) -> Result<(), StoreError> {
    let path = path(root, &record.id);
    let json = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Record { path: path.clone(), source })?;
    atomic::write(&path, &json).map_err(io_err(&path))
}

pub(super) fn remove(root: &Path, id: &ImageId) -> Result<(), StoreError> {
    let path = path(root, id);
    atomic::remove(&path).map_err(io_err(&path))
}

/// Loads every record. One that cannot be read as a record is moved aside to `*.corrupt` and
/// logged, so one bad file costs one image, not the daemon.
pub(super) fn load_all(root: &Path) -> Result<BTreeMap<ImageId, ImageRecord>, StoreError> {
    let dir = dir(root);
    let mut images = BTreeMap::new();
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let path = entry.map_err(io_err(&dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(".tmp-") {
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        let Some(hex) = name.strip_suffix(".json") else { continue };
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        match serde_json::from_slice::<ImageRecord>(&bytes) {
            Ok(record) if record.id.hex() == hex => {
                images.insert(record.id.clone(), record);
            }
            outcome => {
                let why = outcome.err().map_or("its ID does not match its file name".to_owned(), |e| e.to_string());
                let aside = path.with_extension("corrupt");
                tracing::error!(record = %path.display(), "image record set aside to {}: {why}", aside.display());
                fs::rename(&path, &aside).map_err(io_err(&path))?;
            }
        }
    }
    settle_tags(root, &mut images)?;
    Ok(images)
}

/// A tag on two records (a crash while it moved) stays on the newer one only.
fn settle_tags(root: &Path, images: &mut BTreeMap<ImageId, ImageRecord>) -> Result<(), StoreError> {
    let mut owner: BTreeMap<String, (u64, ImageId)> = BTreeMap::new();
    for image in images.values() {
        for tag in &image.repo_tags {
            let entry = owner.entry(tag.clone()).or_insert((image.generation, image.id.clone()));
            if image.generation > entry.0 {
                *entry = (image.generation, image.id.clone());
            }
        }
    }
    for image in images.values_mut() {
        let before = image.repo_tags.len();
        image.repo_tags.retain(|t| owner.get(t).is_some_and(|(_, id)| *id == image.id));
        if image.repo_tags.len() != before {
            tracing::warn!(image = %image.id, "dropping tags a newer image record holds");
            write(root, image)?;
        }
    }
    Ok(())
}
