use k8s_cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse, PodSandboxFilter, PodSandboxState};

use super::pod_convert::to_cri_sandbox;
use crate::daemon::Daemon;
use crisp_pod::SandboxView;

pub fn list_pod_sandbox(daemon: &Daemon, request: ListPodSandboxRequest) -> ListPodSandboxResponse {
    let filter = request.filter.unwrap_or_default();
    let mut views: Vec<SandboxView> = daemon.pods.list().into_iter().filter(|v| selects(&filter, v)).collect();
    views.sort_by_key(|v| std::cmp::Reverse(v.record.created_at_ns));
    ListPodSandboxResponse { items: views.iter().map(to_cri_sandbox).collect() }
}

/// An ID filter matches a prefix of the ID, as crictl passes short IDs.
fn selects(filter: &PodSandboxFilter, view: &SandboxView) -> bool {
    let ready = PodSandboxState::SandboxReady as i32;
    (filter.id.is_empty() || view.record.id.as_str().starts_with(&filter.id))
        && filter.state.as_ref().is_none_or(|s| (s.state == ready) == view.ready)
        && filter.label_selector.iter().all(|(k, v)| view.record.config.labels.get(k) == Some(v))
}
