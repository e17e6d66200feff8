//! The crisp daemon: configuration, the CRI gRPC services that translate CRI calls into the
//! domain crates, and the server that hosts them.

pub mod config;
pub mod daemon;
mod http_listener;
pub mod logging;
pub mod metrics;
pub mod server;
mod service;
mod status;
pub mod streaming;
pub mod telemetry;
