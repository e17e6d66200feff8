use k8s_cri::v1::{StartContainerRequest, StartContainerResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

pub async fn start_container(
    daemon: &Daemon,
    request: StartContainerRequest,
) -> Result<StartContainerResponse, Status> {
    daemon.containers.start(&request.container_id).await.map_err(ToStatus::to_status)?;
    Ok(StartContainerResponse {})
}
