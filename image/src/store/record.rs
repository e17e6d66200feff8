//! One JSON record per image under `images/<id hex>.json`, written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io;
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
    match fs::remove_file(&path) {
        Ok(()) => atomic::sync_dir(&dir(root)).map_err(io_err(&path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&path)(e)),
    }
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
    Ok(images)
}
