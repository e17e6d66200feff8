use crisp_runtime::container::ContainerView;
use k8s_cri::v1::{ContainerFilter, ListContainersRequest, ListContainersResponse};

use super::container_convert::{cri_state, to_cri_container};
use crate::daemon::Daemon;

pub fn list_containers(daemon: &Daemon, request: ListContainersRequest) -> ListContainersResponse {
    let filter = request.filter.unwrap_or_default();
    let mut views: Vec<ContainerView> = daemon.containers.list().into_iter().filter(|v| selects(&filter, v)).collect();
    views.sort_by_key(|v| std::cmp::Reverse(v.record.created_at_ns));
    ListContainersResponse { containers: views.iter().map(to_cri_container).collect() }
}

/// ID and pod filters match prefixes, as crictl passes short IDs.
fn selects(filter: &ContainerFilter, view: &ContainerView) -> bool {
    let record = &view.record;
    (filter.id.is_empty() || record.id.as_str().starts_with(&filter.id))
        && (filter.pod_sandbox_id.is_empty() || record.key.sandbox_id.starts_with(&filter.pod_sandbox_id))
        && filter.state.as_ref().is_none_or(|s| s.state == cri_state(view))
        && filter.label_selector.iter().all(|(k, v)| record.labels.get(k) == Some(v))
}
