//! Containers: per iteration one pod on the pod network, then CreateContainer and StartContainer
//! of a `sleep` container in it, each timed apart; then, while it runs, the resident memory of
//! the process that keeps the pod's containers (crisp's `crisp-monitor`, containerd's shim).
//! Every pod is stopped and removed before the next one.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, ImageStatusRequest, PodSandboxConfig,
    PullImageRequest, RemoveContainerRequest, RemoveImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use serde::Serialize;

use super::runp::prepare;
use super::{BenchError, BenchReport, Summary, Target, call, order};
use crate::lab::image::LabImage;
use crate::suite::TestImages;
use crate::suite::pod_config::{PodSpec, RUN_LABEL, fresh_token, selector};

/// The container's image: busybox, whose `sleep` runs until the pod goes.
const IMAGE: LabImage = LabImage::Busybox;

/// The results: the two timings, and a line per runtime with the pod's keeper's memory.
#[derive(Debug, Clone, Serialize)]
pub struct ContainersReport {
    pub create: BenchReport,
    pub start: BenchReport,
    pub runtimes: Vec<RuntimeLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeLine {
    pub endpoint: String,
    /// `runtime_name runtime_version`, as Version reports them.
    pub runtime: String,
    pub create: Summary,
    pub start: Summary,
    /// The resident memory of the process that keeps each pod's containers, if one was found.
    pub keeper: Option<KeeperMemory>,
}

/// VmRSS of the per-pod process (`crisp-monitor`, `containerd-shim*`, `conmon*`) whose command
/// line names the pod, read from `/proc` while the pod's container ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeeperMemory {
    /// The keeper's program name, as its command line gives it.
    pub process: String,
    pub p50_kib: u64,
    pub max_kib: u64,
}

/// Program names of the per-pod processes the benchmark knows.
const KEEPERS: [&str; 3] = ["crisp-monitor", "containerd-shim", "conmon"];

/// Runs `count` pods with one container each on every target, interleaving the targets, after
/// one untimed pod each (it may pull the pause image); `IMAGE` is pulled first where absent, and
/// removed at the end where this run pulled it.
pub async fn run(targets: &[Target], images: &TestImages, count: NonZeroUsize) -> Result<ContainersReport, BenchError> {
    let run_token = fresh_token();
    let reference = images.reference(IMAGE);
    let mut prepared = Vec::with_capacity(targets.len());
    let mut pulled = Vec::with_capacity(targets.len());
    for target in targets {
        let ready = prepare(target).await?;
        pulled.push(pull_if_absent(target, &reference).await?);
        let config = PodSpec::new("bench-warm-up", &run_token).config(&ready.cgroup_parent);
        one_pod(target, config, &reference, &run_token).await?;
        prepared.push(ready);
    }

    let mut create_times = vec![Vec::with_capacity(count.get()); targets.len()];
    let mut start_times = vec![Vec::with_capacity(count.get()); targets.len()];
    let mut keepers: Vec<Vec<(String, u64)>> = vec![Vec::new(); targets.len()];
    let measured = async {
        for iteration in 0..count.get() {
            for index in order(targets.len(), iteration) {
                let config = PodSpec::new("bench", &run_token).config(&prepared[index].cgroup_parent);
                let sample = one_pod(&targets[index], config, &reference, &run_token).await?;
                create_times[index].push(sample.create);
                start_times[index].push(sample.start);
                keepers[index].extend(sample.keeper);
            }
        }
        Ok::<_, BenchError>(())
    };
    let result = measured.await;
    for (target, pulled) in targets.iter().zip(pulled) {
        if pulled {
            let request = RemoveImageRequest { image: Some(spec(&reference)) };
            call(target, "RemoveImage", target.client.image.clone().remove_image(request)).await?;
        }
    }
    result?;

    let endpoints: Vec<_> = targets.iter().map(|t| &t.endpoint).collect();
    let create = BenchReport::new(
        "containers-create",
        format!("CreateContainer of a `sleep` container of {IMAGE} in a READY pod"),
        count.get(),
        endpoints.iter().copied().zip(create_times).collect(),
        vec!["one untimed pod and container ran first on each endpoint".into()],
    );
    let start = BenchReport::new(
        "containers-start",
        "StartContainer of that container".into(),
        count.get(),
        endpoints.iter().copied().zip(start_times).collect(),
        vec![],
    );
    let runtimes = prepared
        .into_iter()
        .zip(create.endpoints.iter().zip(&start.endpoints))
        .zip(keepers)
        .map(|((prepared, (create, start)), keeper)| RuntimeLine {
            endpoint: create.endpoint.clone(),
            runtime: prepared.runtime,
            create: create.summary,
            start: start.summary,
            keeper: keeper_memory(keeper),
        })
        .collect();
    Ok(ContainersReport { create, start, runtimes })
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

struct Sample {
    create: Duration,
    start: Duration,
    /// The keeper's name and VmRSS in KiB, if found.
    keeper: Option<(String, u64)>,
}

/// Runs a pod, creates and starts its container (each timed), reads the keeper's memory, then
/// stops and removes container and pod: the pod is removed whatever failed before.
async fn one_pod(
    target: &Target,
    pod: PodSandboxConfig,
    reference: &str,
    run_token: &str,
) -> Result<Sample, BenchError> {
    let request = RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: String::new() };
    let pod_id =
        call(target, "RunPodSandbox", target.client.runtime.clone().run_pod_sandbox(request)).await?.pod_sandbox_id;
    let sample = container(target, &pod_id, pod, reference, run_token).await;
    let stop = StopPodSandboxRequest { pod_sandbox_id: pod_id.clone() };
    let stopped = call(target, "StopPodSandbox", target.client.runtime.clone().stop_pod_sandbox(stop)).await;
    let remove = RemovePodSandboxRequest { pod_sandbox_id: pod_id };
    let removed = call(target, "RemovePodSandbox", target.client.runtime.clone().remove_pod_sandbox(remove)).await;
    let sample = sample?;
    stopped?;
    removed?;
    Ok(sample)
}

async fn container(
    target: &Target,
    pod_id: &str,
    pod: PodSandboxConfig,
    reference: &str,
    run_token: &str,
) -> Result<Sample, BenchError> {
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: format!("bench-{}", fresh_token()), attempt: 0 }),
        image: Some(ImageSpec { user_specified_image: reference.to_owned(), ..spec(reference) }),
        command: vec!["sleep".into(), "3600".into()],
        labels: selector(&[(RUN_LABEL, run_token)]),
        linux: Some(Default::default()),
        ..Default::default()
    };
    let request =
        CreateContainerRequest { pod_sandbox_id: pod_id.to_owned(), config: Some(config), sandbox_config: Some(pod) };
    let started = Instant::now();
    let id =
        call(target, "CreateContainer", target.client.runtime.clone().create_container(request)).await?.container_id;
    let create = started.elapsed();

    let started = Instant::now();
    let request = StartContainerRequest { container_id: id.clone() };
    let ran = call(target, "StartContainer", target.client.runtime.clone().start_container(request)).await;
    let start = started.elapsed();
    let keeper = if ran.is_ok() { keeper_rss(pod_id).await } else { None };

    let stop = StopContainerRequest { container_id: id.clone(), timeout: 0 };
    let stopped = call(target, "StopContainer", target.client.runtime.clone().stop_container(stop)).await;
    let remove = RemoveContainerRequest { container_id: id };
    let removed = call(target, "RemoveContainer", target.client.runtime.clone().remove_container(remove)).await;
    ran?;
    stopped?;
    removed?;
    Ok(Sample { create, start, keeper })
}

/// The keeper of pod `pod_id` on this host and its VmRSS in KiB: a process of one of the
/// [`KEEPERS`] programs whose command line names the pod (crisp's monitor runs on
/// `<state>/pods/<id>/monitor`, containerd's shim with `-id <id>`). None for a runtime on
/// another host or with another design.
async fn keeper_rss(pod_id: &str) -> Option<(String, u64)> {
    let pod_id = pod_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let entries = std::fs::read_dir("/proc").ok()?;
        entries.flatten().find_map(|entry| {
            entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let program = keeper_program(&cmdline, &pod_id)?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            Some((program, vm_rss_kib(&status)?))
        })
    })
    .await
    .ok()
    .flatten()
}

/// The program name of a NUL-separated command line if it is a keeper's and names `pod_id`.
fn keeper_program(cmdline: &[u8], pod_id: &str) -> Option<String> {
    let args: Vec<String> =
        cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let program = Path::new(args.first()?).file_name()?.to_string_lossy().into_owned();
    let is_keeper = KEEPERS.iter().any(|k| program.starts_with(k));
    (is_keeper && args.iter().skip(1).any(|a| a.contains(pod_id))).then_some(program)
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The median and the largest of the samples, named after the first one's program.
fn keeper_memory(samples: Vec<(String, u64)>) -> Option<KeeperMemory> {
    let process = samples.first()?.0.clone();
    let mut kib: Vec<u64> = samples.into_iter().map(|(_, kib)| kib).collect();
    kib.sort_unstable();
    let p50 = kib[kib.len().div_ceil(2) - 1];
    Some(KeeperMemory { process, p50_kib: p50, max_kib: *kib.last()? })
}

impl fmt::Display for ContainersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.create)?;
        writeln!(f, "{}", self.start)?;
        let seconds = |s: f64| format!("{s:.3}s");
        for line in &self.runtimes {
            let keeper = match &line.keeper {
                Some(k) => format!("{} RSS p50 {} KiB max {} KiB", k.process, k.p50_kib, k.max_kib),
                None => "per-pod process RSS n/a".to_owned(),
            };
            writeln!(
                f,
                "{} ({}): CreateContainer p50 {} p90 {}; StartContainer p50 {} p90 {}; {keeper}",
                line.endpoint,
                line.runtime,
                seconds(line.create.p50),
                seconds(line.create.p90),
                seconds(line.start.p50),
                seconds(line.start.p90),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepers_by_command_line() {
        let id = "4bf654e0e88f97cd9f36f00469c708580cecd9f905d4dd43011eb86104b98c41";
        let monitor = format!("/usr/local/bin/crisp-monitor\0/run/crisp/pods/{id}/monitor\0");
        assert_eq!(keeper_program(monitor.as_bytes(), id).as_deref(), Some("crisp-monitor"));
        let shim = format!("/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\0{id}\0-address\0/run/c.sock\0");
        assert_eq!(keeper_program(shim.as_bytes(), id).as_deref(), Some("containerd-shim-runc-v2"));
        assert_eq!(keeper_program(monitor.as_bytes(), &"0".repeat(64)), None);
        let other = format!("/bin/sleep\0{id}\0");
        assert_eq!(keeper_program(other.as_bytes(), id), None);
        assert_eq!(keeper_program(b"", id), None);
    }

    #[test]
    fn rss_and_its_summary() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t     912 kB\nThreads: 1\n"), Some(912));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        let samples = vec![
            ("crisp-monitor".to_owned(), 900),
            ("crisp-monitor".to_owned(), 1000),
            ("crisp-monitor".to_owned(), 800),
        ];
        assert_eq!(
            keeper_memory(samples),
            Some(KeeperMemory { process: "crisp-monitor".into(), p50_kib: 900, max_kib: 1000 })
        );
        assert_eq!(keeper_memory(vec![]), None);
    }
}
