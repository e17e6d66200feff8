//! CNI network configuration lists, as the CNI spec defines them, and the choice of the pod
//! network among the files of a configuration directory.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::NetworkConfig;

/// A network configuration file is small; a larger one is a mistake, not a network.
const MAX_CONF_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfListError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {MAX_CONF_SIZE} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not a CNI network configuration: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A network configuration list: `name`, `cniVersion` and the plugin chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    pub path: PathBuf,
    pub name: String,
    pub cni_version: String,
    /// More versions the list is valid for; the highest every plugin supports is used.
    pub cni_versions: Vec<String>,
    /// Each plugin's configuration as written; `type` is the plugin binary.
    pub plugins: Vec<Value>,
    /// CHECK must not be run for this network.
    pub disable_check: bool,
    /// GC must not be run for this network.
    pub disable_gc: bool,
}

/// Why the pod network is not ready, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetworkNotReady(pub String);

/// The fields every configuration carries, whether a list or a single plugin.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    name: String,
    cni_version: String,
    #[serde(default)]
    cni_versions: Vec<String>,
    #[serde(default)]
    disable_check: bool,
    #[serde(default, rename = "disableGC")]
    disable_gc: bool,
}

impl ConfList {
    /// Reads a `.conflist` file, or a single-plugin `.conf`/`.json` file as a list of one.
    pub fn load(path: &Path) -> Result<ConfList, ConfListError> {
        let read_err = |source| ConfListError::Read { path: path.to_owned(), source };
        let meta = fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONF_SIZE {
            return Err(ConfListError::TooLarge { path: path.to_owned() });
        }
        let bytes = fs::read(path).map_err(read_err)?;
        let parse_err = |source| ConfListError::Parse { path: path.to_owned(), source };
        let mut value: Value = serde_json::from_slice(&bytes).map_err(parse_err)?;
        let header = Header::deserialize(&value).map_err(parse_err)?;
        let plugins = if path.extension().is_some_and(|e| e == "conflist") {
            match value.get_mut("plugins").map(Value::take) {
                Some(Value::Array(plugins)) => plugins,
                _ => {
                    return Err(ConfListError::Invalid { path: path.to_owned(), reason: "no \"plugins\" list".into() });
                }
            }
        } else {
            vec![value]
        };
        let list = ConfList {
            path: path.to_owned(),
            name: header.name,
            cni_version: header.cni_version,
            cni_versions: header.cni_versions,
            plugins,
            disable_check: header.disable_check,
            disable_gc: header.disable_gc,
        };
        list.validate()?;
        Ok(list)
    }

    fn validate(&self) -> Result<(), ConfListError> {
        let invalid = |reason: String| Err(ConfListError::Invalid { path: self.path.clone(), reason });
        if self.name.is_empty() {
            return invalid("empty network name".into());
        }
        if self.plugins.is_empty() {
            return invalid("no plugins".into());
        }
        for (i, plugin) in self.plugins.iter().enumerate() {
            match plugin.get("type").and_then(Value::as_str) {
                Some(t) if is_plugin_name(t) => {}
                Some(t) => return invalid(format!("plugin {i}: invalid type {t:?}")),
                None => return invalid(format!("plugin {i}: no \"type\"")),
            }
        }
        Ok(())
    }

    /// The plugin binaries of the chain, in order.
    pub fn plugin_types(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().filter_map(|p| p.get("type").and_then(Value::as_str))
    }
}

/// A plugin type names a file in a plugin directory, nothing more.
fn is_plugin_name(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// Finds a plugin binary in the plugin directories: the first executable file wins.
pub fn find_plugin(plugin_dirs: &[PathBuf], plugin: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    plugin_dirs
        .iter()
        .map(|d| d.join(plugin))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The pod network: the configuration named `default_network`, or else the first valid one in
/// `conf_dir` by file name, with every plugin of its chain present.
pub fn pod_network(config: &NetworkConfig) -> Result<ConfList, NetworkNotReady> {
    let dir = &config.conf_dir;
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conflist" || e == "conf" || e == "json"))
            .collect(),
        Err(e) => return Err(NetworkNotReady(format!("cannot read CNI config dir {}: {e}", dir.display()))),
    };
    files.sort();

    let mut rejected = Vec::new();
    for file in &files {
        match ConfList::load(file) {
            Ok(list) if config.default_network.as_ref().is_none_or(|n| *n == list.name) => {
                let missing = list.plugin_types().find(|t| find_plugin(&config.plugin_dirs, t).is_none());
                if let Some(missing) = missing {
                    return Err(NetworkNotReady(format!(
                        "network {} ({}): CNI plugin {missing:?} not found in {}",
                        list.name,
                        list.path.display(),
                        join_paths(&config.plugin_dirs)
                    )));
                }
                return Ok(list);
            }
            Ok(_) => {}
            Err(e) => rejected.push(e.to_string()),
        }
    }
    let wanted = match &config.default_network {
        Some(name) => format!("no CNI network named {name:?} in {}", dir.display()),
        None => format!("no CNI network config in {}", dir.display()),
    };
    Err(NetworkNotReady(if rejected.is_empty() {
        wanted
    } else {
        format!("{wanted}; rejected: {}", rejected.join("; "))
    }))
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Lab {
        conf: tempfile::TempDir,
        plugins: tempfile::TempDir,
    }

    impl Lab {
        fn new(plugins: &[&str]) -> Lab {
            let lab = Lab { conf: tempfile::tempdir().unwrap(), plugins: tempfile::tempdir().unwrap() };
            for p in plugins {
                let path = lab.plugins.path().join(p);
                fs::write(&path, "").unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
            lab
        }

        fn config(&self, default_network: Option<&str>) -> NetworkConfig {
            NetworkConfig {
                conf_dir: self.conf.path().to_owned(),
                plugin_dirs: vec!["/nonexistent".into(), self.plugins.path().to_owned()],
                default_network: default_network.map(Into::into),
                ..Default::default()
            }
        }

        fn write(&self, name: &str, text: &str) {
            fs::write(self.conf.path().join(name), text).unwrap();
        }
    }

    const BRIDGE: &str = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge","ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn empty_dir_is_not_ready() {
        let lab = Lab::new(&[]);
        let err = pod_network(&lab.config(None)).unwrap_err();
        assert!(err.0.starts_with("no CNI network config in"), "{err}");
    }

    #[test]
    fn missing_dir_is_not_ready() {
        let lab = Lab::new(&[]);
        let mut config = lab.config(None);
        config.conf_dir = lab.conf.path().join("absent");
        let err = pod_network(&config).unwrap_err();
        assert!(err.0.contains("cannot read CNI config dir"), "{err}");
    }

    #[test]
    fn first_valid_file_by_name_wins() {
        let lab = Lab::new(&["bridge", "portmap", "ptp"]);
        lab.write("20-bridge.conflist", BRIDGE);
        lab.write("10-broken.conflist", "{not json");
        lab.write("30-ptp.conf", r#"{"cniVersion":"0.4.0","name":"ptp-net","type":"ptp"}"#);
        lab.write("05-readme.txt", "ignored");
        let list = pod_network(&lab.config(None)).unwrap();
        assert_eq!(list.name, "pods");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.plugin_types().collect::<Vec<_>>(), ["bridge", "portmap"]);
    }

    #[test]
    fn versions_and_disable_flags() {
        let lab = Lab::new(&["bridge"]);
        lab.write(
            "10-a.conflist",
            r#"{"cniVersion":"1.0.0","cniVersions":["0.4.0","1.1.0"],"name":"a","disableCheck":true,"disableGC":true,"plugins":[{"type":"bridge"}]}"#,
        );
        let list = pod_network(&lab.config(None)).unwrap();
        assert_eq!(list.cni_versions, ["0.4.0", "1.1.0"]);
        assert!(list.disable_check && list.disable_gc);
        lab.write("05-b.conflist", r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#);
        let list = pod_network(&lab.config(None)).unwrap();
        assert!(list.cni_versions.is_empty() && !list.disable_check && !list.disable_gc);
    }

    #[test]
    fn single_plugin_conf_is_a_list_of_one() {
        let lab = Lab::new(&["ptp"]);
        lab.write("30-ptp.conf", r#"{"cniVersion":"0.4.0","name":"ptp-net","type":"ptp","mtu":1400}"#);
        let list = pod_network(&lab.config(None)).unwrap();
        assert_eq!(list.name, "ptp-net");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["mtu"], 1400);
    }

    #[test]
    fn default_network_picks_by_name() {
        let lab = Lab::new(&["bridge", "portmap", "ptp"]);
        lab.write("20-bridge.conflist", BRIDGE);
        lab.write("30-ptp.conf", r#"{"cniVersion":"0.4.0","name":"ptp-net","type":"ptp"}"#);
        assert_eq!(pod_network(&lab.config(Some("ptp-net"))).unwrap().name, "ptp-net");
        let err = pod_network(&lab.config(Some("other"))).unwrap_err();
        assert!(err.0.contains("no CNI network named \"other\""), "{err}");
    }

    #[test]
    fn a_plugin_that_is_not_executable_is_missing() {
        let lab = Lab::new(&["bridge", "portmap"]);
        let portmap = lab.plugins.path().join("portmap");
        fs::set_permissions(&portmap, fs::Permissions::from_mode(0o644)).unwrap();
        lab.write("20-bridge.conflist", BRIDGE);
        let err = pod_network(&lab.config(None)).unwrap_err();
        assert!(err.0.contains("CNI plugin \"portmap\" not found"), "{err}");
    }

    #[test]
    fn missing_plugin_binary_is_not_ready() {
        let lab = Lab::new(&["bridge"]);
        lab.write("20-bridge.conflist", BRIDGE);
        let err = pod_network(&lab.config(None)).unwrap_err();
        assert!(err.0.contains("CNI plugin \"portmap\" not found"), "{err}");
    }

    #[test]
    fn invalid_lists_are_reported() {
        let lab = Lab::new(&["bridge"]);
        lab.write("10-empty.conflist", r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#);
        lab.write("20-escape.conflist", r#"{"cniVersion":"1.0.0","name":"y","plugins":[{"type":"../../bin/sh"}]}"#);
        lab.write("30-notype.conflist", r#"{"cniVersion":"1.0.0","name":"z","plugins":[{"ipam":{}}]}"#);
        let err = pod_network(&lab.config(None)).unwrap_err();
        assert!(err.0.contains("no plugins"), "{err}");
        assert!(err.0.contains("invalid type \"../../bin/sh\""), "{err}");
        assert!(err.0.contains(r#"plugin 0: no "type""#), "{err}");
    }
}
