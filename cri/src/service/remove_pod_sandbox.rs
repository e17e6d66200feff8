use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Removing a sandbox that is gone succeeds; a running one is stopped first.
pub async fn remove_pod_sandbox(
    daemon: &Daemon,
    request: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    if let Ok(view) = daemon.pods.status(&request.pod_sandbox_id) {
        for id in daemon.containers.of_sandbox(view.record.id.as_str()) {
            daemon.containers.remove(id.as_str()).await.map_err(ToStatus::to_status)?;
        }
        super::container_holds::release_stale(daemon).await;
    }
    daemon.pods.remove(&request.pod_sandbox_id).await.map_err(ToStatus::to_status)?;
    Ok(RemovePodSandboxResponse {})
}
