//! RunPodSandbox: the time to a READY pod on the pod network, and apart from it the time to stop
//! and remove that pod, which every iteration does so that pods never pile up.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    PodSandboxConfig, RemovePodSandboxRequest, RunPodSandboxRequest, StatusRequest, StopPodSandboxRequest,
    VersionRequest,
};
use serde::Serialize;

use super::{BenchError, BenchReport, Summary, Target, call, order};
use crate::suite::pod_config::{PodSpec, cgroup_parent, fresh_token};

/// The results: one report per measurement, and a line per runtime.
#[derive(Debug, Clone, Serialize)]
pub struct RunpReport {
    pub run: BenchReport,
    pub stop_remove: BenchReport,
    pub runtimes: Vec<RuntimeLine>,
}

/// One runtime's two measurements, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeLine {
    pub endpoint: String,
    /// `runtime_name runtime_version`, as Version reports them.
    pub runtime: String,
    pub run: Summary,
    pub stop_remove: Summary,
}

/// What a target needs to run pods: its pod config's cgroup parent, and its name for the report.
pub(super) struct Prepared {
    pub(super) cgroup_parent: String,
    pub(super) runtime: String,
}

/// Runs and removes `count` pods on each target, interleaving the targets, after one untimed pod
/// each: the first pod a runtime runs may pull its pause image or warm caches.
pub async fn run(targets: &[Target], count: NonZeroUsize) -> Result<RunpReport, BenchError> {
    // Every pod of this run carries its token as a label: one left by a failure is easy to find.
    let run_token = fresh_token();
    let mut prepared = Vec::with_capacity(targets.len());
    for target in targets {
        let ready = prepare(target).await?;
        let config = PodSpec::new("bench-warm-up", &run_token).config(&ready.cgroup_parent);
        one_pod(target, config).await?;
        prepared.push(ready);
    }

    let mut run_times = vec![Vec::with_capacity(count.get()); targets.len()];
    let mut stop_remove_times = vec![Vec::with_capacity(count.get()); targets.len()];
    for iteration in 0..count.get() {
        for index in order(targets.len(), iteration) {
            let config = PodSpec::new("bench", &run_token).config(&prepared[index].cgroup_parent);
            let (run, stop_remove) = one_pod(&targets[index], config).await?;
            run_times[index].push(run);
            stop_remove_times[index].push(stop_remove);
        }
    }

    let endpoints: Vec<_> = targets.iter().map(|t| &t.endpoint).collect();
    let run = BenchReport::new(
        "runp",
        "RunPodSandbox of a pod on the pod network, until it is READY".into(),
        count.get(),
        endpoints.iter().copied().zip(run_times).collect(),
        vec!["one untimed pod ran first on each endpoint".into()],
    );
    let stop_remove = BenchReport::new(
        "runp-stop-remove",
        "StopPodSandbox then RemovePodSandbox of that READY pod".into(),
        count.get(),
        endpoints.iter().copied().zip(stop_remove_times).collect(),
        vec![],
    );
    let runtimes = prepared
        .into_iter()
        .zip(run.endpoints.iter().zip(&stop_remove.endpoints))
        .map(|(prepared, (run, stop_remove))| RuntimeLine {
            endpoint: run.endpoint.clone(),
            runtime: prepared.runtime,
            run: run.summary,
            stop_remove: stop_remove.summary,
        })
        .collect();
    Ok(RunpReport { run, stop_remove, runtimes })
}

/// The target's name and cgroup parent, once its pod network is ready.
pub(super) async fn prepare(target: &Target) -> Result<Prepared, BenchError> {
    let status = call(target, "Status", target.client.runtime.clone().status(StatusRequest { verbose: false })).await?;
    let network = status.status.unwrap_or_default().conditions.into_iter().find(|c| c.r#type == "NetworkReady");
    match network {
        Some(network) if network.status => {}
        Some(network) => {
            let why = format!("NetworkReady false: {}: {}", network.reason, network.message);
            return Err(BenchError::NetworkNotReady { endpoint: target.endpoint.clone(), why });
        }
        None => {
            let why = "no NetworkReady condition".to_owned();
            return Err(BenchError::NetworkNotReady { endpoint: target.endpoint.clone(), why });
        }
    }
    let request = VersionRequest { version: "v1".into() };
    let version = call(target, "Version", target.client.runtime.clone().version(request)).await?;
    let cgroup_parent = cgroup_parent(&mut target.client.runtime.clone()).await;
    Ok(Prepared { cgroup_parent, runtime: format!("{} {}", version.runtime_name, version.runtime_version) })
}

/// Runs a pod, then stops and removes it: the wall time of each half. A pod that ran is removed
/// even when stopping it failed.
async fn one_pod(target: &Target, config: PodSandboxConfig) -> Result<(Duration, Duration), BenchError> {
    let started = Instant::now();
    let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
    let id =
        call(target, "RunPodSandbox", target.client.runtime.clone().run_pod_sandbox(request)).await?.pod_sandbox_id;
    let run = started.elapsed();

    let started = Instant::now();
    let stop = StopPodSandboxRequest { pod_sandbox_id: id.clone() };
    let stopped = call(target, "StopPodSandbox", target.client.runtime.clone().stop_pod_sandbox(stop)).await;
    let remove = RemovePodSandboxRequest { pod_sandbox_id: id };
    let removed = call(target, "RemovePodSandbox", target.client.runtime.clone().remove_pod_sandbox(remove)).await;
    let stop_remove = started.elapsed();
    stopped?;
    removed?;
    Ok((run, stop_remove))
}

impl fmt::Display for RunpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.run)?;
        writeln!(f, "{}", self.stop_remove)?;
        let seconds = |s: f64| format!("{s:.3}s");
        for line in &self.runtimes {
            writeln!(
                f,
                "{} ({}): RunPodSandbox p50 {} p90 {}; StopPodSandbox+RemovePodSandbox p50 {} p90 {}",
                line.endpoint,
                line.runtime,
                seconds(line.run.p50),
                seconds(line.run.p90),
                seconds(line.stop_remove.p50),
                seconds(line.stop_remove.p90)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Endpoint;

    #[test]
    fn report_has_both_tables_and_a_line_per_runtime() {
        let ms = |values: &[u64]| values.iter().map(|&v| Duration::from_millis(v)).collect::<Vec<_>>();
        let (a, b) = (Endpoint::parse("/run/a.sock").unwrap(), Endpoint::parse("/run/b.sock").unwrap());
        let run = BenchReport::new("runp", "run".into(), 2, vec![(&a, ms(&[100, 300])), (&b, ms(&[200, 400]))], vec![]);
        let stop_remove = BenchReport::new(
            "runp-stop-remove",
            "stop".into(),
            2,
            vec![(&a, ms(&[10, 30])), (&b, ms(&[20, 40]))],
            vec![],
        );
        let runtimes = [("crisp 0.1.0", 0), ("containerd v2.0.0", 1)]
            .into_iter()
            .map(|(runtime, i)| RuntimeLine {
                endpoint: run.endpoints[i].endpoint.clone(),
                runtime: runtime.into(),
                run: run.endpoints[i].summary,
                stop_remove: stop_remove.endpoints[i].summary,
            })
            .collect();
        let report = RunpReport { run, stop_remove, runtimes };
        let text = report.to_string();
        assert!(text.starts_with("runp: run, 2 iterations\n"), "{text}");
        assert!(text.contains("\nrunp-stop-remove: stop, 2 iterations\n"), "{text}");
        assert!(text.contains("\nfirst / second          0.50x      0.75x      0.75x\n"), "{text}");
        assert!(
            text.ends_with(
                "unix:///run/a.sock (crisp 0.1.0): RunPodSandbox p50 0.100s p90 0.300s; \
                 StopPodSandbox+RemovePodSandbox p50 0.010s p90 0.030s\n\
                 unix:///run/b.sock (containerd v2.0.0): RunPodSandbox p50 0.200s p90 0.400s; \
                 StopPodSandbox+RemovePodSandbox p50 0.020s p90 0.040s\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["runtimes"][1]["runtime"], "containerd v2.0.0");
        assert_eq!(json["stop_remove"]["endpoints"][0]["p90"], 0.03);
        assert_eq!(json["run"]["workload"], "runp");
    }
}
