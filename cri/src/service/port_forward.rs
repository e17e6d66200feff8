use k8s_cri::v1::{PortForwardRequest, PortForwardResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;
use crate::streaming::StreamRequest;

/// Checks the pod and hands out the URL that forwards to its ports. Ports need not be named:
/// SPDY clients name them per connection.
pub fn port_forward(daemon: &Daemon, request: PortForwardRequest) -> Result<PortForwardResponse, Status> {
    if request.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("PortForward: missing required pod_sandbox_id"));
    }
    let ports = request
        .port
        .iter()
        .map(|&p| u16::try_from(p).ok().filter(|&p| p > 0))
        .collect::<Option<Vec<u16>>>()
        .ok_or_else(|| {
            Status::invalid_argument(format!("PortForward: ports must be 1 to 65535: {:?}", request.port))
        })?;
    // Two WebSocket channels per port, numbered in a byte.
    if ports.len() > 127 {
        return Err(Status::invalid_argument(format!("PortForward: {} ports, at most 127", ports.len())));
    }
    let view = daemon.pods.status(&request.pod_sandbox_id).map_err(ToStatus::to_status)?;
    if !view.ready {
        return Err(Status::failed_precondition(format!("PortForward: pod sandbox {} is not ready", view.record.id)));
    }
    let sandbox_id = view.record.id.to_string();
    let url = daemon
        .streaming
        .url(StreamRequest::PortForward { sandbox_id, ports })
        .map_err(|e| Status::resource_exhausted(format!("PortForward: {e}")))?;
    Ok(PortForwardResponse { url })
}
