use crisp_pod::SandboxView;
use k8s_cri::v1::{ListPodSandboxStatsRequest, ListPodSandboxStatsResponse, PodSandboxStatsFilter};
use tonic::Status;

use super::stats_convert::{forget_removed, pod_stats, sample_pod};
use crate::daemon::Daemon;

/// Ready pods only: the others have no stats, and that is no error.
pub async fn list_pod_sandbox_stats(
    daemon: &Daemon,
    request: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Status> {
    let filter = request.filter.unwrap_or_default();
    let mut stats = Vec::new();
    for view in daemon.pods.list().into_iter().filter(|v| selects(&filter, v)) {
        if let Some(sample) = sample_pod(daemon, view).await? {
            stats.push(pod_stats(&sample));
        }
    }
    forget_removed(daemon);
    Ok(ListPodSandboxStatsResponse { stats })
}

/// The ID filter matches a prefix, as crictl passes short IDs.
fn selects(filter: &PodSandboxStatsFilter, view: &SandboxView) -> bool {
    let record = &view.record;
    record.id.as_str().starts_with(&filter.id)
        && filter.label_selector.iter().all(|(k, v)| record.config.labels.get(k) == Some(v))
}
