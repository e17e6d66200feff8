//! Load (issue 9): P pods of C running `sleep` containers held while R readers call the read
//! RPCs in a loop and W churners take pods through their whole life, for D seconds. Measured:
//! each RPC's latencies and count, every error, and the daemon's RSS, open fds and threads
//! before the pods are made, at their most during the load, and after every pod is gone: a
//! figure that stays up after is a leak.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    ContainerStatsRequest, ContainerStatusRequest, ListContainerStatsRequest, ListContainersRequest,
    ListPodSandboxRequest, ListPodSandboxStatsRequest, PodSandboxFilter, PodSandboxStatusRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest,
};
use serde::Serialize;

use super::pods::{self, Prepared};
use super::{BenchError, Summary, Target, call, host};
use crate::suite::TestImages;
use crate::suite::pod_config::{RUN_LABEL, selector};

/// How often the daemon's RSS, fds and threads are read during the load.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long a client waits before calling again a daemon that is down.
const RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub pods: usize,
    pub containers: NonZeroUsize,
    pub readers: usize,
    pub churners: usize,
    /// How long [`run`] keeps the load up.
    pub duration: Duration,
    /// Counts apart instead of as an error, and keeps calling past, a call the daemon could not
    /// answer: `Unavailable`, or a status the client made when the connection broke under the
    /// call. For a daemon that is restarted under the load.
    pub tolerate_unavailable: bool,
}

/// The pods held through the load, and their containers, in the order they were made.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub pods: Vec<HeldPod>,
    /// The label every pod of the run carries, held or churned.
    pub run_label: (String, String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeldPod {
    pub pod_id: String,
    pub container_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub endpoint: String,
    /// `runtime_name runtime_version`, as Version reports them.
    pub runtime: String,
    pub pods: usize,
    pub containers_per_pod: usize,
    pub readers: usize,
    pub churners: usize,
    /// How long the load was kept up.
    pub seconds: f64,
    pub rpcs: Vec<RpcLine>,
    /// Pods the churners took through their whole life.
    pub churn_cycles: usize,
    /// Every distinct error, with how often it came.
    pub errors: Vec<ErrorLine>,
    /// Calls the daemon could not answer, being down, when that is tolerated.
    pub unavailable: usize,
    pub daemon: DaemonUsage,
    /// Every pod the run made, held or churned, whether it ran whole or not: what a check for
    /// leftovers looks for.
    #[serde(skip)]
    pub pod_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RpcLine {
    pub rpc: &'static str,
    pub calls: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ErrorLine {
    pub rpc: &'static str,
    pub code: String,
    pub message: String,
    pub count: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DaemonUsage {
    pub before: Usage,
    /// The most of each figure seen while the load ran.
    pub during_max: Usage,
    pub after: Usage,
}

/// One reading of the daemon's process; a figure is None when this host cannot see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
}

impl Usage {
    /// The daemon behind `target`'s socket, read now.
    pub async fn read(target: &Target) -> Usage {
        let Some(pid) = host::daemon_pid(&target.endpoint).await else { return Usage::default() };
        tokio::task::spawn_blocking(move || Usage::of(pid)).await.unwrap_or_default()
    }

    fn of(pid: u32) -> Usage {
        Usage { rss_kib: host::rss_kib(pid), fds: host::fd_count(pid), threads: host::threads(pid) }
    }

    fn max(self, other: Usage) -> Usage {
        let max = |a: Option<u64>, b: Option<u64>| a.max(b);
        Usage {
            rss_kib: max(self.rss_kib, other.rss_kib),
            fds: max(self.fds, other.fds),
            threads: max(self.threads, other.threads),
        }
    }
}

/// The load for `config.duration`.
pub async fn run(target: &Target, images: &TestImages, config: &LoadConfig) -> Result<LoadReport, BenchError> {
    let duration = config.duration;
    run_while(target, images, config, |_| tokio::time::sleep(duration)).await.map(|(report, ())| report)
}

/// The load for as long as `during` takes, which is handed the held pods once they run; then
/// every pod is removed. The report's errors are the load's; an error making or removing the
/// held pods fails the run.
pub async fn run_while<F: Future<Output = T>, T>(
    target: &Target,
    images: &TestImages,
    config: &LoadConfig,
    during: impl FnOnce(Held) -> F,
) -> Result<(LoadReport, T), BenchError> {
    let prepared = Arc::new(pods::prepare(target, images).await?);
    let measured = measure(target, &prepared, config, during).await;
    let swept = sweep(target, &prepared).await;
    let finished = prepared.finish(target).await;
    let (mut report, value) = measured?;
    report.pod_ids.extend(swept?);
    finished?;
    report.daemon.after = Usage::read(target).await;
    Ok((report, value))
}

async fn measure<F: Future<Output = T>, T>(
    target: &Target,
    prepared: &Arc<Prepared>,
    config: &LoadConfig,
    during: impl FnOnce(Held) -> F,
) -> Result<(LoadReport, T), BenchError> {
    let warm_up = pods::launch(target, prepared, prepared.pod("bench-warm-up")).await?;
    pods::remove_pod(target, &warm_up.pod_id).await?;
    let mut pod_ids = vec![warm_up.pod_id];
    let before = Usage::read(target).await;

    let mut held = Vec::with_capacity(config.pods);
    for _ in 0..config.pods {
        // A pod left half made by a failure here is the sweep's to remove.
        let pod = prepared.pod("bench-load");
        let running = pods::launch(target, prepared, pod.clone()).await?;
        let mut container_ids = vec![running.container_id];
        for _ in 1..config.containers.get() {
            container_ids.push(pods::container(target, prepared, &running.pod_id, pod.clone()).await?.0);
        }
        pod_ids.push(running.pod_id.clone());
        held.push(HeldPod { pod_id: running.pod_id, container_ids });
    }
    let held = Held { pods: held, run_label: (RUN_LABEL.to_owned(), prepared.run_token.clone()) };

    let load = Load {
        target: target.clone(),
        held: Arc::new(held.clone()),
        stop: AtomicBool::new(false),
        errors: Mutex::default(),
        unavailable: Mutex::default(),
        made: Mutex::new(pod_ids),
        tolerate_unavailable: config.tolerate_unavailable,
    };
    let load = Arc::new(load);
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    for reader in 0..config.readers {
        readers.spawn(Arc::clone(&load).read(reader));
    }
    let mut churners = tokio::task::JoinSet::new();
    for _ in 0..config.churners {
        churners.spawn(Arc::clone(&load).churn(Arc::clone(prepared)));
    }
    let sampler = tokio::spawn(Arc::clone(&load).sample());
    let value = during(held.clone()).await;
    load.stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();

    let mut samples: HashMap<&'static str, Vec<Duration>> = HashMap::new();
    let mut merge = |more: HashMap<&'static str, Vec<Duration>>| {
        for (rpc, times) in more {
            samples.entry(rpc).or_default().extend(times);
        }
    };
    while let Some(joined) = readers.join_next().await {
        merge(joined.expect("a reader does not panic"));
    }
    let mut churn_cycles = 0;
    while let Some(joined) = churners.join_next().await {
        let (times, cycles) = joined.expect("a churner does not panic");
        merge(times);
        churn_cycles += cycles;
    }
    let during_max = sampler.await.expect("the sampler does not panic");

    for pod in &held.pods {
        pods::remove_pod(target, &pod.pod_id).await?;
    }
    let mut rpcs: Vec<_> = samples
        .into_iter()
        .filter_map(|(rpc, times)| Some(RpcLine { rpc, calls: times.len(), summary: Summary::of(&times)? }))
        .collect();
    rpcs.sort_by_key(|line| line.rpc);
    let errors = std::mem::take(&mut *load.errors.lock().expect("no holder panics"));
    let errors = errors.into_iter().map(|((rpc, code, message), count)| ErrorLine { rpc, code, message, count });
    let unavailable = *load.unavailable.lock().expect("no holder panics");
    let pod_ids = std::mem::take(&mut *load.made.lock().expect("no holder panics"));
    let report = LoadReport {
        endpoint: target.endpoint.to_string(),
        runtime: prepared.runtime.clone(),
        pods: config.pods,
        containers_per_pod: config.containers.get(),
        readers: config.readers,
        churners: config.churners,
        seconds,
        rpcs,
        churn_cycles,
        errors: errors.collect(),
        unavailable,
        daemon: DaemonUsage { before, during_max, after: Usage::default() },
        pod_ids,
    };
    Ok((report, value))
}

/// Whether the daemon never answered: it was not there to (`Unavailable`), or the client made
/// the status from its own transport's error (a broken connection: `Unknown`, `Cancelled`),
/// which a status the daemon sent never carries.
fn unanswered(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}

/// Removes every pod of the run still there: those a churner could not finish with when the
/// load stopped or the daemon went down under it. Their IDs.
async fn sweep(target: &Target, prepared: &Prepared) -> Result<Vec<String>, BenchError> {
    let filter =
        PodSandboxFilter { label_selector: selector(&[(RUN_LABEL, &prepared.run_token)]), ..Default::default() };
    let request = ListPodSandboxRequest { filter: Some(filter) };
    let pods = call(target, "ListPodSandbox", target.client.runtime.clone().list_pod_sandbox(request)).await?;
    let mut removed = Vec::with_capacity(pods.items.len());
    for pod in pods.items {
        pods::remove_pod(target, &pod.id).await?;
        removed.push(pod.id);
    }
    Ok(removed)
}

type Samples = HashMap<&'static str, Vec<Duration>>;

/// What the load's tasks share.
struct Load {
    target: Target,
    held: Arc<Held>,
    stop: AtomicBool,
    /// By RPC, code and message.
    errors: Mutex<BTreeMap<(&'static str, String, String), usize>>,
    unavailable: Mutex<usize>,
    made: Mutex<Vec<String>>,
    tolerate_unavailable: bool,
}

/// How a call went, once its error, if any, is counted.
enum Outcome<T> {
    Answered(T),
    /// Tolerated: the daemon was down.
    Down,
    Failed,
}

impl Load {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Times `response` into `samples` when it is answered, counts its error otherwise.
    async fn timed<T>(
        &self,
        samples: &mut Samples,
        rpc: &'static str,
        response: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Outcome<T> {
        let started = Instant::now();
        match call(&self.target, rpc, response).await {
            Ok(answer) => {
                samples.entry(rpc).or_default().push(started.elapsed());
                Outcome::Answered(answer)
            }
            Err(BenchError::Rpc { status, .. }) if self.tolerate_unavailable && unanswered(&status) => {
                *self.unavailable.lock().expect("no holder panics") += 1;
                tokio::time::sleep(RETRY_EVERY).await;
                Outcome::Down
            }
            Err(error) => {
                let (code, message) = match error {
                    BenchError::Rpc { status, .. } => (format!("{:?}", status.code()), status.message().to_owned()),
                    other => ("Timeout".to_owned(), other.to_string()),
                };
                *self.errors.lock().expect("no holder panics").entry((rpc, code, message)).or_default() += 1;
                Outcome::Failed
            }
        }
    }

    /// Every read RPC in turn, on the held pods in turn, until the load stops.
    async fn read(self: Arc<Self>, reader: usize) -> Samples {
        let mut samples = Samples::new();
        let runtime = self.target.client.runtime.clone();
        let held = &self.held.pods;
        let mut turn = reader;
        while !self.stopped() {
            self.timed(
                &mut samples,
                "ListPodSandbox",
                runtime.clone().list_pod_sandbox(ListPodSandboxRequest::default()),
            )
            .await;
            self.timed(
                &mut samples,
                "ListContainers",
                runtime.clone().list_containers(ListContainersRequest::default()),
            )
            .await;
            let request = ListContainerStatsRequest::default();
            self.timed(&mut samples, "ListContainerStats", runtime.clone().list_container_stats(request)).await;
            let request = ListPodSandboxStatsRequest::default();
            self.timed(&mut samples, "ListPodSandboxStats", runtime.clone().list_pod_sandbox_stats(request)).await;
            if let Some(pod) = held.get(turn % held.len().max(1)) {
                let request = PodSandboxStatusRequest { pod_sandbox_id: pod.pod_id.clone(), verbose: false };
                self.timed(&mut samples, "PodSandboxStatus", runtime.clone().pod_sandbox_status(request)).await;
                let container_id = &pod.container_ids[(turn / held.len()) % pod.container_ids.len()];
                let request = ContainerStatusRequest { container_id: container_id.clone(), verbose: false };
                self.timed(&mut samples, "ContainerStatus", runtime.clone().container_status(request)).await;
                let request = ContainerStatsRequest { container_id: container_id.clone() };
                self.timed(&mut samples, "ContainerStats", runtime.clone().container_stats(request)).await;
            }
            turn += 1;
        }
        samples
    }

    /// Pods through their whole life, one after another, until the load stops: how many.
    async fn churn(self: Arc<Self>, prepared: Arc<Prepared>) -> (Samples, usize) {
        let mut samples = Samples::new();
        let mut cycles = 0;
        while !self.stopped() {
            if self.churn_one(&mut samples, &prepared).await {
                cycles += 1;
            }
        }
        (samples, cycles)
    }

    /// One pod: RunPodSandbox, CreateContainer, StartContainer, StopContainer, RemoveContainer,
    /// StopPodSandbox, RemovePodSandbox. After a failed step the pod is removed if it is known;
    /// one whose RunPodSandbox went unanswered is left to [`sweep`]. Whether every step passed.
    async fn churn_one(&self, samples: &mut Samples, prepared: &Prepared) -> bool {
        let target = &self.target;
        let runtime = || target.client.runtime.clone();
        let config = prepared.pod("bench-churn");
        let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
        let Outcome::Answered(pod) = self.timed(samples, "RunPodSandbox", runtime().run_pod_sandbox(request)).await
        else {
            return false;
        };
        let pod_id = pod.pod_sandbox_id;
        self.made.lock().expect("no holder panics").push(pod_id.clone());
        let container = async {
            let request = pods::create_request(prepared, &pod_id, config);
            let Outcome::Answered(created) =
                self.timed(samples, "CreateContainer", runtime().create_container(request)).await
            else {
                return false;
            };
            let container_id = created.container_id;
            let request = StartContainerRequest { container_id: container_id.clone() };
            let started = matches!(
                self.timed(samples, "StartContainer", runtime().start_container(request)).await,
                Outcome::Answered(_)
            );
            let request = StopContainerRequest { container_id: container_id.clone(), timeout: 0 };
            let stopped = started
                && matches!(
                    self.timed(samples, "StopContainer", runtime().stop_container(request)).await,
                    Outcome::Answered(_)
                );
            let request = RemoveContainerRequest { container_id };
            stopped
                && matches!(
                    self.timed(samples, "RemoveContainer", runtime().remove_container(request)).await,
                    Outcome::Answered(_)
                )
        };
        let whole = container.await;
        self.remove_pod(samples, &pod_id).await && whole
    }

    /// StopPodSandbox and RemovePodSandbox, called again while the daemon is down.
    async fn remove_pod(&self, samples: &mut Samples, pod_id: &str) -> bool {
        let runtime = || self.target.client.runtime.clone();
        loop {
            let request = StopPodSandboxRequest { pod_sandbox_id: pod_id.to_owned() };
            match self.timed(samples, "StopPodSandbox", runtime().stop_pod_sandbox(request)).await {
                Outcome::Answered(_) => break,
                Outcome::Down if !self.stopped() => continue,
                Outcome::Down | Outcome::Failed => return false,
            }
        }
        loop {
            let request = RemovePodSandboxRequest { pod_sandbox_id: pod_id.to_owned() };
            match self.timed(samples, "RemovePodSandbox", runtime().remove_pod_sandbox(request)).await {
                Outcome::Answered(_) => return true,
                Outcome::Down if !self.stopped() => continue,
                Outcome::Down | Outcome::Failed => return false,
            }
        }
    }

    /// The daemon's usage at its most until the load stops. The daemon is looked up again
    /// whenever it cannot be read: a restart gives it a new pid.
    async fn sample(self: Arc<Self>) -> Usage {
        let mut most = Usage::default();
        while !self.stopped() {
            most = most.max(Usage::read(&self.target).await);
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        most
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} pods x {} `sleep` containers held; {} readers and {} churners for {:.1}s on {} ({})",
            self.pods, self.containers_per_pod, self.readers, self.churners, self.seconds, self.endpoint, self.runtime
        )?;
        let width = self.rpcs.iter().map(|l| l.rpc.len()).chain(["rpc".len()]).max().unwrap_or_default();
        writeln!(f, "{:<width$}  {:>8}  {:>9}  {:>9}  {:>9}", "rpc", "calls", "p50", "p99", "max")?;
        for line in &self.rpcs {
            let ms = |s: f64| format!("{:.1}ms", s * 1000.0);
            let Summary { p50, p99, max, .. } = line.summary;
            writeln!(f, "{:<width$}  {:>8}  {:>9}  {:>9}  {:>9}", line.rpc, line.calls, ms(p50), ms(p99), ms(max))?;
        }
        writeln!(f, "churn cycles: {}", self.churn_cycles)?;
        if self.unavailable > 0 {
            writeln!(f, "calls the daemon, down, did not answer (tolerated): {}", self.unavailable)?;
        }
        let errors: usize = self.errors.iter().map(|e| e.count).sum();
        writeln!(f, "errors: {errors}")?;
        for error in &self.errors {
            writeln!(f, "  {}x {}: {}: {}", error.count, error.rpc, error.code, error.message)?;
        }
        let figure = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| v.to_string());
        writeln!(f, "daemon          {:>10}  {:>10}  {:>10}", "before", "during max", "after")?;
        let DaemonUsage { before, during_max, after } = self.daemon;
        for (name, pick) in [
            ("RSS (KiB)", (|u: &Usage| u.rss_kib) as fn(&Usage) -> Option<u64>),
            ("open fds", |u: &Usage| u.fds),
            ("threads", |u: &Usage| u.threads),
        ] {
            let [b, d, a] = [&before, &during_max, &after].map(|u| figure(pick(u)));
            writeln!(f, "{name:<16}{b:>10}  {d:>10}  {a:>10}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keeps_the_most_of_each_figure() {
        let a = Usage { rss_kib: Some(10), fds: Some(5), threads: None };
        let b = Usage { rss_kib: Some(8), fds: Some(7), threads: Some(3) };
        assert_eq!(a.max(b), Usage { rss_kib: Some(10), fds: Some(7), threads: Some(3) });
        let own = Usage::of(std::process::id());
        assert!(own.fds.is_some_and(|n| n > 0) && own.threads.is_some_and(|n| n > 0), "{own:?}");
    }

    #[test]
    fn report_lists_rpcs_errors_and_usage() {
        let summary = Summary::of(&[Duration::from_millis(2), Duration::from_millis(4)]).unwrap();
        let usage = |n| Usage { rss_kib: Some(n), fds: Some(n / 100), threads: None };
        let report = LoadReport {
            endpoint: "unix:///a.sock".into(),
            runtime: "crisp 0.1".into(),
            pods: 3,
            containers_per_pod: 2,
            readers: 1,
            churners: 1,
            seconds: 1.0,
            rpcs: vec![RpcLine { rpc: "ListContainers", calls: 2, summary }],
            churn_cycles: 4,
            errors: vec![ErrorLine {
                rpc: "ContainerStats",
                code: "NotFound".into(),
                message: "gone".into(),
                count: 2,
            }],
            unavailable: 0,
            daemon: DaemonUsage { before: usage(1000), during_max: usage(3000), after: usage(1100) },
            pod_ids: vec!["p".into()],
        };
        let text = report.to_string();
        assert!(text.contains("\nListContainers         2      2.0ms      4.0ms      4.0ms\n"), "{text}");
        assert!(text.contains("\nerrors: 2\n  2x ContainerStats: NotFound: gone\n"), "{text}");
        assert!(text.contains("\nopen fds                10          30          11\n"), "{text}");
        assert!(text.ends_with("\nthreads                n/a         n/a         n/a\n"), "{text}");
        assert!(!text.contains("tolerated"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rpcs"][0]["p99"], 0.004);
        assert_eq!(json["daemon"]["after"]["rss_kib"], 1100);
    }

    #[test]
    fn unanswered_calls_are_told_from_the_daemons_answers() {
        assert!(unanswered(&tonic::Status::unavailable("connection refused")));
        let cut = tonic::Status::from_error(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        assert!(unanswered(&cut), "{cut:?}");
        assert!(!unanswered(&tonic::Status::unknown("the daemon's own Unknown")));
        assert!(!unanswered(&tonic::Status::internal("reading stats")));
    }
}
