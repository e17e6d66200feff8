//! Container records on disk (`<root>/<id>/container.json`, written atomically) and in memory,
//! indexed by ID and by pod + name + attempt.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::model::{ContainerKey, ContainerRecord};
use crate::ContainerId;
use crate::persist;

const RECORD: &str = "container.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("encoding container {id}: {source}")]
    Encode { id: ContainerId, source: serde_json::Error },
}

/// One container: its record, and a lock that puts its lifecycle operations in a row.
pub struct Container {
    pub id: ContainerId,
    record: RwLock<ContainerRecord>,
    pub op: Arc<tokio::sync::Mutex<()>>,
}

impl Container {
    pub fn record(&self) -> ContainerRecord {
        self.record.read().expect("container record lock").clone()
    }
}

#[derive(Default)]
struct Index {
    by_id: HashMap<ContainerId, Arc<Container>>,
    by_key: HashMap<ContainerKey, ContainerId>,
}

pub struct ContainerStore {
    dir: PathBuf,
    index: Mutex<Index>,
}

impl ContainerStore {
    /// Loads every record under `dir`; an unreadable one is set aside (renamed), never deleted.
    /// Returns the directories without a record, for the caller to clean up.
    pub fn open(dir: &Path) -> Result<(ContainerStore, Vec<PathBuf>), StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        persist::create_private_dir(dir).map_err(io_err(dir))?;
        let mut index = Index::default();
        let mut orphans = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| ContainerId::parse(n).ok()) else {
                continue;
            };
            let record_path = path.join(RECORD);
            persist::remove_temp_files(&path).map_err(io_err(&path))?;
            match fs::read(&record_path) {
                Ok(bytes) => match serde_json::from_slice::<ContainerRecord>(&bytes) {
                    Ok(record) if record.id == id => {
                        index.by_key.insert(record.key.clone(), id.clone());
                        index.by_id.insert(id, Arc::new(new_container(record)));
                    }
                    _ => {
                        tracing::error!(path = %record_path.display(), "unreadable container record set aside");
                        let aside = path.join(format!("{RECORD}.corrupt"));
                        fs::rename(&record_path, aside).map_err(io_err(&record_path))?;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !path.join(format!("{RECORD}.corrupt")).exists() {
                        orphans.push(path);
                    }
                }
                Err(source) => return Err(StoreError::Io { path: record_path, source }),
            }
        }
        Ok((ContainerStore { dir: dir.to_owned(), index: Mutex::new(index) }, orphans))
    }

    pub fn dir_of(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    pub fn get(&self, id: &ContainerId) -> Option<Arc<Container>> {
        self.index().by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &ContainerKey) -> Option<Arc<Container>> {
        let index = self.index();
        index.by_key.get(key).and_then(|id| index.by_id.get(id)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.index().by_id.values().cloned().collect()
    }

    /// Writes a new container's first record and indexes it with its lock already held.
    pub fn insert(
        &self,
        record: ContainerRecord,
    ) -> Result<(Arc<Container>, tokio::sync::OwnedMutexGuard<()>), StoreError> {
        let dir = self.dir_of(&record.id);
        fs::create_dir(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        write_record(&dir, &record)?;
        let container = Arc::new(new_container(record));
        let guard = container.op.clone().try_lock_owned().expect("nobody else knows the new container");
        let mut index = self.index();
        index.by_key.insert(container.record().key, container.id.clone());
        index.by_id.insert(container.id.clone(), container.clone());
        Ok((container, guard))
    }

    /// Persists a change, then shows it; a failed write changes nothing.
    pub fn update(&self, container: &Container, change: impl FnOnce(&mut ContainerRecord)) -> Result<(), StoreError> {
        let mut record = container.record();
        change(&mut record);
        write_record(&self.dir_of(&container.id), &record)?;
        *container.record.write().expect("container record lock") = record;
        Ok(())
    }

    /// Drops the record first (the point of no return), then the rest of the directory.
    pub fn remove(&self, id: &ContainerId) -> Result<(), StoreError> {
        let dir = self.dir_of(id);
        let record = dir.join(RECORD);
        match fs::remove_file(&record) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(StoreError::Io { path: record, source: e }),
            _ => {}
        }
        {
            let mut index = self.index();
            if let Some(container) = index.by_id.remove(id) {
                let key = container.record().key;
                if index.by_key.get(&key) == Some(id) {
                    index.by_key.remove(&key);
                }
            }
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { path: dir, source: e }),
            _ => Ok(()),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("container index lock")
    }
}

fn new_container(record: ContainerRecord) -> Container {
    Container { id: record.id.clone(), record: RwLock::new(record), op: Arc::new(tokio::sync::Mutex::new(())) }
}

fn write_record(dir: &Path, record: &ContainerRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode { id: record.id.clone(), source })?;
    let path = dir.join(RECORD);
    persist::write(&path, &bytes, 0o600).map_err(|source| StoreError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::model::Stage;

    fn record(name: &str) -> ContainerRecord {
        ContainerRecord {
            id: ContainerId::random(),
            key: ContainerKey { sandbox_id: "s".repeat(64), name: name.into(), attempt: 0 },
            fingerprint: "f".into(),
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            image_ref: "busybox@sha256:x".into(),
            labels: Default::default(),
            annotations: Default::default(),
            log_path: None,
            mounts: vec![],
            stop_signal: 15,
            created_at_ns: 1,
            started_at_ns: None,
            stage: Stage::Creating,
            pid: None,
            pid_start_time: None,
            user: None,
            resources: None,
            handler: "runc".into(),
            runtime_path: "/usr/sbin/runc".into(),
            runtime_root: "/run/crisp/runtime/runc".into(),
            monitor_dir: "/run/crisp/pods/x/monitor".into(),
            rootfs: "/run/crisp/containers/x/rootfs".into(),
            exit_file: "/run/crisp/containers/x/exit".into(),
        }
    }

    #[test]
    fn records_survive_reopening_and_removal_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = ContainerStore::open(dir.path()).unwrap();
        let (a, _guard) = store.insert(record("a")).unwrap();
        let (b, _) = store.insert(record("b")).unwrap();
        assert!(a.op.try_lock().is_err(), "the maker holds a new container's lock");
        store.update(&a, |r| r.stage = Stage::Created).unwrap();
        store.remove(&b.id).unwrap();

        let (store, orphans) = ContainerStore::open(dir.path()).unwrap();
        assert!(orphans.is_empty());
        assert_eq!(store.all().len(), 1);
        assert_eq!(store.get(&a.id).unwrap().record().stage, Stage::Created);
        assert_eq!(store.by_key(&a.record().key).unwrap().id, a.id);
        assert!(store.by_key(&b.record().key).is_none());
    }

    #[test]
    fn unreadable_records_are_set_aside_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = ContainerStore::open(dir.path()).unwrap();
        let (a, _) = store.insert(record("a")).unwrap();
        fs::write(store.dir_of(&a.id).join(RECORD), b"{torn").unwrap();
        let (store, orphans) = ContainerStore::open(dir.path()).unwrap();
        assert!(store.all().is_empty());
        assert!(orphans.is_empty());
        let (_, orphans) = ContainerStore::open(dir.path()).unwrap();
        assert!(orphans.is_empty(), "a set-aside record's dir is never collected");
    }
}
