//! Sequential pods: one after another, a pod on the pod network with a `sleep` container taken
//! through its whole life (RunPodSandbox, CreateContainer, StartContainer, StopContainer,
//! RemoveContainer, StopPodSandbox, RemovePodSandbox), each step timed; and while its container
//! runs, the resident memory of the process that keeps the pod (crisp's `crisp-monitor`,
//! containerd's shim).

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Serialize;

use super::pods::{self, IMAGE, Prepared};
use super::report::write_table;
use super::stats::lower_median;
use super::{BenchError, BenchReport, Target, host, order};
use crate::suite::TestImages;

/// The steps, in the order a pod goes through them.
const STEPS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// The steps that make a pod with a running container: what the kubelet waits for.
const TO_RUNNING: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct SequentialReport {
    pub iterations: usize,
    /// One per step, in [`STEPS`] order.
    pub steps: Vec<BenchReport>,
    /// RunPodSandbox + CreateContainer + StartContainer of each pod.
    pub pod_running: BenchReport,
    pub runtimes: Vec<RuntimeLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeLine {
    pub endpoint: String,
    /// `runtime_name runtime_version`, as Version reports them.
    pub runtime: String,
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

/// One pod's times, in [`STEPS`] order, and its keeper's name and VmRSS in KiB if found.
struct Sample {
    steps: [Duration; 7],
    keeper: Option<(String, u64)>,
}

/// Takes `count` pods through their life on each target, interleaving the targets, after one
/// untimed pod each: the first pod a runtime runs may pull its pause image or warm caches.
pub async fn run(targets: &[Target], images: &TestImages, count: NonZeroUsize) -> Result<SequentialReport, BenchError> {
    let prepared = pods::prepare_all(targets, images).await?;
    let measured = measure(targets, &prepared, count).await;
    let finished = pods::finish_all(targets, &prepared).await;
    // A failed measurement is the error to report, before a failed clean-up after it.
    let samples = measured?;
    finished?;

    let endpoints: Vec<_> = targets.iter().map(|t| &t.endpoint).collect();
    let report = |workload: &'static str, what: String, pick: &dyn Fn(&Sample) -> Duration| {
        let times = samples.iter().map(|s| s.iter().map(pick).collect()).collect::<Vec<_>>();
        BenchReport::new(workload, what, count.get(), endpoints.iter().copied().zip(times).collect(), vec![])
    };
    let steps = STEPS
        .iter()
        .enumerate()
        .map(|(i, step)| report(step, format!("{step} of each pod"), &|s: &Sample| s.steps[i]))
        .collect();
    let pod_running = report(
        "pod running",
        format!("RunPodSandbox + CreateContainer + StartContainer of a `sleep` container of {IMAGE}"),
        &|s: &Sample| s.steps[..TO_RUNNING].iter().sum(),
    );
    let runtimes = targets
        .iter()
        .zip(prepared)
        .zip(samples)
        .map(|((target, prepared), samples)| RuntimeLine {
            endpoint: target.endpoint.to_string(),
            runtime: prepared.runtime,
            keeper: keeper_memory(samples.into_iter().filter_map(|s| s.keeper).collect()),
        })
        .collect();
    Ok(SequentialReport { iterations: count.get(), steps, pod_running, runtimes })
}

/// The warm-up pods, then `count` pods per target: each target's samples.
async fn measure(
    targets: &[Target],
    prepared: &[Prepared],
    count: NonZeroUsize,
) -> Result<Vec<Vec<Sample>>, BenchError> {
    for (target, prepared) in targets.iter().zip(prepared) {
        one_pod(target, prepared, "bench-warm-up").await?;
    }
    let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::with_capacity(count.get())).collect();
    for iteration in 0..count.get() {
        for index in order(targets.len(), iteration) {
            samples[index].push(one_pod(&targets[index], &prepared[index], "bench").await?);
        }
    }
    Ok(samples)
}

/// One pod through its life; its keeper's memory is read between StartContainer and
/// StopContainer, outside any timed step.
async fn one_pod(target: &Target, prepared: &Prepared, purpose: &str) -> Result<Sample, BenchError> {
    let running = pods::launch(target, prepared, prepared.pod(purpose)).await?;
    let keeper = host::keepers(vec![running.pod_id.clone()]).await.into_values().next();
    let keeper = keeper.and_then(|k| Some((k.program, host::rss_kib(k.pid)?)));
    let [run, create, start] = running.times;
    let [stop, remove, stop_pod, remove_pod] = pods::tear_down(target, running).await?;
    Ok(Sample { steps: [run, create, start, stop, remove, stop_pod, remove_pod], keeper })
}

/// The median and the largest of the samples, named after the first one's program.
fn keeper_memory(samples: Vec<(String, u64)>) -> Option<KeeperMemory> {
    let process = samples.first()?.0.clone();
    let kib: Vec<u64> = samples.into_iter().map(|(_, kib)| kib).collect();
    let max_kib = *kib.iter().max()?;
    Some(KeeperMemory { process, p50_kib: lower_median(kib)?, max_kib })
}

impl fmt::Display for SequentialReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sequential: {} pods per endpoint, one at a time, each with a `sleep` container, endpoints \
             interleaved, after one untimed pod each",
            self.iterations
        )?;
        let reports: Vec<_> = self.steps.iter().chain([&self.pod_running]).collect();
        write_table(f, Some("step"), &reports)?;
        for line in &self.runtimes {
            let keeper = match &line.keeper {
                Some(k) => format!("{} RSS p50 {} KiB, max {} KiB", k.process, k.p50_kib, k.max_kib),
                None => "no per-pod process found".to_owned(),
            };
            writeln!(f, "{} ({}): {keeper}", line.endpoint, line.runtime)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Endpoint;

    #[test]
    fn keeper_summary() {
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

    #[test]
    fn report_is_one_table_of_steps() {
        let ms = |values: &[u64]| values.iter().map(|&v| Duration::from_millis(v)).collect::<Vec<_>>();
        let (a, b) = (Endpoint::parse("/run/a.sock").unwrap(), Endpoint::parse("/run/b.sock").unwrap());
        let step =
            |name| BenchReport::new(name, "x".into(), 2, vec![(&a, ms(&[100, 300])), (&b, ms(&[200, 600]))], vec![]);
        let report = SequentialReport {
            iterations: 2,
            steps: STEPS.iter().map(|s| step(s)).collect(),
            pod_running: step("pod running"),
            runtimes: vec![RuntimeLine {
                endpoint: a.to_string(),
                runtime: "crisp 0.1.0".into(),
                keeper: Some(KeeperMemory { process: "crisp-monitor".into(), p50_kib: 900, max_kib: 1000 }),
            }],
        };
        let text = report.to_string();
        assert!(text.contains("\nstep              endpoint                  p50 "), "{text}");
        assert!(
            text.contains("\nRunPodSandbox     unix:///run/a.sock     0.100s     0.300s     0.300s     0.300s\n"),
            "{text}"
        );
        assert!(
            text.contains("\n                  first / second          0.50x      0.50x      0.50x      0.50x\n"),
            "{text}"
        );
        assert!(text.contains("\npod running       unix:///run/a.sock "), "{text}");
        assert!(
            text.ends_with("unix:///run/a.sock (crisp 0.1.0): crisp-monitor RSS p50 900 KiB, max 1000 KiB\n"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["steps"][6]["workload"], "RemovePodSandbox");
        assert_eq!(json["pod_running"]["endpoints"][1]["p99"], 0.6);
    }
}
