use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Removing a sandbox that is gone succeeds; a running one is stopped first.
pub async fn remove_pod_sandbox(
    daemon: &Daemon,
    request: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    let Ok(view) = daemon.pods.status(&request.pod_sandbox_id) else {
        daemon.pods.remove(&request.pod_sandbox_id).await.map_err(ToStatus::to_status)?;
        return Ok(RemovePodSandboxResponse {});
    };
    let sandbox_id = view.record.id.to_string();
    let gate = daemon.pod_gate(&sandbox_id);
    let _gate = gate.write().await;
    for id in daemon.containers.of_sandbox(&sandbox_id) {
        daemon.containers.remove(id.as_str()).await.map_err(ToStatus::to_status)?;
    }
    super::container_holds::release_stale(daemon).await;
    daemon.pods.remove(&sandbox_id).await.map_err(ToStatus::to_status)?;
    daemon.drop_pod_gate(&sandbox_id);
    Ok(RemovePodSandboxResponse {})
}
