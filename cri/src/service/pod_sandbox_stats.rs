use k8s_cri::v1::{PodSandboxStatsRequest, PodSandboxStatsResponse};
use tonic::Status;

use super::stats_convert::{pod_stats, sample_pod};
use crate::daemon::Daemon;
use crate::status::ToStatus;

/// A pod that is not ready has nothing running to read: an error here, while the list leaves
/// it out.
pub async fn pod_sandbox_stats(
    daemon: &Daemon,
    request: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Status> {
    let view = daemon.pods.status(&request.pod_sandbox_id).map_err(ToStatus::to_status)?;
    let id = view.record.id.to_string();
    let sample = sample_pod(daemon, view).await?.ok_or_else(|| crisp_pod::PodError::NotReady(id).to_status())?;
    Ok(PodSandboxStatsResponse { stats: Some(pod_stats(&sample)) })
}
