//! Blobs by digest under `blobs/sha256/<hex>`; downloads land in `ingest/` and are renamed in
//! only once their digest and size are verified.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{StoreError, io_err, sync_dir};
use crate::atomic::temp_name;
use crate::digest::Digest;

pub(super) fn dir(root: &Path) -> PathBuf {
    root.join("blobs/sha256")
}

pub(super) fn ingest_dir(root: &Path) -> PathBuf {
    root.join("ingest")
}

pub(super) fn path(root: &Path, digest: &Digest) -> PathBuf {
    dir(root).join(digest.hex())
}

/// Partial downloads are not resumed across restarts: redone from the start, they are verified
/// whole.
pub(super) fn clear_ingest(root: &Path) -> Result<(), StoreError> {
    let dir = ingest_dir(root);
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let path = entry.map_err(io_err(&dir))?.path();
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

pub(super) fn collect(root: &Path, keep: &BTreeSet<Digest>) -> Result<(), StoreError> {
    let dir = dir(root);
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let kept = name
            .to_str()
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            .is_some_and(|d| keep.contains(&d));
        if !kept {
            let path = entry.path();
            tracing::debug!(blob = %path.display(), "collecting unreferenced blob");
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// A blob being written: hashed and counted as it goes.
pub struct Ingest {
    root: PathBuf,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    size: u64,
}

impl Ingest {
    pub(super) fn create(root: &Path) -> Result<Ingest, StoreError> {
        let path = ingest_dir(root).join(temp_name("blob-"));
        let file = File::create_new(&path).map_err(io_err(&path))?;
        Ok(Ingest { root: root.to_owned(), path, file, hasher: Sha256::new(), size: 0 })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(chunk).map_err(io_err(&self.path))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Stores the blob if it is what was expected; else nothing is stored.
    pub fn commit(self, expected: &Digest, expected_size: u64) -> Result<PathBuf, StoreError> {
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != *expected || self.size != expected_size {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
                size: self.size,
                want_size: expected_size,
            });
        }
        self.file.sync_all().map_err(io_err(&self.path))?;
        let target = path(&self.root, expected);
        fs::rename(&self.path, &target).map_err(io_err(&target))?;
        let dir = dir(&self.root);
        sync_dir(&dir).map_err(io_err(&dir))?;
        Ok(target)
    }
}

impl Drop for Ingest {
    /// An ingest that was not committed is garbage: a failed or abandoned download.
    fn drop(&mut self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", self.path.display()),
        }
    }
}
