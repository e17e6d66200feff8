//! The attachments made, on disk: each one with the configuration, arguments and result it was
//! made with, so that DEL and CHECK work after a restart and after the configuration changed.
//! One file per (container id, `eth0`), written atomically.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chain::Network;
use super::error::CniError;
use super::request::{IFNAME, check_container_id};

const KIND: &str = "crispCniCacheV1";

/// One attachment as it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    kind: String,
    pub container_id: String,
    pub if_name: String,
    pub netns: PathBuf,
    /// The network as the plugins got it, with the version agreed on.
    pub network: Network,
    pub cni_args: String,
    pub capability_args: Map<String, Value>,
    /// Unset while ADD runs: an ADD cut short by a crash still leaves what DEL needs.
    pub result: Option<Value>,
}

impl Entry {
    pub fn new(
        container_id: &str,
        netns: &Path,
        network: Network,
        cni_args: String,
        capability_args: Map<String, Value>,
    ) -> Entry {
        Entry {
            kind: KIND.into(),
            container_id: container_id.into(),
            if_name: IFNAME.into(),
            netns: netns.into(),
            network,
            cni_args,
            capability_args,
            result: None,
        }
    }
}

/// The cache directory. Blocking.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    fn path(&self, container_id: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{IFNAME}.json"))
    }

    fn err(path: &Path) -> impl FnOnce(io::Error) -> CniError + '_ {
        move |source| CniError::Cache { path: path.to_owned(), source }
    }

    pub fn load(&self, container_id: &str) -> Result<Option<Entry>, CniError> {
        check_container_id(container_id)?;
        let path = self.path(container_id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Cache::err(&path)(e)),
        };
        let corrupt = |reason: String| CniError::CacheCorrupt { path: path.clone(), reason };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if entry.kind != KIND || entry.container_id != container_id || entry.if_name != IFNAME {
            return Err(corrupt(format!("kind {}, for {} {}", entry.kind, entry.container_id, entry.if_name)));
        }
        Ok(Some(entry))
    }

    /// As [`Cache::load`], but an entry that cannot be read is moved aside (`….json.corrupt`,
    /// kept for the operator), logged, and answered as absent: one damaged file must not keep
    /// its pod from being stopped, nor the daemon from starting.
    pub fn load_or_set_aside(&self, container_id: &str) -> Result<Option<Entry>, CniError> {
        match self.load(container_id) {
            Err(CniError::CacheCorrupt { path, reason }) => {
                tracing::error!(path = %path.display(), "unreadable CNI cache entry set aside: {reason}");
                let aside = self.aside_path(container_id);
                fs::rename(&path, &aside).map_err(Cache::err(&path))?;
                self.sync_dir()?;
                Ok(None)
            }
            other => other,
        }
    }

    fn aside_path(&self, container_id: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{IFNAME}.json.corrupt"))
    }

    /// Whether an unreadable entry of the container was set aside.
    pub fn was_set_aside(&self, container_id: &str) -> bool {
        check_container_id(container_id).is_ok() && self.aside_path(container_id).exists()
    }

    /// Replaces the entry as a whole: a crash leaves the old one or the new one, never a mix.
    pub fn store(&self, entry: &Entry) -> Result<(), CniError> {
        check_container_id(&entry.container_id)?;
        DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(Cache::err(&self.dir))?;
        let path = self.path(&entry.container_id);
        let temp = self.dir.join(format!(".{}-{IFNAME}.tmp", entry.container_id));
        // Entries are plain JSON values and strings: serializing them cannot fail.
        let bytes = serde_json::to_vec_pretty(entry).unwrap_or_default();
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        })();
        if let Err(e) = written.and_then(|()| fs::rename(&temp, &path)) {
            let _ = fs::remove_file(&temp);
            return Err(Cache::err(&path)(e));
        }
        self.sync_dir()
    }

    /// Removes the entry; one already gone is not an error.
    pub fn remove(&self, container_id: &str) -> Result<(), CniError> {
        check_container_id(container_id)?;
        let path = self.path(container_id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Cache::err(&path)(e)),
        }
    }

    fn sync_dir(&self) -> Result<(), CniError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(Cache::err(&self.dir))
    }

    /// The container ids with an entry, sorted.
    pub fn list(&self) -> Result<Vec<String>, CniError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Cache::err(&self.dir)(e)),
        };
        let suffix = format!("-{IFNAME}.json");
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry.map_err(Cache::err(&self.dir))?.file_name();
            let id = name.to_str().and_then(|n| n.strip_suffix(&suffix));
            if let Some(id) = id.filter(|id| check_container_id(id).is_ok()) {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Removes the temp files of writes a crash cut short; only while nothing writes.
    pub fn remove_partial(&self) -> Result<(), CniError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Cache::err(&self.dir)(e)),
        };
        for entry in entries {
            let name = entry.map_err(Cache::err(&self.dir))?.file_name();
            if name.to_str().is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp")) {
                let path = self.dir.join(&name);
                tracing::info!(path = %path.display(), "removing a partly written CNI cache entry");
                fs::remove_file(&path).map_err(Cache::err(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str) -> Entry {
        let network = Network::for_tests("pods", json!([{"type": "bridge"}]));
        let mut entry = Entry::new(id, Path::new("/run/netns/x"), network, "IgnoreUnknown=1".into(), Map::new());
        entry.result = Some(json!({"cniVersion": "1.0.0"}));
        entry
    }

    #[test]
    fn stores_loads_lists_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cni"));
        assert_eq!(cache.list().unwrap(), Vec::<String>::new());
        assert_eq!(cache.load("a1").unwrap(), None);
        cache.store(&entry("b2")).unwrap();
        cache.store(&entry("a1")).unwrap();
        fs::write(dir.path().join("cni/.c3-eth0.tmp"), "partial").unwrap();
        fs::write(dir.path().join("cni/notes.txt"), "").unwrap();
        assert_eq!(cache.list().unwrap(), ["a1", "b2"]);
        assert_eq!(cache.load("a1").unwrap(), Some(entry("a1")));
        cache.remove("a1").unwrap();
        cache.remove("a1").unwrap();
        assert_eq!(cache.list().unwrap(), ["b2"]);
        let names: Vec<_> = fs::read_dir(dir.path().join("cni")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!names.iter().any(|n| n == ".b2-eth0.tmp"), "{names:?}");
    }

    #[test]
    fn a_corrupt_or_foreign_entry_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned());
        fs::write(dir.path().join("a1-eth0.json"), "{").unwrap();
        assert!(matches!(cache.load("a1"), Err(CniError::CacheCorrupt { .. })));
        let mut other = serde_json::to_value(entry("zz")).unwrap();
        fs::write(dir.path().join("b2-eth0.json"), other.to_string()).unwrap();
        assert!(matches!(cache.load("b2"), Err(CniError::CacheCorrupt { .. })));
        other["kind"] = "libcni".into();
        other["containerId"] = "c3".into();
        fs::write(dir.path().join("c3-eth0.json"), other.to_string()).unwrap();
        assert!(matches!(cache.load("c3"), Err(CniError::CacheCorrupt { .. })));
        assert!(matches!(cache.load("../x"), Err(CniError::InvalidContainerId(_))));
    }

    #[test]
    fn partial_writes_are_removed_and_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned());
        cache.remove_partial().unwrap();
        cache.store(&entry("a1")).unwrap();
        fs::write(dir.path().join(".b2-eth0.tmp"), "{\"kind\":").unwrap();
        cache.remove_partial().unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a1-eth0.json"]);
    }

    #[test]
    fn an_unreadable_entry_is_set_aside_and_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned());
        cache.store(&entry("b2")).unwrap();
        fs::write(dir.path().join("a1-eth0.json"), "{\"kind\":").unwrap();
        assert!(!cache.was_set_aside("a1"));
        assert_eq!(cache.load_or_set_aside("a1").unwrap(), None);
        assert!(cache.was_set_aside("a1"));
        assert_eq!(fs::read(dir.path().join("a1-eth0.json.corrupt")).unwrap(), b"{\"kind\":", "kept as it was");
        assert_eq!(cache.list().unwrap(), ["b2"]);
        assert_eq!(cache.load_or_set_aside("b2").unwrap(), Some(entry("b2")));
        assert!(!cache.was_set_aside("b2"));
    }
}
