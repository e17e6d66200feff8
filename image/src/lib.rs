//! Images: references, registries, the content store, layer unpacking and pulls.

mod atomic;
pub mod config;
pub mod digest;
mod host;
pub mod overlay;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

pub use config::{ImageConfig, RegistryConfig, RegistryConfigError};
pub use digest::{Digest, DigestError, ImageId};
pub use pull::{Credentials, PullError, Puller};
pub use reference::{Reference, ReferenceError};
pub use store::{ImageConfigSummary, ImageRecord, ImageStore, StoreError};
