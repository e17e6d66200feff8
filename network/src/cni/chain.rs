//! Running a network's plugin chain: the configuration each plugin gets on stdin, and the order,
//! `prevResult` and error rules of ADD, DEL, CHECK, STATUS and GC.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::capabilities::runtime_config;
use super::error::{CniError, Command};
use super::exec::{AttachmentParams, Executor, Plugin};
use super::request::IFNAME;
use super::result;
use super::version::{BinaryIdentity, PluginVersions, SpecVersion, VersionCache, negotiate};
use crate::ConfList;
use crate::conflist::find_plugin;

/// A network as its plugins get it: the list's name and plugin configurations, run with the
/// version agreed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Network {
    pub name: String,
    pub cni_version: SpecVersion,
    pub plugins: Vec<Value>,
    pub disable_check: bool,
    #[serde(rename = "disableGC")]
    pub disable_gc: bool,
    /// The file it was read from, for people reading the cache.
    pub source: PathBuf,
}

impl Network {
    pub fn new(list: &ConfList, cni_version: SpecVersion) -> Network {
        Network {
            name: list.name.clone(),
            cni_version,
            plugins: list.plugins.clone(),
            disable_check: list.disable_check,
            disable_gc: list.disable_gc,
            source: list.path.clone(),
        }
    }

    /// The plugin binaries of the chain, in order. Blocking.
    pub fn resolve(&self, plugin_dirs: &[PathBuf]) -> Result<Vec<Plugin>, CniError> {
        resolve(plugin_dirs, self.plugins.iter().map(plugin_type))
    }

    #[cfg(test)]
    pub fn for_tests(name: &str, plugins: Value) -> Network {
        let Value::Array(plugins) = plugins else { panic!("plugins: a list") };
        Network {
            name: name.into(),
            cni_version: SpecVersion::V1_0_0,
            plugins,
            disable_check: false,
            disable_gc: false,
            source: PathBuf::new(),
        }
    }
}

fn plugin_type(conf: &Value) -> &str {
    conf.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// Finds every plugin binary, or names the first one missing. Blocking.
pub(crate) fn resolve<'a>(
    plugin_dirs: &[PathBuf],
    types: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Plugin>, CniError> {
    types
        .into_iter()
        .map(|name| match find_plugin(plugin_dirs, name) {
            Some(path) => Ok(Plugin { name: name.to_owned(), path }),
            None => Err(CniError::PluginNotFound {
                plugin: name.to_owned(),
                dirs: plugin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            }),
        })
        .collect()
}

/// Asks each plugin of `list` for its versions and picks the highest one all support among the
/// list's `cniVersion` and `cniVersions`.
pub(crate) async fn agree_version(
    exec: &Executor,
    cache: &VersionCache,
    list: &ConfList,
    plugins: &[Plugin],
) -> Result<SpecVersion, CniError> {
    let stdin = json!({ "cniVersion": list.cni_version }).to_string();
    let mut answers = Vec::new();
    let mut asked = HashSet::new();
    for plugin in plugins.iter().filter(|p| asked.insert(&p.name)) {
        let identity = BinaryIdentity::of(&plugin.path, &list.cni_version);
        if let Some(versions) = identity.as_ref().and_then(|id| cache.get(id)) {
            answers.push((plugin.name.as_str(), versions));
            continue;
        }
        let out = exec.run(plugin, Command::Version, None, stdin.as_bytes()).await?;
        let versions: PluginVersions = serde_json::from_slice(&out).map_err(|e| CniError::BadOutput {
            plugin: plugin.name.clone(),
            command: Command::Version,
            reason: e.to_string(),
        })?;
        if let Some(identity) = identity {
            cache.insert(identity, versions.clone());
        }
        answers.push((plugin.name.as_str(), versions));
    }
    let offered = std::iter::once(list.cni_version.as_str()).chain(list.cni_versions.iter().map(String::as_str));
    negotiate(offered, &answers).map_err(|reasons| CniError::Incompatible { network: list.name.clone(), reasons })
}

/// An ADD that failed, with the last result the chain produced before it, for the DEL after.
pub(crate) struct AddFailure {
    pub error: CniError,
    pub last: Option<Value>,
}

/// A network with its plugin binaries found.
pub(crate) struct Chain<'a> {
    pub exec: &'a Executor,
    pub network: &'a Network,
    pub plugins: &'a [Plugin],
}

impl Chain<'_> {
    /// The configuration one plugin gets: its own, with the network's name and version, the
    /// capability arguments it declared, and the previous result.
    fn request(&self, conf: &Value, args: Option<&Map<String, Value>>, prev: Option<&Value>) -> Map<String, Value> {
        let runtime = args.map(|args| runtime_config(conf, args)).unwrap_or_default();
        let mut request = conf.as_object().cloned().unwrap_or_default();
        // The spec reserves `capabilities` for the configuration; plugins get `runtimeConfig`.
        request.remove("capabilities");
        request.insert("name".into(), self.network.name.clone().into());
        request.insert("cniVersion".into(), self.network.cni_version.to_string().into());
        if !runtime.is_empty() {
            request.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(prev) = prev {
            request.insert("prevResult".into(), prev.clone());
        }
        request
    }

    fn steps(&self) -> impl DoubleEndedIterator<Item = (&Value, &Plugin)> {
        self.network.plugins.iter().zip(self.plugins)
    }

    /// ADD along the chain, each plugin getting the result of the one before.
    pub async fn add(&self, params: &AttachmentParams<'_>, args: &Map<String, Value>) -> Result<Value, AddFailure> {
        let mut last: Option<Value> = None;
        for (conf, plugin) in self.steps() {
            let stdin = bytes(self.request(conf, Some(args), last.as_ref()));
            let out = match self.exec.run(plugin, Command::Add, Some(params), &stdin).await {
                Ok(out) => out,
                Err(error) => return Err(AddFailure { error, last }),
            };
            match result::parse(&out, self.network.cni_version) {
                Ok(result) => last = Some(result),
                Err(reason) => {
                    let error = CniError::BadOutput { plugin: plugin.name.clone(), command: Command::Add, reason };
                    return Err(AddFailure { error, last });
                }
            }
        }
        last.ok_or_else(|| AddFailure {
            error: CniError::BadOutput { plugin: String::new(), command: Command::Add, reason: "no plugins".into() },
            last: None,
        })
    }

    /// DEL along the chain in reverse, each plugin getting the ADD's result (from 0.4.0 on);
    /// the first failure stops it.
    pub async fn del(
        &self,
        params: &AttachmentParams<'_>,
        args: &Map<String, Value>,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let prev = result.filter(|_| self.network.cni_version >= SpecVersion::V0_4_0);
        for (conf, plugin) in self.steps().rev() {
            let stdin = bytes(self.request(conf, Some(args), prev));
            self.exec.run(plugin, Command::Del, Some(params), &stdin).await?;
        }
        Ok(())
    }

    /// CHECK along the chain, each plugin getting the ADD's result; the first failure stops it.
    pub async fn check(
        &self,
        params: &AttachmentParams<'_>,
        args: &Map<String, Value>,
        result: &Value,
    ) -> Result<(), CniError> {
        for (conf, plugin) in self.steps() {
            let stdin = bytes(self.request(conf, Some(args), Some(result)));
            self.exec.run(plugin, Command::Check, Some(params), &stdin).await?;
        }
        Ok(())
    }

    /// STATUS of each plugin; the first failure stops it.
    pub async fn status(&self) -> Result<(), CniError> {
        for (conf, plugin) in self.steps() {
            self.exec.run(plugin, Command::Status, None, &bytes(self.request(conf, None, None))).await?;
        }
        Ok(())
    }

    /// GC of each plugin with the attachments still valid; a failure does not stop the others.
    pub async fn gc(&self, valid: &[String]) -> Result<(), CniError> {
        let valid: Vec<Value> = valid.iter().map(|id| json!({ "containerID": id, "ifname": IFNAME })).collect();
        let mut errors = Vec::new();
        for (conf, plugin) in self.steps() {
            let mut request = self.request(conf, None, None);
            request.insert("cni.dev/valid-attachments".into(), Value::Array(valid.clone()));
            if let Err(e) = self.exec.run(plugin, Command::Gc, None, &bytes(request)).await {
                errors.push(e);
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(CniError::Gc(errors)) }
    }
}

fn bytes(request: Map<String, Value>) -> Vec<u8> {
    // A map of JSON values serializes without fail.
    serde_json::to_vec(&request).unwrap_or_default()
}
