//! The image store under `root/image`: content-addressed blobs, unpacked layers keyed by chain
//! ID, and one record per image. A record is written last, so an image is visible only once
//! everything it needs is in place; whatever a crash leaves without a record is collected.

mod blobs;
mod holds;
mod layers;
mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use blobs::Ingest;
pub use holds::{Holder, HolderError};
pub use record::{ImageConfigSummary, ImageRecord};

use crate::atomic;
use crate::digest::{Digest, ImageId, is_hex_prefix};
use crate::reference::{Reference, ReferenceError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {expected}: got {actual} ({size} bytes), want {expected} ({want_size} bytes)")]
    DigestMismatch { expected: Digest, actual: Digest, size: u64, want_size: u64 },
    #[error("image record {path}: {source}")]
    Record { path: PathBuf, source: serde_json::Error },
    #[error("image ID prefix {0:?} matches more than one image")]
    Ambiguous(String),
    #[error("no image {0}")]
    NoImage(ImageId),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

pub struct ImageStore {
    root: PathBuf,
    images: RwLock<BTreeMap<ImageId, ImageRecord>>,
    /// Images in use by containers; guarded with `images` (taken after it).
    holds: Mutex<BTreeMap<Holder, ImageId>>,
    /// One async lock per blob or layer being fetched or unpacked, so concurrent pulls of
    /// images that share content do the work once.
    content_locks: Mutex<HashMap<(Content, Digest), ContentLock>>,
    /// Serializes changes to records, so files are written outside the index lock that
    /// readers on the async workers take.
    writer: Mutex<()>,
    /// Pulls hold it shared while they add content not yet owned by a record; collection
    /// takes it exclusively so it never removes what a pull is about to commit.
    collection: tokio::sync::RwLock<()>,
}

impl ImageStore {
    /// Opens (creating) the store, drops what interrupted pulls left, loads the records and
    /// collects unreferenced content.
    pub fn open(root: &Path) -> Result<ImageStore, StoreError> {
        let root = root.join("image");
        for dir in
            [blobs::dir(&root), blobs::ingest_dir(&root), layers::dir(&root), record::dir(&root), holds::dir(&root)]
        {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        blobs::clear_ingest(&root)?;
        layers::clear_unfinished(&root)?;
        let mut images = record::load_all(&root)?;
        let holds = holds::load_all(&root)?;
        // An image untagged while held whose last hold went before it did (a crash between the
        // two) has nothing left to keep it.
        let orphans: Vec<ImageId> = images
            .values()
            .filter(|i| i.repo_tags.is_empty() && i.repo_digests.is_empty() && !holds.values().any(|h| *h == i.id))
            .map(|i| i.id.clone())
            .collect();
        for id in orphans {
            record::remove(&root, &id)?;
            images.remove(&id);
        }
        let store = ImageStore {
            root,
            images: RwLock::new(images),
            holds: Mutex::new(holds),
            content_locks: Mutex::new(HashMap::new()),
            writer: Mutex::new(()),
            collection: tokio::sync::RwLock::new(()),
        };
        store.collect_unlocked()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.read().values().cloned().collect()
    }

    /// Finds an image by ID (`sha256:…`), by a tag or digest reference, full or short, and
    /// then by ID hex or a unique prefix of it (12 digits at least, or any with `sha256:`).
    /// Names go before ID prefixes, as in containerd: a repository may look like hex.
    pub fn resolve(&self, query: &str) -> Result<Option<ImageRecord>, ResolveError> {
        let images = self.read();
        if let Ok(id) = Digest::parse(query) {
            return Ok(images.get(&id).cloned());
        }
        let reference = Reference::parse(query);
        if let Some(image) = reference.as_ref().ok().and_then(|r| Self::find(&images, r)) {
            return Ok(Some(image.clone()));
        }
        let hex = query.strip_prefix("sha256:").unwrap_or(query);
        if is_hex_prefix(hex) && (hex.len() >= 12 || query.starts_with("sha256:")) {
            let mut found = images.values().filter(|i| i.id.hex().starts_with(hex));
            return match (found.next(), found.next()) {
                (Some(first), None) => Ok(Some(first.clone())),
                (Some(_), Some(_)) => Err(ResolveError::Store(StoreError::Ambiguous(query.to_owned()))),
                (None, _) => Ok(None),
            };
        }
        reference.map(|_| None).map_err(ResolveError::Reference)
    }

    fn find<'a>(images: &'a BTreeMap<ImageId, ImageRecord>, reference: &Reference) -> Option<&'a ImageRecord> {
        match (reference.digest(), reference.tagged()) {
            (Some(digest), _) => {
                let wanted = reference.with_digest(digest);
                images.values().find(|i| i.repo_digests.contains(&wanted))
            }
            (None, Some(tagged)) => images.values().find(|i| i.repo_tags.contains(&tagged)),
            (None, None) => None,
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blobs::path(&self.root, digest)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A file to stream a blob into; [`Ingest::commit`] verifies and stores it.
    pub fn ingest(&self) -> Result<Ingest, StoreError> {
        Ingest::create(&self.root)
    }

    pub fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        layers::path(&self.root, chain_id)
    }

    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_path(chain_id).is_dir()
    }

    /// A fresh directory to unpack a layer into, then [`ImageStore::commit_layer`].
    pub fn layer_workdir(&self) -> Result<PathBuf, StoreError> {
        layers::workdir(&self.root)
    }

    pub fn commit_layer(&self, workdir: &Path, chain_id: &Digest) -> Result<(), StoreError> {
        layers::commit(&self.root, workdir, chain_id)
    }

    /// Serializes work on one piece of content across concurrent pulls. Blobs and layers are
    /// locked apart: an uncompressed first layer's blob digest is also its chain ID.
    pub async fn lock_content(&self, kind: Content, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.content_locks.lock().expect("content locks");
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry((kind, digest.clone())).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Held by a pull from its first write until its record is committed.
    pub async fn pulling(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.collection.read().await
    }

    /// Records a pulled image under `reference`, whose manifest (or index) has `repo_digest`:
    /// the tag moves to this image from any other that had it; tags the image had from other
    /// references stay. A reference with a digest records no tag: the registry was not asked
    /// what the tag names now.
    ///
    /// The image's own record is written first, then those that lost the tag: a crash between
    /// leaves the tag on two records, and loading keeps it on the newer one.
    pub fn commit_image(
        &self,
        mut record: ImageRecord,
        reference: &Reference,
        repo_digest: &Digest,
    ) -> Result<ImageRecord, StoreError> {
        let _writer = self.writer.lock().expect("image writer lock");
        let tag = reference.tagged().filter(|_| reference.digest().is_none());
        let mut losers = Vec::new();
        {
            let images = self.read();
            if let Some(existing) = images.get(&record.id) {
                record.repo_tags = existing.repo_tags.clone();
                record.repo_digests = existing.repo_digests.clone();
            }
            if let Some(tag) = &tag {
                for other in images.values().filter(|i| i.id != record.id && i.repo_tags.contains(tag)) {
                    let mut other = other.clone();
                    other.repo_tags.retain(|t| t != tag);
                    losers.push(other);
                }
            }
        }
        if let Some(tag) = tag {
            insert_sorted(&mut record.repo_tags, tag);
        }
        insert_sorted(&mut record.repo_digests, reference.with_digest(repo_digest));
        record.generation = record::next_generation();
        record::write(&self.root, &record)?;
        for loser in &mut losers {
            loser.generation = record::next_generation();
            record::write(&self.root, loser)?;
        }
        let mut images = self.write();
        for loser in losers {
            images.insert(loser.id.clone(), loser);
        }
        images.insert(record.id.clone(), record.clone());
        Ok(record)
    }

    /// Removes an image and every tag of it, then collects what no image uses any more.
    /// Removing an image that is not there is no error: the caller asked for it to be gone.
    pub async fn remove(self: &Arc<Self>, id: &ImageId) -> Result<bool, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        let removed = blocking(&self.root, move || store.remove_record(&id)).await?;
        self.collect().await?;
        Ok(removed)
    }

    fn remove_record(&self, id: &ImageId) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().expect("image writer lock");
        let held = self.holds().values().any(|h| h == id);
        let Some(image) = self.read().get(id).cloned() else { return Ok(false) };
        if held {
            // A container uses it: it loses its names, keeps its content.
            let mut untagged = image;
            untagged.repo_tags.clear();
            untagged.repo_digests.clear();
            untagged.generation = record::next_generation();
            record::write(&self.root, &untagged)?;
            self.write().insert(id.clone(), untagged);
        } else {
            // The record goes first: if that fails, the image stays, in memory as on disk.
            record::remove(&self.root, id)?;
            self.write().remove(id);
        }
        Ok(true)
    }

    /// Collects unreferenced content now if no pull is adding content, else as soon as none
    /// is: a removal never waits for pulls, and pulls never queue behind a collection.
    async fn collect(self: &Arc<Self>) -> Result<(), StoreError> {
        if let Ok(exclusive) = self.collection.try_write() {
            let store = self.clone();
            let result = blocking(&self.root, move || store.collect_unlocked()).await;
            drop(exclusive);
            return result;
        }
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if let Ok(_exclusive) = store.collection.try_write() {
                    let collector = store.clone();
                    if let Err(e) = blocking(&store.root, move || collector.collect_unlocked()).await {
                        tracing::warn!("collecting unreferenced image content: {e}");
                    }
                    return;
                }
            }
        });
        Ok(())
    }

    /// Records that `holder` (a container) uses the image, so removing the image only untags it.
    /// Who holds images now.
    pub fn holders(&self) -> Vec<Holder> {
        self.holds().keys().cloned().collect()
    }

    pub fn hold(&self, holder: &Holder, id: &ImageId) -> Result<(), StoreError> {
        let _writer = self.writer.lock().expect("image writer lock");
        if !self.read().contains_key(id) {
            return Err(StoreError::NoImage(id.clone()));
        }
        holds::write(&self.root, holder, id)?;
        self.holds().insert(holder.clone(), id.clone());
        Ok(())
    }

    /// Ends `holder`'s use. An image that was untagged while held, and is held no more, goes.
    pub async fn release(self: &Arc<Self>, holder: &Holder) -> Result<(), StoreError> {
        let (store, holder) = (self.clone(), holder.clone());
        blocking(&self.root, move || store.release_hold(&holder)).await?;
        self.collect().await
    }

    fn release_hold(&self, holder: &Holder) -> Result<(), StoreError> {
        let _writer = self.writer.lock().expect("image writer lock");
        let Some(id) = self.holds().get(holder).cloned() else { return Ok(()) };
        holds::remove(&self.root, holder)?;
        self.holds().remove(holder);
        let still_held = self.holds().values().any(|h| *h == id);
        let unnamed = self.read().get(&id).is_some_and(|i| i.repo_tags.is_empty() && i.repo_digests.is_empty());
        if !still_held && unnamed {
            record::remove(&self.root, &id)?;
            self.write().remove(&id);
        }
        Ok(())
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, BTreeMap<Holder, ImageId>> {
        self.holds.lock().expect("image holds lock")
    }

    /// Removes blobs and layers no record refers to. Callers hold the collection lock (or are
    /// the only user of the store, at open).
    fn collect_unlocked(&self) -> Result<(), StoreError> {
        let (blobs, layers): (BTreeSet<Digest>, BTreeSet<Digest>) = {
            let images = self.read();
            let blobs = images.values().flat_map(|i| i.blobs()).cloned().collect();
            let layers = images.values().flat_map(|i| i.chain_ids.iter()).cloned().collect();
            (blobs, layers)
        };
        blobs::collect(&self.root, &blobs)?;
        layers::collect(&self.root, &layers)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ImageId, ImageRecord>> {
        self.images.read().expect("image index lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ImageId, ImageRecord>> {
        self.images.write().expect("image index lock")
    }
}

type ContentLock = Arc<tokio::sync::Mutex<()>>;

/// What a content lock guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Content {
    Blob,
    Layer,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Reference(ReferenceError),
    #[error(transparent)]
    Store(StoreError),
}

fn insert_sorted(list: &mut Vec<String>, item: String) {
    if let Err(at) = list.binary_search(&item) {
        list.insert(at, item);
    }
}

/// Bytes and inodes used under a directory, not following symlinks or crossing mounts.
/// Entries that vanish during the walk (a pull renaming, a collection removing) are skipped.
pub fn usage(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let top = fs::symlink_metadata(dir)?;
    let mut bytes = top.blocks() * 512;
    let mut inodes = 1;
    let mut pending = vec![dir.to_owned()];
    let mut seen = std::collections::HashSet::new();
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let meta = match entry.and_then(|e| e.metadata().map(|m| (e.path(), m))) {
                Ok(found) => found,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let (path, meta) = meta;
            if meta.dev() != top.dev() || (meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino()))) {
                continue;
            }
            bytes += meta.blocks() * 512;
            inodes += 1;
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok((bytes, inodes))
}

/// Runs the store's file work (fsyncs, renames, deletions) off the async workers.
async fn blocking<T: Send + 'static>(
    root: &Path,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io { path: root.to_owned(), source: io::Error::other(e) })?
}

pub(crate) use atomic::sync_dir;

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding one image with a config blob and one layer, as a pull leaves it.
    fn store_with_image(dir: &Path) -> (Arc<ImageStore>, ImageRecord) {
        let store = Arc::new(ImageStore::open(dir).unwrap());
        let config = br#"{"rootfs":{"diff_ids":[]}}"#;
        let id = Digest::of(config);
        let mut ingest = store.ingest().unwrap();
        ingest.write(config).unwrap();
        ingest.commit(&id, config.len() as u64).unwrap();
        let chain_id = Digest::of(b"layer");
        let workdir = store.layer_workdir().unwrap();
        fs::write(workdir.join("file"), b"content").unwrap();
        store.commit_layer(&workdir, &chain_id).unwrap();
        let record = ImageRecord {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            manifest: id.clone(),
            layers: Vec::new(),
            chain_ids: vec![chain_id],
            size: config.len() as u64,
            config: ImageConfigSummary::default(),
            generation: 0,
        };
        let reference = Reference::parse("example.com/app:v1").unwrap();
        let record = store.commit_image(record, &reference, &id).unwrap();
        (store, record)
    }

    #[tokio::test]
    async fn a_held_image_is_untagged_by_removal_and_goes_with_its_last_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (store, image) = store_with_image(dir.path());
        assert_eq!(image.repo_tags, ["example.com/app:v1"]);
        let holder = Holder::new("0123abcd").unwrap();
        store.hold(&holder, &image.id).unwrap();

        assert!(store.remove(&image.id).await.unwrap());
        let untagged = store.resolve(image.id.as_str()).unwrap().expect("held image stays");
        assert!(untagged.repo_tags.is_empty() && untagged.repo_digests.is_empty());
        assert!(store.resolve("example.com/app:v1").unwrap().is_none());
        assert!(store.has_blob(&image.id) && store.has_layer(&image.chain_ids[0]));

        // Holds are durable: a restarted daemon keeps the content for the container.
        drop(store);
        let store = Arc::new(ImageStore::open(dir.path()).unwrap());
        assert!(store.resolve(image.id.as_str()).unwrap().is_some());
        assert!(store.has_layer(&image.chain_ids[0]));

        store.release(&holder).await.unwrap();
        assert!(store.resolve(image.id.as_str()).unwrap().is_none());
        assert!(!store.has_blob(&image.id) && !store.has_layer(&image.chain_ids[0]));
        // Releasing twice is no error.
        store.release(&holder).await.unwrap();
    }

    #[tokio::test]
    async fn releasing_a_tagged_image_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, image) = store_with_image(dir.path());
        let holder = Holder::new("c1").unwrap();
        store.hold(&holder, &image.id).unwrap();
        store.release(&holder).await.unwrap();
        assert_eq!(store.resolve("example.com/app:v1").unwrap().unwrap().id, image.id);
        assert!(store.has_layer(&image.chain_ids[0]));
    }

    #[test]
    fn holds_name_existing_images_and_safe_holders() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_image(dir.path());
        let missing = Digest::of(b"missing");
        assert!(matches!(store.hold(&Holder::new("c1").unwrap(), &missing), Err(StoreError::NoImage(_))));
        for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(129)] {
            assert!(Holder::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolve_by_id_prefix_needs_twelve_digits_or_the_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let (store, image) = store_with_image(dir.path());
        let hex = image.id.hex();
        assert_eq!(store.resolve(&hex[..12]).unwrap().unwrap().id, image.id);
        assert_eq!(store.resolve(&format!("sha256:{}", &hex[..4])).unwrap().unwrap().id, image.id);
        // Shorter bare hex is a repository name, as Docker reads it.
        assert!(store.resolve(&hex[..6]).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_record_is_set_aside_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        let (store, image) = store_with_image(dir.path());
        drop(store);
        let bad = dir.path().join("image/images").join(format!("{}.json", "1".repeat(64)));
        fs::write(&bad, b"{ truncated").unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.resolve("example.com/app:v1").unwrap().unwrap().id, image.id);
        assert!(!bad.exists());
        assert!(bad.with_extension("corrupt").exists());
    }

    #[test]
    fn a_tag_on_two_records_stays_on_the_newer() {
        let dir = tempfile::tempdir().unwrap();
        let (store, image) = store_with_image(dir.path());
        drop(store);
        // What a crash halfway through moving the tag leaves: the new owner written, the old
        // one not yet.
        let mut newer = image.clone();
        newer.id = Digest::of(b"newer config");
        newer.generation = image.generation + 1;
        record::write(&dir.path().join("image"), &newer).unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.resolve("example.com/app:v1").unwrap().unwrap().id, newer.id);
        assert!(store.resolve(image.id.as_str()).unwrap().unwrap().repo_tags.is_empty());
        // Settled on disk too.
        drop(store);
        let store = ImageStore::open(dir.path()).unwrap();
        assert!(store.resolve(image.id.as_str()).unwrap().unwrap().repo_tags.is_empty());
    }
}
