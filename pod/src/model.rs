//! A pod sandbox as crisp keeps it: what was asked for, and what it became.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crisp_runtime::ContainerId;
use serde::{Deserialize, Serialize};

use crate::files::DnsConfig;
use crate::key::PodKey;

/// A sandbox's ID is also the ID of its pause container in the OCI runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(ContainerId);

impl SandboxId {
    pub fn random() -> SandboxId {
        SandboxId(ContainerId::random())
    }

    pub fn parse(text: &str) -> Option<SandboxId> {
        ContainerId::parse(text).ok().map(SandboxId)
    }

    pub fn container_id(&self) -> &ContainerId {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for SandboxId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        SandboxId::parse(&s).ok_or_else(|| format!("invalid sandbox id {s:?}"))
    }
}

impl From<SandboxId> for String {
    fn from(id: SandboxId) -> String {
        id.0.to_string()
    }
}

/// Whose namespace a pod uses, as the CRI's `NamespaceMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceMode {
    /// One for the pod, shared by its containers.
    #[default]
    Pod,
    /// One per container (PID only).
    Container,
    /// The host's.
    Node,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceModes {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: Option<IpAddr>,
}

/// Traffic shaping the kubelet asks for through the `kubernetes.io/{ingress,egress}-bandwidth`
/// annotations, in bits per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub ingress: Option<u64>,
    pub egress: Option<u64>,
}

/// The cgroup limits of the pod's own cgroup (the sandbox's resources plus its overhead).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub memory_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
}

/// What RunPodSandbox asked for, translated from the CRI and validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub key: PodKey,
    pub hostname: String,
    pub log_directory: Option<PathBuf>,
    pub dns: DnsConfig,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub namespaces: NamespaceModes,
    pub sysctls: BTreeMap<String, String>,
    pub resources: PodResources,
    pub bandwidth: Bandwidth,
    pub privileged: bool,
    /// The runtime handler's name; empty for the default one.
    pub runtime_handler: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Being set up; found so after a crash, it is undone.
    Creating,
    Ready,
    /// Its clean-up failed halfway; Stop and Remove finish it.
    Stopping,
    NotReady,
}

/// The pod's network as CNI set it up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    pub network: String,
    pub ips: Vec<IpAddr>,
}

/// One sandbox, as persisted in `root/pods/<id>/sandbox.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: SandboxId,
    pub config: SandboxConfig,
    pub created_at_ns: i64,
    pub state: SandboxState,
    /// The handler that runs the pause, resolved from `config.runtime_handler`, and what it
    /// was when the sandbox was made, so that its pause can be stopped after a config change.
    pub handler: String,
    #[serde(default)]
    pub runtime_path: PathBuf,
    #[serde(default)]
    pub runtime_root: PathBuf,
    pub cgroups_path: String,
    /// The pod's hostname: the one asked for, or else the node's, as containerd does.
    pub hostname: String,
    /// The pod's network namespace; none on the host network.
    pub netns: Option<PathBuf>,
    pub network: Option<PodNetwork>,
    #[serde(default)]
    pub pause_pid: Option<u32>,
    /// The pause's start time in clock ticks since boot, telling it from a process that
    /// reuses its PID.
    #[serde(default)]
    pub pause_start_time: Option<u64>,
}

impl SandboxRecord {
    pub fn host_network(&self) -> bool {
        self.config.namespaces.network == NamespaceMode::Node
    }
}
