use crisp_image::Credentials;
use crisp_image::store::Holder;
use crisp_pod::PauseSource;
use k8s_cri::v1::{RunPodSandboxRequest, RunPodSandboxResponse};
use tonic::Status;

use super::pod_convert::sandbox_config;
use crate::daemon::Daemon;
use crate::status::ToStatus;

pub async fn run_pod_sandbox(daemon: &Daemon, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse, Status> {
    let config = request.config.ok_or_else(|| Status::invalid_argument("RunPodSandbox: no pod sandbox config"))?;
    daemon.usable_handler(&request.runtime_handler).map_err(ToStatus::to_status)?;
    let config = sandbox_config(config, request.runtime_handler)?;
    let pause = pause_source(daemon).await?;
    let id = daemon.pods.run(config, pause).await.map_err(|e| e.to_status())?;
    Ok(RunPodSandboxResponse { pod_sandbox_id: id.to_string() })
}

/// Holds the configured pause image for as long as it is the one configured.
const PAUSE_HOLDER: &str = "crisp-pause-image";

/// The built-in pause, or the configured pause image, pulled on first use like any image the
/// kubelet would pull, anonymously.
async fn pause_source(daemon: &Daemon) -> Result<PauseSource, Status> {
    let Some(reference) = daemon.pause_image() else {
        return Ok(PauseSource::BuiltIn);
    };
    let record = match daemon.images.resolve(&reference.to_string()).map_err(ToStatus::to_status)? {
        Some(record) => record,
        None => crate::metrics::timed_pull(daemon.puller.pull(reference.clone(), Credentials::Anonymous))
            .await
            .map_err(ToStatus::to_status)?,
    };
    // The pods running from its layers keep them, whatever RemoveImage does to its tags.
    let holder = Holder::new(PAUSE_HOLDER).expect("a valid holder name");
    daemon.images.hold(&holder, &record.id).map_err(ToStatus::to_status)?;
    let args: Vec<String> = record.config.entrypoint.iter().chain(&record.config.cmd).cloned().collect();
    if args.is_empty() {
        return Err(Status::failed_precondition(format!(
            "pod.pause_image {reference}: the image has neither an entrypoint nor a cmd to run"
        )));
    }
    Ok(PauseSource::Image {
        lowers: record.chain_ids.iter().rev().map(|c| daemon.images.layer_path(c)).collect(),
        args,
        env: record.config.env.clone(),
    })
}
