use std::time::Duration;

use k8s_cri::v1::{StopContainerRequest, StopContainerResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// The stop signal, `timeout` seconds, then SIGKILL; 0 kills at once. A missing or stopped
/// container is fine.
pub async fn stop_container(daemon: &Daemon, request: StopContainerRequest) -> Result<StopContainerResponse, Status> {
    let timeout = Duration::from_secs(request.timeout.max(0) as u64);
    daemon.containers.stop(&request.container_id, timeout).await.map_err(ToStatus::to_status)?;
    Ok(StopContainerResponse {})
}
