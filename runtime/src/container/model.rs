//! A container as crisp keeps it: what CreateContainer asked for, and what became of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ContainerId;

/// The kubelet retries CreateContainer with the same pod, name and attempt; a new attempt is a
/// new container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerKey {
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
}

impl ContainerKey {
    /// The name ends up in records, events, logs and the kubelet's own names: as pod names, at
    /// most 253 bytes, no control characters and nothing read as a separator or a path.
    pub fn check_name(&self) -> Result<(), String> {
        let name = &self.name;
        let why = if name.is_empty() {
            "must not be empty"
        } else if name.len() > 253 {
            "longer than 253 bytes"
        } else if name.chars().any(|c| c.is_control() || c == ';' || c == '=' || c == '/') {
            "control characters, ';', '=' and '/' are not allowed"
        } else {
            return Ok(());
        };
        Err(format!("container name {name:?} is not allowed: {why}"))
    }
}

/// How far the container got. Whether it still runs is the monitor's exit record's to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Being set up; found so after a crash, it is undone.
    Creating,
    /// Created by the runtime, its process waiting to be started.
    Created,
    /// Started once; running until its exit record says otherwise.
    Started,
    /// Its creation failed and could not be wholly undone: shown as exited, for Remove to
    /// finish, and never handed to a retry as if it had worked.
    Failed,
    /// Its removal began: shown as exited, since its exit record goes with its state; a crash
    /// halfway leaves it so, and the next start finishes the removal.
    Removing,
}

/// A bind mount as the CRI reported it back in ContainerStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub propagation: i32,
    pub recursive_read_only: bool,
}

/// The identity the container's process runs as, as resolved from the config and the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: ContainerId,
    pub key: ContainerKey,
    /// What the request said, in a canonical form: a retry with another config is another
    /// container, refused while this one holds the name.
    pub fingerprint: String,
    /// The image as the request named it, and the image's ID.
    pub image: String,
    pub image_id: String,
    /// The image as the kubelet shows it in pod status: a repo digest where the image has one,
    /// else its ID.
    #[serde(default)]
    pub image_ref: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub log_path: Option<PathBuf>,
    pub mounts: Vec<MountRecord>,
    pub stop_signal: i32,
    pub created_at_ns: i64,
    #[serde(default)]
    pub started_at_ns: Option<i64>,
    pub stage: Stage,
    #[serde(default)]
    pub pid: Option<u32>,
    /// The init's start time in clock ticks since boot, telling it from a process that reuses
    /// its pid after a reboot.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    #[serde(default)]
    pub user: Option<UserRecord>,
    /// The cgroup limits it runs under, as created or last updated (device rules left out).
    #[serde(default)]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    pub handler: String,
    pub runtime_path: PathBuf,
    pub runtime_root: PathBuf,
    /// The pod monitor that created it and records its exit.
    pub monitor_dir: PathBuf,
    /// The mounted root filesystem, and the directories under it, removed with the container.
    pub rootfs: PathBuf,
    pub exit_file: PathBuf,
}
