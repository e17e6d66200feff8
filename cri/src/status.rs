//! The one place where domain errors become gRPC statuses.

use std::error::Error;

use crisp_runtime::monitor::MonitorError;
use crisp_runtime::oci::{OciError, OciErrorKind};
use tonic::Status;

pub trait ToStatus {
    fn to_status(self) -> Status;
}

/// Whether a full disk or quota (ENOSPC, EDQUOT) is anywhere in the error's causes: that is
/// ResourceExhausted whatever was being written, and works again once space is freed.
fn is_exhausted(error: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
                || matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
        {
            return true;
        }
        cause = e.source();
    }
    false
}

impl ToStatus for crisp_network::PodCidrError {
    fn to_status(self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

impl ToStatus for crisp_image::ReferenceError {
    fn to_status(self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

impl ToStatus for crisp_image::StoreError {
    fn to_status(self) -> Status {
        match &self {
            crisp_image::StoreError::Ambiguous(_) => Status::invalid_argument(self.to_string()),
            _ if is_exhausted(&self) => Status::resource_exhausted(self.to_string()),
            _ => Status::internal(self.to_string()),
        }
    }
}

impl ToStatus for crisp_image::store::ResolveError {
    fn to_status(self) -> Status {
        match self {
            crisp_image::store::ResolveError::Reference(e) => e.to_status(),
            crisp_image::store::ResolveError::Store(e) => e.to_status(),
        }
    }
}

impl ToStatus for crisp_image::PullError {
    fn to_status(self) -> Status {
        use crisp_image::PullError as E;
        let message = self.to_string();
        match self {
            E::NotFound { .. } => Status::not_found(message),
            E::Unauthorized { .. } => Status::unauthenticated(message),
            E::Unreachable { .. } => Status::unavailable(message),
            E::Invalid { .. } => Status::failed_precondition(message),
            E::NoSpace(_) => Status::resource_exhausted(message),
            E::Store(_) => Status::internal(message),
        }
    }
}

impl ToStatus for crisp_runtime::HandlerError {
    fn to_status(self) -> Status {
        match self {
            crisp_runtime::HandlerError::InvalidName(_) => Status::invalid_argument(self.to_string()),
            crisp_runtime::HandlerError::Unusable { .. } => Status::failed_precondition(self.to_string()),
        }
    }
}

impl ToStatus for &crisp_pod::PodError {
    fn to_status(self) -> Status {
        use crisp_pod::PodError as E;
        let message = self.to_string();
        match self {
            E::Key(_) | E::Sysctl(_) | E::Cgroup(_) | E::UnknownHandler(_) | E::Invalid(_) | E::Ambiguous(_) => {
                Status::invalid_argument(message)
            }
            E::Files(crisp_pod::files::FilesError::Hostname(_) | crisp_pod::files::FilesError::Dns { .. }) => {
                Status::invalid_argument(message)
            }
            E::NotFound(_) => Status::not_found(message),
            E::AlreadyExists(_) => Status::already_exists(message),
            E::NetworkNotReady(_) | E::NotReady(_) => Status::failed_precondition(message),
            // A CNI plugin or the runtime overran its time and was killed.
            E::Cni(crisp_network::cni::CniError::Timeout { .. })
            | E::Monitor(MonitorError::CreateTimeout { .. })
            | E::Oci(OciError { kind: OciErrorKind::Timeout(_), .. }) => Status::deadline_exceeded(message),
            _ if is_exhausted(self) => Status::resource_exhausted(message),
            _ => Status::internal(message),
        }
    }
}

impl ToStatus for crisp_pod::PodError {
    fn to_status(self) -> Status {
        (&self).to_status()
    }
}

impl ToStatus for std::sync::Arc<crisp_pod::PodError> {
    fn to_status(self) -> Status {
        (&*self).to_status()
    }
}

impl ToStatus for &crisp_runtime::container::ContainerError {
    fn to_status(self) -> Status {
        use crisp_runtime::container::{ContainerError as E, PrepareFailure};
        let message = self.to_string();
        match self {
            E::NotFound(_) => Status::not_found(message),
            E::Ambiguous(_) | E::Invalid(_) => Status::invalid_argument(message),
            E::AlreadyExists(_) => Status::already_exists(message),
            E::NotCreated { .. } | E::NotRunning(_) => Status::failed_precondition(message),
            E::Prepare { kind: PrepareFailure::Invalid, .. } => Status::invalid_argument(message),
            E::Prepare { kind: PrepareFailure::Missing, .. } => Status::failed_precondition(message),
            E::Monitor(MonitorError::CreateTimeout { .. })
            | E::Oci(OciError { kind: OciErrorKind::Timeout(_), .. }) => Status::deadline_exceeded(message),
            _ if is_exhausted(self) => Status::resource_exhausted(message),
            _ => Status::internal(message),
        }
    }
}

impl ToStatus for crisp_runtime::container::ContainerError {
    fn to_status(self) -> Status {
        (&self).to_status()
    }
}

impl ToStatus for std::sync::Arc<crisp_runtime::container::ContainerError> {
    fn to_status(self) -> Status {
        (&*self).to_status()
    }
}

/// What every RPC that has not landed yet answers, naming itself.
pub fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by crisp yet"))
}
