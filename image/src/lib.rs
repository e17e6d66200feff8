//! Images: registries to pull from, and later the content store, unpacking and mounts.

pub mod config;

pub use config::{ImageConfig, RegistryConfig, RegistryConfigError};
