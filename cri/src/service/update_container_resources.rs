use crisp_runtime::spec::updated_resources;
use k8s_cri::v1::{UpdateContainerResourcesRequest, UpdateContainerResourcesResponse};
use tonic::Status;

use super::create_container::linux_resources;
use crate::daemon::Daemon;
use crate::status::ToStatus;

pub async fn update_container_resources(
    daemon: &Daemon,
    request: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Status> {
    let Some(linux) = request.linux.as_ref() else {
        return Ok(UpdateContainerResourcesResponse {});
    };
    let resources = updated_resources(&linux_resources(Some(linux)), &daemon.host)
        .map_err(|e| Status::invalid_argument(format!("UpdateContainerResources: {e}")))?;
    daemon.containers.update_resources(&request.container_id, resources).await.map_err(ToStatus::to_status)?;
    Ok(UpdateContainerResourcesResponse {})
}
