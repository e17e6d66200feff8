use std::time::Duration;

use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Each stream is cut here (CVE-2022-1708: unbounded output exhausted the runtime's memory).
const MAX_OUTPUT: u64 = 16 << 20;

pub async fn exec_sync(daemon: &Daemon, request: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
    if request.cmd.is_empty() {
        return Err(Status::invalid_argument("ExecSync: no command"));
    }
    let view = daemon.containers.status(&request.container_id).map_err(ToStatus::to_status)?;
    let process = super::exec_process(&view, request.cmd, false)?;
    let timeout = (request.timeout > 0).then(|| Duration::from_secs(request.timeout as u64));
    let output = daemon
        .containers
        .exec_sync(&request.container_id, process, timeout, MAX_OUTPUT)
        .await
        .map_err(ToStatus::to_status)?;
    if output.truncated {
        return Err(Status::resource_exhausted(format!(
            "ExecSync: the command wrote more than {MAX_OUTPUT} bytes to stdout or stderr and was killed"
        )));
    }
    if output.timed_out {
        return Err(Status::deadline_exceeded(format!(
            "ExecSync: command timed out after {}s and was killed",
            request.timeout
        )));
    }
    Ok(ExecSyncResponse { stdout: output.stdout, stderr: output.stderr, exit_code: output.exit_code })
}
