//! The pod every pod workload runs: a pod on the pod network with one `sleep` container of the
//! lab's busybox, as the kubelet would ask for it; and what a target needs before it runs any.

use std::time::{Duration, Instant};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, ImageStatusRequest, PodSandboxConfig,
    PullImageRequest, RemoveContainerRequest, RemoveImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StatusRequest, StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};

use super::{BenchError, Target, call};
use crate::lab::image::LabImage;
use crate::suite::TestImages;
use crate::suite::pod_config::{PodSpec, RUN_LABEL, cgroup_parent, fresh_token, selector};

/// The container's image: busybox, whose `sleep` runs until the pod goes.
pub const IMAGE: LabImage = LabImage::Busybox;

/// A target ready to run the workload's pods.
pub(super) struct Prepared {
    /// The cgroup parent its pods get, as critest picks it.
    cgroup_parent: String,
    /// `runtime_name runtime_version`, as Version reports them.
    pub(super) runtime: String,
    reference: String,
    /// Whether [`prepare`] pulled the image, so that [`Prepared::finish`] removes it again.
    pulled: bool,
    /// Every pod of the run carries it as a label: one left by a failure is easy to find.
    pub(super) run_token: String,
}

/// Checks that `target`'s pod network is ready and pulls the container's image where absent.
pub(super) async fn prepare(target: &Target, images: &TestImages) -> Result<Prepared, BenchError> {
    let status = call(target, "Status", target.client.runtime.clone().status(StatusRequest { verbose: false })).await?;
    let network = status.status.unwrap_or_default().conditions.into_iter().find(|c| c.r#type == "NetworkReady");
    let why = match network {
        Some(network) if network.status => None,
        Some(network) => Some(format!("NetworkReady false: {}: {}", network.reason, network.message)),
        None => Some("no NetworkReady condition".to_owned()),
    };
    if let Some(why) = why {
        return Err(BenchError::NetworkNotReady { endpoint: target.endpoint.clone(), why });
    }
    let request = VersionRequest { version: "v1".into() };
    let version = call(target, "Version", target.client.runtime.clone().version(request)).await?;
    let reference = images.reference(IMAGE);
    let pulled = pull_if_absent(target, &reference).await?;
    Ok(Prepared {
        cgroup_parent: cgroup_parent(&mut target.client.runtime.clone()).await,
        runtime: format!("{} {}", version.runtime_name, version.runtime_version),
        reference,
        pulled,
        run_token: fresh_token(),
    })
}

/// [`prepare`] of every target; if one fails, those prepared before it are finished first.
pub(super) async fn prepare_all(targets: &[Target], images: &TestImages) -> Result<Vec<Prepared>, BenchError> {
    let mut prepared: Vec<Prepared> = Vec::with_capacity(targets.len());
    for target in targets {
        match prepare(target, images).await {
            Ok(ready) => prepared.push(ready),
            Err(error) => {
                // The failure to prepare is the one to report; this clean-up is best effort.
                let _ = finish_all(targets, &prepared).await;
                return Err(error);
            }
        }
    }
    Ok(prepared)
}

/// [`Prepared::finish`] of every target, each tried whatever failed before: the first error.
pub(super) async fn finish_all<'a>(
    targets: &[Target],
    prepared: impl IntoIterator<Item = &'a Prepared>,
) -> Result<(), BenchError> {
    let mut finished = Ok(());
    for (target, prepared) in targets.iter().zip(prepared) {
        finished = finished.and(prepared.finish(target).await);
    }
    finished
}

impl Prepared {
    /// A fresh pod's config, named after `purpose`.
    pub(super) fn pod(&self, purpose: &str) -> PodSandboxConfig {
        PodSpec::new(purpose, &self.run_token).config(&self.cgroup_parent)
    }

    /// Removes the image if [`prepare`] pulled it.
    pub(super) async fn finish(&self, target: &Target) -> Result<(), BenchError> {
        if self.pulled {
            let request = RemoveImageRequest { image: Some(spec(&self.reference)) };
            call(target, "RemoveImage", target.client.image.clone().remove_image(request)).await?;
        }
        Ok(())
    }
}

fn spec(reference: &str) -> ImageSpec {
    ImageSpec { image: reference.to_owned(), ..Default::default() }
}

/// Pulls `reference` unless the target has it; whether it pulled.
async fn pull_if_absent(target: &Target, reference: &str) -> Result<bool, BenchError> {
    let request = ImageStatusRequest { image: Some(spec(reference)), verbose: false };
    if call(target, "ImageStatus", target.client.image.clone().image_status(request)).await?.image.is_some() {
        return Ok(false);
    }
    let request = PullImageRequest { image: Some(spec(reference)), auth: None, sandbox_config: None };
    call(target, "PullImage", target.client.image.clone().pull_image(request)).await?;
    Ok(true)
}

/// A pod whose container was started.
pub(super) struct Running {
    pub(super) pod_id: String,
    pub(super) container_id: String,
    /// RunPodSandbox, CreateContainer, StartContainer.
    pub(super) times: [Duration; 3],
}

/// Runs pod `pod`, then creates and starts its container, each step timed. Nothing is left when
/// a step fails: a pod that ran is removed before the error returns.
pub(super) async fn launch(target: &Target, prepared: &Prepared, pod: PodSandboxConfig) -> Result<Running, BenchError> {
    let started = Instant::now();
    let request = RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: String::new() };
    let pod_id =
        call(target, "RunPodSandbox", target.client.runtime.clone().run_pod_sandbox(request)).await?.pod_sandbox_id;
    let run = started.elapsed();
    match container(target, prepared, &pod_id, pod).await {
        Ok((container_id, create, start)) => Ok(Running { pod_id, container_id, times: [run, create, start] }),
        Err(error) => {
            // The step's failure is the one to report; the pod's removal is best effort.
            let _ = remove_pod(target, &pod_id).await;
            Err(error)
        }
    }
}

/// Creates and starts the `sleep` container in pod `pod_id`: its ID and the two times.
pub(super) async fn container(
    target: &Target,
    prepared: &Prepared,
    pod_id: &str,
    pod: PodSandboxConfig,
) -> Result<(String, Duration, Duration), BenchError> {
    let request = create_request(prepared, pod_id, pod);
    let started = Instant::now();
    let id =
        call(target, "CreateContainer", target.client.runtime.clone().create_container(request)).await?.container_id;
    let create = started.elapsed();
    let started = Instant::now();
    let request = StartContainerRequest { container_id: id.clone() };
    call(target, "StartContainer", target.client.runtime.clone().start_container(request)).await?;
    Ok((id, create, started.elapsed()))
}

/// CreateContainer of a fresh `sleep` container in pod `pod_id`, made with config `pod`.
pub(super) fn create_request(prepared: &Prepared, pod_id: &str, pod: PodSandboxConfig) -> CreateContainerRequest {
    let reference = &prepared.reference;
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: format!("bench-{}", fresh_token()), attempt: 0 }),
        image: Some(ImageSpec { user_specified_image: reference.clone(), ..spec(reference) }),
        command: vec!["sleep".into(), "3600".into()],
        labels: selector(&[(RUN_LABEL, &prepared.run_token)]),
        linux: Some(Default::default()),
        ..Default::default()
    };
    CreateContainerRequest { pod_sandbox_id: pod_id.to_owned(), config: Some(config), sandbox_config: Some(pod) }
}

/// Stops and removes the container, then the pod, each step timed: StopContainer,
/// RemoveContainer, StopPodSandbox, RemovePodSandbox. The pod is removed whatever failed before.
pub(super) async fn tear_down(target: &Target, running: Running) -> Result<[Duration; 4], BenchError> {
    let containers = async {
        let started = Instant::now();
        let request = StopContainerRequest { container_id: running.container_id.clone(), timeout: 0 };
        call(target, "StopContainer", target.client.runtime.clone().stop_container(request)).await?;
        let stop = started.elapsed();
        let started = Instant::now();
        let request = RemoveContainerRequest { container_id: running.container_id.clone() };
        call(target, "RemoveContainer", target.client.runtime.clone().remove_container(request)).await?;
        Ok::<_, BenchError>((stop, started.elapsed()))
    };
    let containers = containers.await;
    let (stop_pod, remove_pod) = timed_pod_removal(target, &running.pod_id).await?;
    let (stop, remove) = containers?;
    Ok([stop, remove, stop_pod, remove_pod])
}

/// StopPodSandbox, then RemovePodSandbox even if stopping failed; the runtime takes the pod's
/// containers with it.
pub(super) async fn remove_pod(target: &Target, pod_id: &str) -> Result<(), BenchError> {
    timed_pod_removal(target, pod_id).await.map(drop)
}

async fn timed_pod_removal(target: &Target, pod_id: &str) -> Result<(Duration, Duration), BenchError> {
    let started = Instant::now();
    let request = StopPodSandboxRequest { pod_sandbox_id: pod_id.to_owned() };
    let stopped = call(target, "StopPodSandbox", target.client.runtime.clone().stop_pod_sandbox(request)).await;
    let stop = started.elapsed();
    let started = Instant::now();
    let request = RemovePodSandboxRequest { pod_sandbox_id: pod_id.to_owned() };
    call(target, "RemovePodSandbox", target.client.runtime.clone().remove_pod_sandbox(request)).await?;
    let remove = started.elapsed();
    stopped?;
    Ok((stop, remove))
}
