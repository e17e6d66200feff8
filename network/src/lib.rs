//! Pod networking: CNI network configurations and, later, plugin invocation and netns.

pub mod config;
pub mod conflist;
pub mod pod_cidr;

pub use config::NetworkConfig;
pub use conflist::{ConfList, ConfListError, NetworkNotReady};
pub use pod_cidr::{PodCidr, PodCidrError};
