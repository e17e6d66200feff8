use std::collections::HashMap;

use k8s_cri::v1::{ContainerStatusRequest, ContainerStatusResponse};
use tonic::Status;

use super::container_convert::to_cri_status;
use crate::daemon::Daemon;
use crate::status::ToStatus;

pub fn container_status(daemon: &Daemon, request: ContainerStatusRequest) -> Result<ContainerStatusResponse, Status> {
    let view = daemon.containers.status(&request.container_id).map_err(ToStatus::to_status)?;
    let mut info = HashMap::new();
    if request.verbose {
        let json = serde_json::to_string(&view.record)
            .map_err(|e| Status::internal(format!("ContainerStatus: encoding info: {e}")))?;
        info.insert("info".to_owned(), json);
    }
    Ok(ContainerStatusResponse { status: Some(to_cri_status(&view)), info })
}
