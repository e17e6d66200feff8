//! The one place where domain errors become gRPC statuses.

use tonic::Status;

pub trait ToStatus {
    fn to_status(self) -> Status;
}

impl ToStatus for crisp_network::PodCidrError {
    fn to_status(self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

/// What every RPC that has not landed yet answers, naming itself.
pub fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by crisp yet"))
}
