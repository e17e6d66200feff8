use k8s_cri::v1::{AttachRequest, AttachResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;
use crate::streaming::{Stdio, StreamRequest};

/// Checks the request and the container, and hands out the URL that attaches to it.
pub fn attach(daemon: &Daemon, request: AttachRequest) -> Result<AttachResponse, Status> {
    let stdio = Stdio { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty };
    check_stdio("Attach", &request.container_id, stdio)?;
    let container_id = running_container(daemon, "Attach", &request.container_id)?;
    let url = daemon
        .streaming
        .url(StreamRequest::Attach { container_id, stdio })
        .map_err(|e| Status::resource_exhausted(format!("Attach: {e}")))?;
    Ok(AttachResponse { url })
}

/// What the kubelet's streaming server refuses, refused here, before a URL is handed out.
pub(super) fn check_stdio(rpc: &str, container_id: &str, stdio: Stdio) -> Result<(), Status> {
    if container_id.is_empty() {
        return Err(Status::invalid_argument(format!("{rpc}: missing required container_id")));
    }
    if stdio.tty && stdio.stderr {
        return Err(Status::invalid_argument(format!(
            "{rpc}: tty and stderr cannot both be true (a terminal has one output stream)"
        )));
    }
    if !(stdio.stdin || stdio.stdout || stdio.stderr) {
        return Err(Status::invalid_argument(format!("{rpc}: one of stdin, stdout, or stderr must be set")));
    }
    Ok(())
}

/// The full ID of a running container: a URL for another is of no use.
pub(super) fn running_container(daemon: &Daemon, rpc: &str, id: &str) -> Result<String, Status> {
    let view = daemon.containers.status(id).map_err(ToStatus::to_status)?;
    if view.state != crisp_runtime::container::ContainerState::Running {
        return Err(Status::failed_precondition(format!("{rpc}: container {} is not running", view.record.id)));
    }
    Ok(view.record.id.to_string())
}
