//! The `[pod]` section of crisp's configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodConfig {
    /// The image whose process holds a pod's namespaces; empty: crisp's built-in pause program,
    /// which needs no pull.
    pub pause_image: String,
}
