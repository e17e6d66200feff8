//! Sandbox records on disk (`<root>/<id>/sandbox.json`, written atomically) and in memory,
//! indexed by ID and by the pod's key.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::key::PodKey;
use crate::model::{SandboxId, SandboxRecord};
use crisp_runtime::persist::{self, create_private_dir};

const RECORD: &str = "sandbox.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("encoding sandbox {id}: {source}")]
    Encode { id: SandboxId, source: serde_json::Error },
}

/// One sandbox: its record, and a lock that puts its lifecycle operations in a row.
pub struct Sandbox {
    pub id: SandboxId,
    record: RwLock<SandboxRecord>,
    pub op: Arc<tokio::sync::Mutex<()>>,
}

impl Sandbox {
    pub fn record(&self) -> SandboxRecord {
        self.record.read().expect("sandbox record lock").clone()
    }
}

#[derive(Default)]
struct Index {
    by_id: HashMap<SandboxId, Arc<Sandbox>>,
    by_key: HashMap<PodKey, SandboxId>,
}

pub struct SandboxStore {
    dir: PathBuf,
    index: Mutex<Index>,
}

/// What `open` found that is not a usable record: for the caller to clean up.
pub struct Leftovers {
    /// Directories with no readable record (a crash before the first write, or after removal began).
    pub orphan_dirs: Vec<PathBuf>,
}

impl SandboxStore {
    /// Loads every record under `dir`; unreadable ones are set aside (renamed), never deleted,
    /// so an operator can look at them.
    pub fn open(dir: &Path) -> Result<(SandboxStore, Leftovers), StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        create_private_dir(dir).map_err(io_err(dir))?;
        let mut index = Index::default();
        let mut orphan_dirs = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let record_path = path.join(RECORD);
            let Some(id) = entry.file_name().to_str().and_then(SandboxId::parse) else {
                continue;
            };
            persist::remove_temp_files(&path).map_err(io_err(&path))?;
            match fs::read(&record_path) {
                Ok(bytes) => match serde_json::from_slice::<SandboxRecord>(&bytes) {
                    Ok(record) if record.id == id => {
                        index.by_key.insert(record.config.key.clone(), id.clone());
                        index.by_id.insert(id.clone(), Arc::new(new_sandbox(record)));
                    }
                    Ok(_) | Err(_) => {
                        let aside = path.join(format!("{RECORD}.corrupt"));
                        tracing::error!(path = %record_path.display(), "unreadable sandbox record set aside");
                        fs::rename(&record_path, &aside).map_err(io_err(&record_path))?;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !path.join(format!("{RECORD}.corrupt")).exists() {
                        orphan_dirs.push(path);
                    }
                }
                Err(e) => return Err(StoreError::Io { path: record_path, source: e }),
            }
        }
        Ok((SandboxStore { dir: dir.to_owned(), index: Mutex::new(index) }, Leftovers { orphan_dirs }))
    }

    /// The directory of a sandbox's record and of its pod files.
    pub fn dir_of(&self, id: &SandboxId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    pub fn get(&self, id: &SandboxId) -> Option<Arc<Sandbox>> {
        self.index().by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &PodKey) -> Option<Arc<Sandbox>> {
        let index = self.index();
        index.by_key.get(key).and_then(|id| index.by_id.get(id)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Sandbox>> {
        self.index().by_id.values().cloned().collect()
    }

    /// Writes a new sandbox's first record and indexes it, its lock already held by the caller,
    /// so that nobody acts on it before its maker lets go.
    pub fn insert(
        &self,
        record: SandboxRecord,
    ) -> Result<(Arc<Sandbox>, tokio::sync::OwnedMutexGuard<()>), StoreError> {
        let dir = self.dir_of(&record.id);
        fs::create_dir(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        write_record(&dir, &record)?;
        let sandbox = Arc::new(new_sandbox(record));
        let guard = sandbox.op.clone().try_lock_owned().expect("nobody else knows the new sandbox");
        let mut index = self.index();
        index.by_key.insert(sandbox.record().config.key, sandbox.id.clone());
        index.by_id.insert(sandbox.id.clone(), sandbox.clone());
        Ok((sandbox, guard))
    }

    /// Persists a change to a sandbox's record, then shows it; a failed write changes nothing.
    pub fn update(&self, sandbox: &Sandbox, change: impl FnOnce(&mut SandboxRecord)) -> Result<(), StoreError> {
        let mut record = sandbox.record();
        change(&mut record);
        write_record(&self.dir_of(&sandbox.id), &record)?;
        *sandbox.record.write().expect("sandbox record lock") = record;
        Ok(())
    }

    /// Drops the record first (the point of no return), then the rest of the directory.
    pub fn remove(&self, id: &SandboxId) -> Result<(), StoreError> {
        let dir = self.dir_of(id);
        let record = dir.join(RECORD);
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path: record, source }),
        }
        {
            let mut index = self.index();
            if let Some(sandbox) = index.by_id.remove(id) {
                let key = sandbox.record().config.key;
                if index.by_key.get(&key) == Some(id) {
                    index.by_key.remove(&key);
                }
            }
        }
        remove_dir(&dir)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("sandbox index lock")
    }
}

pub fn remove_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { path: dir.to_owned(), source: e }),
        _ => Ok(()),
    }
}

fn new_sandbox(record: SandboxRecord) -> Sandbox {
    Sandbox { id: record.id.clone(), record: RwLock::new(record), op: Arc::new(tokio::sync::Mutex::new(())) }
}

fn write_record(dir: &Path, record: &SandboxRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode { id: record.id.clone(), source })?;
    let path = dir.join(RECORD);
    persist::write(&path, &bytes, 0o600).map_err(|source| StoreError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NamespaceModes, SandboxConfig, SandboxState};

    fn record(name: &str) -> SandboxRecord {
        SandboxRecord {
            id: SandboxId::random(),
            config: SandboxConfig {
                key: PodKey::new(name, "ns", "uid", 0).unwrap(),
                hostname: name.into(),
                log_directory: None,
                dns: Default::default(),
                port_mappings: vec![],
                labels: Default::default(),
                annotations: Default::default(),
                cgroup_parent: String::new(),
                namespaces: NamespaceModes::default(),
                sysctls: Default::default(),
                resources: Default::default(),
                bandwidth: Default::default(),
                privileged: false,
                runtime_handler: String::new(),
            },
            created_at_ns: 1,
            state: SandboxState::Creating,
            handler: "runc".into(),
            runtime_path: "/usr/sbin/runc".into(),
            runtime_root: "/run/crisp/runtime/runc".into(),
            cgroups_path: "/crisp/x".into(),
            hostname: name.into(),
            netns: None,
            network: None,
            pause_pid: None,
            pause_start_time: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_removal_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SandboxStore::open(dir.path()).unwrap();
        let (a, _) = store.insert(record("a")).unwrap();
        let (b, _) = store.insert(record("b")).unwrap();
        store.update(&a, |r| r.state = SandboxState::Ready).unwrap();
        store.remove(&b.id).unwrap();
        assert!(!store.dir_of(&b.id).exists());

        let (store, leftovers) = SandboxStore::open(dir.path()).unwrap();
        assert!(leftovers.orphan_dirs.is_empty());
        assert_eq!(store.all().len(), 1);
        assert_eq!(store.get(&a.id).unwrap().record().state, SandboxState::Ready);
        assert_eq!(store.by_key(&a.record().config.key).unwrap().id, a.id);
        assert!(store.by_key(&b.record().config.key).is_none());
    }

    #[test]
    fn unreadable_records_are_set_aside_and_bare_dirs_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SandboxStore::open(dir.path()).unwrap();
        let (a, _) = store.insert(record("a")).unwrap();
        fs::write(store.dir_of(&a.id).join(RECORD), b"{torn").unwrap();
        let bare = dir.path().join(SandboxId::random().as_str());
        fs::create_dir(&bare).unwrap();

        let (store, leftovers) = SandboxStore::open(dir.path()).unwrap();
        assert!(store.all().is_empty());
        assert!(store.dir_of(&a.id).join("sandbox.json.corrupt").exists(), "kept for the operator");
        assert_eq!(leftovers.orphan_dirs, vec![bare]);
        let (_, leftovers) = SandboxStore::open(dir.path()).unwrap();
        assert!(!leftovers.orphan_dirs.contains(&dir.path().join(a.id.as_str())), "set aside, never collected");
    }
}
