use k8s_cri::v1::{RemoveContainerRequest, RemoveContainerResponse};
use tonic::Status;

use super::container_holds;
use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Kills a running container first; a missing one is fine.
pub async fn remove_container(
    daemon: &Daemon,
    request: RemoveContainerRequest,
) -> Result<RemoveContainerResponse, Status> {
    daemon.containers.remove(&request.container_id).await.map_err(ToStatus::to_status)?;
    container_holds::release_stale(daemon).await;
    Ok(RemoveContainerResponse {})
}
