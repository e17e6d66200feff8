use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Stopping a sandbox that is gone or already stopped succeeds: the kubelet retries freely.
pub async fn stop_pod_sandbox(
    daemon: &Daemon,
    request: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Status> {
    // Containers first, at once: the kubelet has given them their grace period already.
    let view = daemon.pods.status(&request.pod_sandbox_id);
    let gate = view.as_ref().ok().map(|v| daemon.pod_gate(v.record.id.as_str()));
    let _gate = match &gate {
        Some(gate) => Some(gate.write().await),
        None => None,
    };
    if let Ok(view) = view {
        for id in daemon.containers.of_sandbox(view.record.id.as_str()) {
            daemon.containers.stop(id.as_str(), std::time::Duration::ZERO).await.map_err(ToStatus::to_status)?;
        }
    }
    daemon.pods.stop(&request.pod_sandbox_id).await.map_err(ToStatus::to_status)?;
    Ok(StopPodSandboxResponse {})
}
