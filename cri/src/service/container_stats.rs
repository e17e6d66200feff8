use k8s_cri::v1::{ContainerStatsRequest, ContainerStatsResponse};
use tonic::Status;

use super::stats_convert::{container_stats as to_cri, sample_container};
use crate::daemon::Daemon;
use crate::status::ToStatus;

/// A container that does not run has no cgroup to read: an error here, as with containerd,
/// while the list leaves it out.
pub async fn container_stats(
    daemon: &Daemon,
    request: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    let view = daemon.containers.status(&request.container_id).map_err(ToStatus::to_status)?;
    let id = view.record.id.clone();
    let sample = sample_container(daemon, view)
        .await?
        .ok_or_else(|| crisp_runtime::container::ContainerError::NotRunning(id).to_status())?;
    Ok(ContainerStatsResponse { stats: Some(to_cri(&sample)) })
}
