//! Unpacked layers under `layers/<chain-id hex>`: each holds one layer's changes in overlayfs
//! form; an image's rootfs is the stack of its chain.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{StoreError, io_err, sync_dir};
use crate::atomic::temp_name;
use crate::digest::Digest;

const UNFINISHED: &str = ".unpack-";

pub(super) fn dir(root: &Path) -> PathBuf {
    root.join("layers")
}

pub(super) fn path(root: &Path, chain_id: &Digest) -> PathBuf {
    dir(root).join(chain_id.hex())
}

pub(super) fn workdir(root: &Path) -> Result<PathBuf, StoreError> {
    let path = dir(root).join(temp_name(UNFINISHED));
    fs::create_dir(&path).map_err(io_err(&path))?;
    Ok(path)
}

/// Makes the unpacked layer durable, then puts it in place. A layer already there (unpacked by
/// a pull that lost a race) wins; this copy is dropped.
pub(super) fn commit(root: &Path, workdir: &Path, chain_id: &Digest) -> Result<(), StoreError> {
    let target = path(root, chain_id);
    if target.is_dir() {
        return fs::remove_dir_all(workdir).map_err(io_err(workdir));
    }
    // The unpacker writes without fsync; one syncfs covers every file before the rename that
    // makes the layer visible, so a power loss cannot leave a record pointing at empty files.
    let unpacked = fs::File::open(workdir).map_err(io_err(workdir))?;
    nix::unistd::syncfs(&unpacked).map_err(|e| io_err(workdir)(e.into()))?;
    fs::rename(workdir, &target).map_err(io_err(&target))?;
    let dir = dir(root);
    sync_dir(&dir).map_err(io_err(&dir))
}

pub(super) fn clear_unfinished(root: &Path) -> Result<(), StoreError> {
    remove_where(root, |name| name.starts_with(UNFINISHED))
}

pub(super) fn collect(root: &Path, keep: &BTreeSet<Digest>) -> Result<(), StoreError> {
    remove_where(root, |name| {
        !name.starts_with(UNFINISHED) && !Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| keep.contains(&d))
    })
}

fn remove_where(root: &Path, remove: impl Fn(&str) -> bool) -> Result<(), StoreError> {
    let dir = dir(root);
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        if entry.file_name().to_str().is_none_or(&remove) {
            let path = entry.path();
            tracing::debug!(layer = %path.display(), "removing layer directory");
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}
