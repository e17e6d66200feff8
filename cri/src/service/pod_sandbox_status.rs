use std::collections::HashMap;

use k8s_cri::v1::{PodSandboxStatusRequest, PodSandboxStatusResponse};
use tonic::Status;

use super::pod_convert::to_cri_status;
use crate::daemon::Daemon;
use crate::status::ToStatus;

pub fn pod_sandbox_status(
    daemon: &Daemon,
    request: PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Status> {
    let view = daemon.pods.status(&request.pod_sandbox_id).map_err(ToStatus::to_status)?;
    let mut info = HashMap::new();
    if request.verbose {
        let json = serde_json::to_string(&view.record)
            .map_err(|e| Status::internal(format!("PodSandboxStatus: encoding info: {e}")))?;
        info.insert("info".to_owned(), json);
    }
    Ok(PodSandboxStatusResponse {
        status: Some(to_cri_status(&view)),
        info,
        containers_statuses: Vec::new(),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
    })
}
