//! Pod sandboxes: the pause process that holds a pod's namespaces, its network, files and
//! cgroup, and the records that let all of it be cleaned up after any crash.

pub mod cgroup;
pub mod config;
pub mod error;
pub mod events;
pub mod files;
pub mod key;
pub mod lifecycle;
pub mod model;
pub mod pause;
pub mod pause_spec;
pub mod shm;
pub mod store;
pub mod sysctl;
mod translate;

pub use config::PodConfig;
pub use error::PodError;
pub use key::PodKey;
pub use lifecycle::{ContainerContext, PauseSource, Pods, PodsConfig, SandboxView};
pub use model::{SandboxConfig, SandboxId, SandboxRecord, SandboxState};
