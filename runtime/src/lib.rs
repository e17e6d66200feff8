//! Running containers: OCI runtime handlers (runc, crun) and the host limits they run under.

pub mod config;
pub mod handler;
pub mod oom;

pub use config::{CgroupManager, HandlerConfig, RuntimeConfig};
pub use handler::{Handler, HandlerError, HandlerName};
pub use oom::OomScoreAdjPolicy;
