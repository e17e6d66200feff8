use k8s_cri::v1::{ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse};
use tonic::Status;

use super::metrics_convert::pod_metrics;
use super::stats_convert::{forget_removed, sample_pod};
use crate::daemon::Daemon;

/// Ready pods only, read as the stats RPCs read them: the others have nothing running to read.
pub async fn list_pod_sandbox_metrics(
    daemon: &Daemon,
    _: ListPodSandboxMetricsRequest,
) -> Result<ListPodSandboxMetricsResponse, Status> {
    let mut found = Vec::new();
    for view in daemon.pods.list() {
        if let Some(sample) = sample_pod(daemon, view).await? {
            found.push(pod_metrics(&sample));
        }
    }
    forget_removed(daemon);
    Ok(ListPodSandboxMetricsResponse { pod_metrics: found })
}
