use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Removing a sandbox that is gone succeeds; a running one is stopped first.
pub async fn remove_pod_sandbox(
    daemon: &Daemon,
    request: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    daemon.pods.remove(&request.pod_sandbox_id).await.map_err(ToStatus::to_status)?;
    Ok(RemovePodSandboxResponse {})
}
