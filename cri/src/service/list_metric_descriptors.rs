use k8s_cri::v1::{ListMetricDescriptorsRequest, ListMetricDescriptorsResponse};

use super::metrics_convert::descriptors;

/// The same list every time: the kubelet reads it once, at its start.
pub fn list_metric_descriptors(_: ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse {
    ListMetricDescriptorsResponse { descriptors: descriptors() }
}
