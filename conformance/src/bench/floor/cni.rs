//! A CNI network run by hand, as the CNI spec has a runtime do it: the network file picked from
//! a conf dir, each plugin's binary found on the plugin path, ADD through the chain in order with
//! each result handed to the next plugin, DEL in reverse order with ADD's final result.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::FloorError;

/// A network configuration: its name, version and its plugins' own configs, in chain order.
#[derive(Debug)]
pub(super) struct Network {
    pub(super) path: PathBuf,
    pub(super) name: String,
    cni_version: String,
    plugins: Vec<Map<String, Value>>,
}

impl Network {
    /// The first network file of `dir` by name that is a valid network (`.conflist`, or a
    /// single plugin's `.conf`/`.json`): the one crisp would pick.
    pub(super) fn first_in(dir: &Path) -> Result<Network, FloorError> {
        let entries =
            fs::read_dir(dir).map_err(|source| FloorError::io(format!("cannot list {}", dir.display()), source))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| matches!(path.extension().and_then(|e| e.to_str()), Some("conflist" | "conf" | "json")))
            .collect();
        files.sort();
        let mut rejected = Vec::new();
        for path in files {
            let parsed =
                fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| Network::parse(&path, &text));
            match parsed {
                Ok(network) => return Ok(network),
                Err(why) => rejected.push(format!("{}: {why}", path.display())),
            }
        }
        Err(FloorError::NoNetwork { dir: dir.to_owned(), rejected })
    }

    fn parse(path: &Path, text: &str) -> Result<Network, String> {
        let mut config: Map<String, Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut field = |key: &str| match config.remove(key) {
            Some(Value::String(value)) if !value.is_empty() => Ok(value),
            _ => Err(format!("no {key}")),
        };
        let name = field("name")?;
        let cni_version = field("cniVersion")?;
        let plugins = if path.extension().is_some_and(|e| e == "conflist") {
            match config.remove("plugins") {
                Some(Value::Array(plugins)) => plugins
                    .into_iter()
                    .map(|p| match p {
                        Value::Object(plugin) => Ok(plugin),
                        _ => Err("a plugin that is not an object".to_owned()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err("no plugins".into()),
            }
        } else {
            vec![config]
        };
        if plugins.is_empty() {
            return Err("no plugins".into());
        }
        for plugin in &plugins {
            let kind = plugin.get("type").and_then(Value::as_str).unwrap_or_default();
            // The type names a binary on the plugin path, never a path of its own.
            if kind.is_empty() || kind.contains('/') || kind == "." || kind == ".." {
                return Err(format!("plugin type {kind:?} is not a binary's name"));
            }
        }
        Ok(Network { path: path.to_owned(), name, cni_version, plugins })
    }

    fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]["type"].as_str().expect("checked when parsed")
    }

    /// What plugin `index` reads on stdin: its own config with the network's name and version,
    /// and the result it builds on, when there is one.
    fn stdin(&self, index: usize, prev_result: Option<&Value>) -> Value {
        let mut config = self.plugins[index].clone();
        config.insert("name".into(), self.name.clone().into());
        config.insert("cniVersion".into(), self.cni_version.clone().into());
        match prev_result {
            Some(result) => config.insert("prevResult".into(), result.clone()),
            None => config.remove("prevResult"),
        };
        Value::Object(config)
    }
}

/// A network whose plugins were all found: ready to attach containers.
#[derive(Debug)]
pub(super) struct Chain {
    pub(super) network: Network,
    binaries: Vec<PathBuf>,
    cni_path: OsString,
}

/// What the last plugin of an ADD returned: the raw result (DEL's `prevResult`) and the pod's
/// addresses in it.
#[derive(Debug, Clone)]
pub(super) struct Attached {
    pub(super) result: Value,
    pub(super) addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AddResult {
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Debug, Deserialize)]
struct IpConfig {
    address: String,
}

/// A plugin's error, as the spec has it print one on stdout.
#[derive(Debug, Deserialize)]
struct PluginError {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl Chain {
    pub(super) fn new(network: Network, bin_dirs: &[PathBuf]) -> Result<Chain, FloorError> {
        let binaries = (0..network.plugins.len())
            .map(|index| {
                let plugin = network.plugin_type(index);
                find_plugin(bin_dirs, plugin).ok_or_else(|| FloorError::PluginNotFound {
                    plugin: plugin.to_owned(),
                    dirs: bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
                })
            })
            .collect::<Result<_, _>>()?;
        let cni_path = std::env::join_paths(bin_dirs)
            .map_err(|e| FloorError::io("a CNI plugin dir holds ':'", std::io::Error::other(e)))?;
        Ok(Chain { network, binaries, cni_path })
    }

    /// ADD through the chain; the first plugin that fails stops it.
    pub(super) fn add(&self, container_id: &str, netns: &Path) -> Result<Attached, FloorError> {
        let mut result: Option<Value> = None;
        for index in 0..self.binaries.len() {
            let stdout = self.exec("ADD", index, container_id, netns, &self.network.stdin(index, result.as_ref()))?;
            let parsed =
                serde_json::from_slice(&stdout).map_err(|e| self.failure("ADD", index, format!("result: {e}")))?;
            result = Some(parsed);
        }
        let result = result.expect("a network has a plugin");
        let addresses = addresses(&result).map_err(|why| self.failure("ADD", self.binaries.len() - 1, why))?;
        Ok(Attached { result, addresses })
    }

    /// DEL through the chain in reverse order, with ADD's final result when ADD got that far.
    pub(super) fn del(&self, container_id: &str, netns: &Path, added: Option<&Value>) -> Result<(), FloorError> {
        for index in (0..self.binaries.len()).rev() {
            self.exec("DEL", index, container_id, netns, &self.network.stdin(index, added))?;
        }
        Ok(())
    }

    /// Runs plugin `index` with `command`: its stdout, or its error.
    fn exec(
        &self,
        command: &'static str,
        index: usize,
        container_id: &str,
        netns: &Path,
        stdin: &Value,
    ) -> Result<Vec<u8>, FloorError> {
        let failure = |message: String| self.failure(command, index, message);
        let mut child = Command::new(&self.binaries[index])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failure(format!("cannot run {}: {e}", self.binaries[index].display())))?;
        // Plugins read all of stdin before they answer, so writing it first cannot deadlock.
        let written = child.stdin.take().expect("piped").write_all(&serde_json::to_vec(stdin).expect("JSON"));
        let output = child.wait_with_output().map_err(|e| failure(format!("waiting for it: {e}")))?;
        if output.status.success() {
            written.map_err(|e| failure(format!("writing its config: {e}")))?;
            return Ok(output.stdout);
        }
        Err(failure(plugin_error(&output.stdout, &output.stderr, output.status)))
    }

    fn failure(&self, command: &'static str, index: usize, message: String) -> FloorError {
        FloorError::Cni { command, plugin: self.network.plugin_type(index).to_owned(), message }
    }
}

/// The pod's addresses in an ADD result: a pod without one has no network.
fn addresses(result: &Value) -> Result<Vec<String>, String> {
    let parsed = AddResult::deserialize(result).map_err(|e| format!("result: {e}"))?;
    if parsed.ips.is_empty() {
        return Err("the result has no IP".into());
    }
    Ok(parsed.ips.into_iter().map(|ip| ip.address).collect())
}

/// The spec's error object when the plugin printed one, else what it wrote and how it ended.
fn plugin_error(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    if let Ok(error) = serde_json::from_slice::<PluginError>(stdout) {
        let details = if error.details.is_empty() { String::new() } else { format!(" ({})", error.details) };
        return format!("error {}: {}{details}", error.code, error.msg);
    }
    let text = [stdout, stderr].map(|b| String::from_utf8_lossy(b).trim().to_owned()).join(" ");
    format!("{status}: {}", text.trim())
}

fn find_plugin(dirs: &[PathBuf], plugin: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    dirs.iter()
        .map(|dir| dir.join(plugin))
        .find(|path| fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONFLIST: &str = r#"{
      "cniVersion": "1.0.0", "name": "crisp",
      "plugins": [
        {"type": "bridge", "bridge": "crisp0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.85.0.0/16"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
      ]
    }"#;

    fn network() -> Network {
        Network::parse(Path::new("/etc/cni/net.d/10-crisp.conflist"), CONFLIST).unwrap()
    }

    #[test]
    fn first_plugin_gets_name_and_version_and_no_result() {
        let stdin = network().stdin(0, None);
        assert_eq!(stdin["name"], "crisp");
        assert_eq!(stdin["cniVersion"], "1.0.0");
        assert_eq!(stdin["type"], "bridge");
        assert_eq!(stdin["ipam"]["type"], "host-local");
        assert!(stdin.get("prevResult").is_none(), "{stdin}");
        assert!(stdin.get("plugins").is_none(), "{stdin}");
    }

    #[test]
    fn later_plugins_build_on_the_result_before() {
        let result = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.85.0.7/16"}]});
        let stdin = network().stdin(1, Some(&result));
        assert_eq!(stdin["type"], "portmap");
        assert_eq!(stdin["name"], "crisp");
        assert_eq!(stdin["prevResult"], result);
        assert_eq!(stdin["capabilities"]["portMappings"], true);
        assert!(stdin.get("runtimeConfig").is_none(), "no capability argument was given: {stdin}");
    }

    #[test]
    fn single_plugin_conf_is_a_chain_of_one() {
        let conf = r#"{"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "mtu": 1400}"#;
        let network = Network::parse(Path::new("30-ptp.conf"), conf).unwrap();
        let stdin = network.stdin(0, None);
        assert_eq!(stdin, json!({"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "mtu": 1400}));
    }

    #[test]
    fn invalid_networks_say_why() {
        let parse = |text: &str| Network::parse(Path::new("x.conflist"), text).unwrap_err();
        assert_eq!(parse(r#"{"cniVersion": "1.0.0", "name": "x", "plugins": []}"#), "no plugins");
        assert_eq!(parse(r#"{"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}"#), "no name");
        assert!(parse(r#"{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "../sh"}]}"#).contains("../sh"));
        assert!(parse("{not json").contains("key must be a string"));
    }

    #[test]
    fn the_first_valid_file_by_name_is_the_network() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("20-b.conflist"), CONFLIST.replace("\"crisp\"", "\"b\"")).unwrap();
        fs::write(dir.path().join("10-broken.conflist"), "{").unwrap();
        fs::write(dir.path().join("05-notes.txt"), CONFLIST).unwrap();
        fs::write(dir.path().join("30-a.conflist"), CONFLIST).unwrap();
        assert_eq!(Network::first_in(dir.path()).unwrap().name, "b");

        let empty = tempfile::tempdir().unwrap();
        let error = Network::first_in(empty.path()).unwrap_err().to_string();
        assert_eq!(error, format!("no conflist in {}", empty.path().display()));
    }

    #[test]
    fn missing_plugins_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = Chain::new(network(), &[dir.path().to_owned()]).unwrap_err().to_string();
        assert_eq!(error, format!("CNI plugin bridge not found in {}", dir.path().display()));
    }

    #[test]
    fn plugin_errors_are_read_as_the_spec_has_them() {
        use std::os::unix::process::ExitStatusExt as _;
        let failed = std::process::ExitStatus::from_raw(1 << 8);
        let stdout = br#"{"cniVersion": "1.0.0", "code": 11, "msg": "no IP left", "details": "range full"}"#;
        assert_eq!(plugin_error(stdout, b"", failed), "error 11: no IP left (range full)");
        assert_eq!(plugin_error(b"", b"panic: oops\n", failed), "exit status: 1: panic: oops");
    }

    #[test]
    fn results_give_the_addresses() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.85.0.7/16", "gateway": "10.85.0.1", "interface": 0}],
            "routes": [{"dst": "10.85.0.0/16"}]
        });
        assert_eq!(addresses(&result).unwrap(), ["10.85.0.7/16"]);
        assert_eq!(addresses(&json!({"cniVersion": "1.0.0", "interfaces": []})).unwrap_err(), "the result has no IP");
        assert!(addresses(&json!({"ips": [{"gateway": "10.85.0.1"}]})).unwrap_err().contains("address"));
    }
}
