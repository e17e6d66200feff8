//! Why a pull failed, in a form every waiter on a shared pull can have a copy of.

use oci_client::errors::{DigestError, OciDistributionError};

use super::Endpoint;
use crate::reference::Reference;
use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("image {reference} not found: {tried}")]
    NotFound { reference: String, tried: String },
    #[error("pulling {reference}: not authorized: {message}")]
    Unauthorized { reference: String, message: String },
    #[error("pulling {reference}: {message}")]
    Unreachable { reference: String, message: String },
    #[error("pulling {reference}: refused: {reason}")]
    Invalid { reference: String, reason: String },
    #[error("image store: {0}")]
    Store(String),
    #[error("image store: no space left: {0}")]
    NoSpace(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    Unauthorized,
    Unreachable,
}

impl PullError {
    pub(super) fn invalid(reference: &Reference, reason: impl Into<String>) -> PullError {
        PullError::Invalid { reference: reference.to_string(), reason: reason.into() }
    }

    pub(super) fn store(e: StoreError) -> PullError {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull};
        let no_space = matches!(&e, StoreError::Io { source, .. } if matches!(source.kind(), StorageFull | QuotaExceeded));
        if no_space { PullError::NoSpace(e.to_string()) } else { PullError::Store(e.to_string()) }
    }

    pub(super) fn registry(endpoint: &Endpoint, reference: &Reference, e: OciDistributionError) -> PullError {
        let reference = reference.to_string();
        // A registry's error text ends up in the kubelet's events and crisp's log: keep it short.
        let message = truncate(format!("{endpoint}: {e}"));
        match kind(&e) {
            Kind::NotFound => PullError::NotFound { reference, tried: message },
            Kind::Unauthorized => PullError::Unauthorized { reference, message },
            Kind::Unreachable => PullError::Unreachable { reference, message },
        }
    }

    /// A blob stream's failure: content that does not match its digest (the client checks as
    /// it streams), or a transfer cut off or stalled mid-way.
    pub(super) fn stream(endpoint: &Endpoint, reference: &Reference, e: std::io::Error) -> PullError {
        let reference = reference.to_string();
        match e.get_ref().and_then(|inner| inner.downcast_ref::<DigestError>()) {
            Some(mismatch @ DigestError::VerificationError { .. }) => {
                PullError::Invalid { reference, reason: format!("{endpoint}: {mismatch}") }
            }
            _ => PullError::Unreachable { reference, message: format!("{endpoint}: transfer failed: {e}") },
        }
    }

    /// Whether another endpoint (a mirror, or the registry after its mirrors) may do better.
    pub(super) fn is_endpoint_failure(&self) -> bool {
        matches!(self, PullError::NotFound { .. } | PullError::Unauthorized { .. } | PullError::Unreachable { .. })
    }

    /// After every endpoint failed: not found if none had it, else the most telling failure.
    pub(super) fn from_endpoint_failures(reference: &Reference, failures: Vec<(Endpoint, PullError)>) -> PullError {
        let all = failures.iter().map(|(_, e)| e.detail()).collect::<Vec<_>>().join("; ");
        let reference = reference.to_string();
        if failures.iter().all(|(_, e)| matches!(e, PullError::NotFound { .. })) {
            PullError::NotFound { reference, tried: all }
        } else if failures.iter().any(|(_, e)| matches!(e, PullError::Unauthorized { .. })) {
            PullError::Unauthorized { reference, message: all }
        } else {
            PullError::Unreachable { reference, message: all }
        }
    }

    fn detail(&self) -> String {
        match self {
            PullError::NotFound { tried: m, .. }
            | PullError::Unauthorized { message: m, .. }
            | PullError::Unreachable { message: m, .. } => m.clone(),
            other => other.to_string(),
        }
    }
}

fn kind(e: &OciDistributionError) -> Kind {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => Kind::NotFound,
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            Kind::Unauthorized
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}", e.code)).collect();
            if codes.iter().any(|c| c.contains("Unknown")) {
                Kind::NotFound
            } else if codes.iter().any(|c| c.contains("Unauthorized") || c.contains("Denied")) {
                Kind::Unauthorized
            } else {
                Kind::Unreachable
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Kind::NotFound,
        OciDistributionError::ServerError { code: 401 | 403, .. } => Kind::Unauthorized,
        _ => Kind::Unreachable,
    }
}

const MAX_MESSAGE: usize = 1024;

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}
