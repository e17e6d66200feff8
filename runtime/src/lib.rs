//! Running containers: OCI runtime handlers (runc, crun) and the host limits they run under.

pub mod config;
pub mod handler;
mod id;
pub mod oom;

pub use config::{CgroupManager, HandlerConfig, RuntimeConfig};
pub use handler::{Handler, HandlerError, HandlerName};
pub use id::{ContainerId, InvalidContainerId};
pub use oom::OomScoreAdjPolicy;
