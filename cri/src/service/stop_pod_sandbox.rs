use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Stopping a sandbox that is gone or already stopped succeeds: the kubelet retries freely.
pub async fn stop_pod_sandbox(
    daemon: &Daemon,
    request: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Status> {
    daemon.pods.stop(&request.pod_sandbox_id).await.map_err(ToStatus::to_status)?;
    Ok(StopPodSandboxResponse {})
}
