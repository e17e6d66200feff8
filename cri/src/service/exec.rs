use k8s_cri::v1::{ExecRequest, ExecResponse};
use tonic::Status;

use super::attach::{check_stdio, running_container};
use crate::daemon::Daemon;
use crate::streaming::{Stdio, StreamRequest};

/// Checks the request and the container, and hands out the URL that runs the command.
pub fn exec(daemon: &Daemon, request: ExecRequest) -> Result<ExecResponse, Status> {
    let stdio = Stdio { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty };
    check_stdio("Exec", &request.container_id, stdio)?;
    if request.cmd.is_empty() {
        return Err(Status::invalid_argument("Exec: no command"));
    }
    let container_id = running_container(daemon, "Exec", &request.container_id)?;
    let url = daemon
        .streaming
        .url(StreamRequest::Exec { container_id, cmd: request.cmd, stdio })
        .map_err(|e| Status::resource_exhausted(format!("Exec: {e}")))?;
    Ok(ExecResponse { url })
}
