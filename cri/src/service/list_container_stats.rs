use crisp_runtime::container::ContainerView;
use k8s_cri::v1::{ContainerStatsFilter, ListContainerStatsRequest, ListContainerStatsResponse};
use tonic::Status;

use super::stats_convert::{container_stats, forget_removed, sample_or_skip};
use crate::daemon::Daemon;

/// Running containers only: the others have no stats, and that is no error.
pub async fn list_container_stats(
    daemon: &Daemon,
    request: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Status> {
    let filter = request.filter.unwrap_or_default();
    let mut stats = Vec::new();
    for view in daemon.containers.list().into_iter().filter(|v| selects(&filter, v)) {
        if let Some(sample) = sample_or_skip(daemon, view).await {
            stats.push(container_stats(&sample));
        }
    }
    forget_removed(daemon);
    Ok(ListContainerStatsResponse { stats })
}

/// ID and pod filters match prefixes, as crictl passes short IDs.
fn selects(filter: &ContainerStatsFilter, view: &ContainerView) -> bool {
    let record = &view.record;
    record.id.as_str().starts_with(&filter.id)
        && record.key.sandbox_id.starts_with(&filter.pod_sandbox_id)
        && filter.label_selector.iter().all(|(k, v)| record.labels.get(k) == Some(v))
}
