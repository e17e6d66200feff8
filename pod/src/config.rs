//! The `[pod]` section of crisp's configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodConfig {
    /// The image whose process holds a pod's namespaces; empty: crisp's built-in pause program,
    /// which needs no pull.
    pub pause_image: String,
    /// The size of each pod's `/dev/shm` tmpfs, in bytes (Docker's and containerd's 64 MiB).
    pub shm_size: u64,
}

impl Default for PodConfig {
    fn default() -> Self {
        PodConfig { pause_image: String::new(), shm_size: 64 << 20 }
    }
}
