//! Pod sandboxes: the pause process that holds a pod's namespaces, and sandbox configuration.

pub mod config;
pub mod pause;

pub use config::PodConfig;
