//! Which images containers use: one file per holder under `holds/<holder>` naming the image.
//! A held image can be untagged, but it and its content stay until the last hold is released.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{StoreError, io_err};
use crate::atomic;
use crate::digest::{Digest, ImageId};

/// A container's ID, as a file name: nothing that could climb out of the directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid image holder {0:?}: want 1-128 of [A-Za-z0-9_.-], not starting with '.'")]
pub struct HolderError(String);

impl Holder {
    pub fn new(id: &str) -> Result<Holder, HolderError> {
        let ok = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok { Ok(Holder(id.to_owned())) } else { Err(HolderError(id.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(super) fn dir(root: &Path) -> PathBuf {
    root.join("holds")
}

fn path(root: &Path, holder: &Holder) -> PathBuf {
    dir(root).join(&holder.0)
}

pub(super) fn write(root: &Path, holder: &Holder, image: &ImageId) -> Result<(), StoreError> {
    let path = path(root, holder);
    atomic::write(&path, image.as_str().as_bytes()).map_err(io_err(&path))
}

pub(super) fn remove(root: &Path, holder: &Holder) -> Result<(), StoreError> {
    let path = path(root, holder);
    atomic::remove(&path).map_err(io_err(&path))
}

/// Every hold; one whose file does not name an image is set aside, logged.
pub(super) fn load_all(root: &Path) -> Result<BTreeMap<Holder, ImageId>, StoreError> {
    let dir = dir(root);
    let mut holds = BTreeMap::new();
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let path = entry.map_err(io_err(&dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.starts_with(".tmp-") {
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        if name.ends_with(".corrupt") {
            continue;
        }
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        match (Holder::new(&name), Digest::parse(text.trim())) {
            (Ok(holder), Ok(image)) => {
                holds.insert(holder, image);
            }
            _ => {
                let aside = dir.join(format!("{name}.corrupt"));
                tracing::error!(hold = %path.display(), "image hold set aside to {}: not an image ID", aside.display());
                fs::rename(&path, &aside).map_err(io_err(&path))?;
            }
        }
    }
    Ok(holds)
}
