//! Running CNI plugins for pods, as the CNI specification (0.3.x to 1.1.0) asks of a runtime.

mod cache;
mod capabilities;
mod chain;
mod error;
mod exec;
mod facade;
mod request;
mod result;
mod version;

pub use capabilities::{Bandwidth, Dns, PortMapping, Protocol};
pub use error::{CniError, Command, PluginFailure};
pub use facade::Cni;
pub use request::{Attachment, PodNetworkRequest};
/// The ADD result parser on its own, for the fuzz targets (fuzz/).
#[doc(hidden)]
pub use result::{parse as parse_result, pod_ips};
pub use version::{Incompatible, SpecVersion};
#[cfg(test)]
mod tests;
