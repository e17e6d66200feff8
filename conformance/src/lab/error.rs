use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::digest::Digest;

/// Everything that can go wrong while building, serving or pushing the lab's images.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot build a layer: {0}")]
    Layer(#[source] io::Error),

    #[error("cannot encode an image's JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("`{program} --list` printed no applets")]
    NoApplets { program: PathBuf },

    #[error("cannot hash the registry password: {0}")]
    Password(#[from] bcrypt::BcryptError),

    #[error("no free port on 127.0.0.1: {0}")]
    NoFreePort(#[source] io::Error),

    #[error("{addr} already serves a registry")]
    AlreadyServing { addr: SocketAddr },

    #[error("the registry for {addr} exited ({status}) before it answered /v2/; its log:\n{log}")]
    RegistryExited { addr: SocketAddr, status: ExitStatus, log: String },

    #[error("the registry at {addr} did not answer /v2/ within {timeout:?}; its log:\n{log}")]
    RegistryTimeout { addr: SocketAddr, timeout: Duration, log: String },

    #[error("{operation} {reference}: {source}")]
    Distribution {
        operation: &'static str,
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },

    #[error("the registry stored {reference} at `{location}`, not under its digest {expected}")]
    ManifestLocation { reference: String, location: String, expected: Digest },
}

impl LabError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
