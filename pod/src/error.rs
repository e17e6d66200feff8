//! What can go wrong with a pod sandbox, for the daemon to turn into gRPC statuses.

use crate::cgroup::CgroupError;
use crate::files::FilesError;
use crate::key::KeyError;
use crate::store::StoreError;
use crate::sysctl::SysctlError;

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("unknown runtime handler {0:?}: not configured in [runtime.handlers]")]
    UnknownHandler(String),
    #[error("invalid pod sandbox config: {0}")]
    Invalid(String),
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox {0} is not ready: containers cannot be added to it")]
    NotReady(String),
    #[error("pod sandbox ID prefix {0:?} matches more than one sandbox")]
    Ambiguous(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("pod network not ready: {0}")]
    NetworkNotReady(#[from] crisp_network::NetworkNotReady),
    #[error("pod network: {0}")]
    Cni(#[from] crisp_network::cni::CniError),
    #[error("pod network namespace: {0}")]
    Netns(#[from] crisp_network::netns::NetnsError),
    #[error(transparent)]
    Oci(#[from] crisp_runtime::oci::OciError),
    #[error(transparent)]
    Monitor(#[from] crisp_runtime::monitor::MonitorError),
    /// The handler's runtime refused the pause container: named, since a runtime that cannot
    /// run on this host (Debian's crun 1.8 on a cgroup v1 hybrid host) fails only its own pods.
    #[error("runtime handler \"{handler}\" refused the pod's pause container: {source}")]
    HandlerRefused { handler: crisp_runtime::HandlerName, source: crisp_runtime::monitor::MonitorError },
    #[error("sandbox records: {0}")]
    Store(#[from] StoreError),
    #[error("pod files: {0}")]
    Files(#[from] FilesError),
    #[error("pause rootfs: {0}")]
    Overlay(#[from] crisp_image::overlay::OverlayError),
    #[error("pause OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0} was interrupted: {1}")]
    Interrupted(&'static str, String),
}

impl PodError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PodError {
        let what = what.into();
        move |source| PodError::Io { what, source }
    }
}
