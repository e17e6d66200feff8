use k8s_cri::v1::{ReopenContainerLogRequest, ReopenContainerLogResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

pub async fn reopen_container_log(
    daemon: &Daemon,
    request: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, Status> {
    daemon.containers.reopen_log(&request.container_id).await.map_err(ToStatus::to_status)?;
    Ok(ReopenContainerLogResponse {})
}
