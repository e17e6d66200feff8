//! The `[network]` section of crisp's configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Where CNI network configurations (`*.conflist`, `*.conf`, `*.json`) are read from.
    pub conf_dir: PathBuf,
    /// Where CNI plugin binaries are looked up, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// The network to use by its `name`; unset: the first configuration in `conf_dir` by file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_network: Option<String>,
    /// Seconds one plugin call may run before it and what it started are killed. The kubelet
    /// gives a RunPodSandbox 2 minutes: a hung ADD must leave time for DEL along the chain.
    pub plugin_timeout: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            conf_dir: "/etc/cni/net.d".into(),
            plugin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
            default_network: None,
            plugin_timeout: 60,
        }
    }
}
