//! The `[runtime]` section of crisp's configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Handler, HandlerName};

/// Which cgroup hierarchy layout containers are placed in, as the kubelet's `cgroupDriver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// The OCI runtime binary (runc's CLI).
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The handler for pods whose `runtime_handler` is empty.
    pub default_handler: String,
    pub cgroup_manager: CgroupManager,
    /// Never set an `oom_score_adj` below the daemon's own. Forced on at start when the host
    /// forbids lowering it, whatever this says.
    pub restrict_oom_score_adj: bool,
    /// Seconds one runtime command (`create`, `start`, `kill`, `delete`, `state`, `update`) may
    /// run before it is killed: a hung runtime fails its RPC instead of holding it.
    pub command_timeout: u64,
    pub handlers: BTreeMap<String, HandlerConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let handler = |path: &str| HandlerConfig { path: path.into() };
        RuntimeConfig {
            default_handler: "runc".into(),
            cgroup_manager: CgroupManager::Cgroupfs,
            restrict_oom_score_adj: false,
            command_timeout: 60,
            handlers: BTreeMap::from([
                ("runc".into(), handler("/usr/sbin/runc")),
                ("crun".into(), handler("/usr/bin/crun")),
            ]),
        }
    }
}

impl RuntimeConfig {
    /// The configured handlers, checked for names the CRI can carry.
    pub fn handlers(&self) -> Result<Vec<Handler>, crate::HandlerError> {
        self.handlers.iter().map(|(name, h)| Ok(Handler::new(HandlerName::new(name)?, h.path.clone()))).collect()
    }
}
