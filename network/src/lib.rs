//! Pod networking: CNI network configurations, plugin invocation, network namespaces.

pub mod cni;
pub mod config;
pub mod conflist;
pub mod interface_stats;
pub mod netns;
pub mod pod_cidr;

pub use config::NetworkConfig;
pub use conflist::{ConfList, ConfListError, NetworkNotReady};
pub use pod_cidr::{PodCidr, PodCidrError};
