//! Running containers: OCI runtime handlers (runc, crun), the per-pod monitor that creates
//! containers and records their exits, the base OCI spec, and the host limits they run under.

pub mod config;
pub mod container;
pub mod events;
pub mod handler;
mod id;
pub mod monitor;
pub mod oci;
pub mod oom;
pub mod persist;
pub mod spec;
pub mod stats;

pub use config::{CgroupManager, HandlerConfig, RuntimeConfig};
pub use handler::{Handler, HandlerError, HandlerFeatures, HandlerName};
pub use id::{ContainerId, InvalidContainerId};
pub use oom::OomScoreAdjPolicy;
