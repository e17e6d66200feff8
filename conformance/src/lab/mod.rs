//! The test lab: a real local OCI registry and the images crisp's tests run, built by this code
//! from the host's busybox-static and crisp's own pause program, never fetched from the
//! internet.

mod digest;
mod error;
pub mod image;
pub mod push;
pub mod registry;
mod setup;

pub use digest::Digest;
pub use error::LabError;
pub use setup::{Lab, PushedImage};
