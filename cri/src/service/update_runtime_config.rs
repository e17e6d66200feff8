use crisp_network::PodCidr;
use k8s_cri::v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Keeps the node's pod CIDR. An empty one (the kubelet before the node has one) changes
/// nothing.
pub fn update_runtime_config(
    daemon: &Daemon,
    request: UpdateRuntimeConfigRequest,
) -> Result<UpdateRuntimeConfigResponse, Status> {
    let cidr = request.runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
    if !cidr.is_empty() {
        let cidr = PodCidr::parse(&cidr).map_err(ToStatus::to_status)?;
        tracing::info!(%cidr, "pod CIDR updated");
        *daemon.pod_cidr.write().expect("pod CIDR lock") = Some(cidr);
    }
    Ok(UpdateRuntimeConfigResponse {})
}
