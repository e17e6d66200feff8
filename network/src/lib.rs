//! Pod networking: CNI network configurations, network namespaces, and, later, plugin invocation.

pub mod config;
pub mod conflist;
pub mod netns;
pub mod pod_cidr;

pub use config::NetworkConfig;
pub use conflist::{ConfList, ConfListError, NetworkNotReady};
pub use pod_cidr::{PodCidr, PodCidrError};
