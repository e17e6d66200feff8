//! Density: D pods, each with a running `sleep` container, held at once. Measured: the daemon's
//! resident memory before and while they are held, what each pod costs beside its container
//! (its keeper, the process that keeps its containers, and its pause process), how fast the
//! daemon lists containers and pods while they are held, and the daemon's CPU time from before
//! the first pod ran until the last was removed. Targets take turns, never hold pods together.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Instant;

use k8s_cri::v1::{ListContainersRequest, ListPodSandboxRequest, PodSandboxStatusRequest};
use serde::Serialize;

use super::host::{self, CpuSeconds, Keeper};
use super::pods::{self, Prepared};
use super::stats::lower_median;
use super::{BenchError, Summary, Target, call};
use crate::suite::TestImages;

/// Calls of each list RPC timed while the pods are held.
const LIST_CALLS: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct DensityReport {
    pub pods: usize,
    pub list_calls: usize,
    pub endpoints: Vec<DensityLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DensityLine {
    pub endpoint: String,
    /// `runtime_name runtime_version`, as Version reports them.
    pub runtime: String,
    /// The process serving the socket; None when this host cannot see it.
    pub daemon_pid: Option<u32>,
    pub daemon_rss_before_kib: Option<u64>,
    pub daemon_rss_held_kib: Option<u64>,
    /// User and system time, from before the first RunPodSandbox to after the last
    /// RemovePodSandbox.
    pub daemon_cpu: Option<CpuSeconds>,
    /// The keepers' user and system time, added up over distinct processes, read just before
    /// the pods' removal. They are no children the daemon waits for (they outlive it), so
    /// `daemon_cpu` misses them, and with them the runc calls a containerd shim makes; None when
    /// no keeper was found.
    pub keepers_cpu: Option<CpuSeconds>,
    pub per_pod: PerPod,
    pub list_containers: Summary,
    pub list_pod_sandbox: Summary,
}

/// What each pod costs beside its container: the VmRSS of its keeper (`crisp-monitor`,
/// `containerd-shim*`, `conmon*`) and of its pause process, read while all pods were held. A
/// keeper serving several pods counts whole in each of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerPod {
    /// The keepers' program name, if any was found.
    pub keeper: Option<String>,
    /// Pods whose keeper was found.
    pub keepers_found: usize,
    /// Pods whose pause process was found.
    pub pauses_found: usize,
    pub keeper_p50_kib: Option<u64>,
    pub pause_p50_kib: Option<u64>,
    /// Keeper plus pause, over the pods where both were found.
    pub overhead_p50_kib: Option<u64>,
    pub overhead_max_kib: Option<u64>,
}

/// Holds `count` pods on each target in turn, after one untimed pod each.
pub async fn run(targets: &[Target], images: &TestImages, count: NonZeroUsize) -> Result<DensityReport, BenchError> {
    let mut endpoints = Vec::with_capacity(targets.len());
    for target in targets {
        let prepared = pods::prepare(target, images).await?;
        let measured = measure(target, &prepared, count.get()).await;
        let finished = prepared.finish(target).await;
        endpoints.push(measured?);
        finished?;
    }
    Ok(DensityReport { pods: count.get(), list_calls: LIST_CALLS, endpoints })
}

async fn measure(target: &Target, prepared: &Prepared, count: usize) -> Result<DensityLine, BenchError> {
    let warm_up = pods::launch(target, prepared, prepared.pod("bench-warm-up")).await?;
    pods::remove_pod(target, &warm_up.pod_id).await?;

    let daemon_pid = host::daemon_pid(&target.endpoint).await;
    let daemon_rss_before_kib = daemon_pid.and_then(host::rss_kib);
    let cpu_before = daemon_pid.and_then(CpuSeconds::read);
    let mut pod_ids = Vec::with_capacity(count);
    let held = async {
        for _ in 0..count {
            pod_ids.push(pods::launch(target, prepared, prepared.pod("bench-density")).await?.pod_id);
        }
        let daemon_rss_held_kib = daemon_pid.and_then(host::rss_kib);
        let keepers = host::keepers(pod_ids.clone()).await;
        let per_pod = per_pod(target, &pod_ids, &keepers).await?;
        let list_containers = time_calls(|| async {
            let request = ListContainersRequest { filter: None };
            call(target, "ListContainers", target.client.runtime.clone().list_containers(request)).await.map(drop)
        })
        .await?;
        let list_pod_sandbox = time_calls(|| async {
            let request = ListPodSandboxRequest { filter: None };
            call(target, "ListPodSandbox", target.client.runtime.clone().list_pod_sandbox(request)).await.map(drop)
        })
        .await?;
        Ok::<_, BenchError>((daemon_rss_held_kib, keepers, per_pod, list_containers, list_pod_sandbox))
    };
    let held = held.await;
    // Read before the removal ends the keepers: their time is gone with them.
    let keepers_cpu = held.as_ref().ok().and_then(|(_, keepers, ..)| keepers_cpu(keepers.values().map(|k| k.pid)));
    let mut removed = Ok(());
    for pod_id in &pod_ids {
        removed = removed.and(pods::remove_pod(target, pod_id).await);
    }
    let daemon_cpu = cpu_before.zip(daemon_pid.and_then(CpuSeconds::read)).map(|(before, after)| after.since(before));
    let (daemon_rss_held_kib, _, per_pod, list_containers, list_pod_sandbox) = held?;
    removed?;
    Ok(DensityLine {
        endpoint: target.endpoint.to_string(),
        runtime: prepared.runtime.clone(),
        daemon_pid,
        daemon_rss_before_kib,
        daemon_rss_held_kib,
        daemon_cpu,
        keepers_cpu,
        per_pod,
        list_containers,
        list_pod_sandbox,
    })
}

/// The CPU time of the distinct processes of `pids` that are still there, added up; None when
/// none is.
fn keepers_cpu(pids: impl Iterator<Item = u32>) -> Option<CpuSeconds> {
    let distinct: std::collections::BTreeSet<u32> = pids.collect();
    distinct
        .into_iter()
        .filter_map(CpuSeconds::read)
        .reduce(|a, b| CpuSeconds { own: a.own + b.own, children: a.children + b.children })
}

/// The wall time of [`LIST_CALLS`] calls, one after another.
async fn time_calls<F: Future<Output = Result<(), BenchError>>>(
    mut one: impl FnMut() -> F,
) -> Result<Summary, BenchError> {
    let mut samples = Vec::with_capacity(LIST_CALLS);
    for _ in 0..LIST_CALLS {
        let started = Instant::now();
        one().await?;
        samples.push(started.elapsed());
    }
    Ok(Summary::of(&samples).expect("LIST_CALLS is not 0"))
}

/// Each held pod's pause, found, and its keeper's and pause's memory read.
async fn per_pod(target: &Target, pod_ids: &[String], keepers: &HashMap<String, Keeper>) -> Result<PerPod, BenchError> {
    let mut pauses = HashMap::new();
    for pod_id in pod_ids {
        if let Some(pid) = pause_pid(target, pod_id).await? {
            pauses.insert(pod_id.as_str(), pid);
        }
    }
    let keeper_kib: HashMap<&str, u64> =
        keepers.iter().filter_map(|(id, k)| Some((id.as_str(), host::rss_kib(k.pid)?))).collect();
    let pause_kib: HashMap<&str, u64> =
        pauses.iter().filter_map(|(id, &pid)| Some((*id, host::rss_kib(pid)?))).collect();
    let overhead: Vec<u64> = keeper_kib.iter().filter_map(|(id, keeper)| Some(keeper + pause_kib.get(id)?)).collect();
    Ok(PerPod {
        keeper: keepers.values().next().map(|k| k.program.clone()),
        keepers_found: keeper_kib.len(),
        pauses_found: pause_kib.len(),
        keeper_p50_kib: lower_median(keeper_kib.into_values().collect()),
        pause_p50_kib: lower_median(pause_kib.into_values().collect()),
        overhead_p50_kib: lower_median(overhead.clone()),
        overhead_max_kib: overhead.into_iter().max(),
    })
}

/// The host pid of the pod's pause process, from PodSandboxStatus's verbose info: containerd
/// and CRI-O name it `pid`, crisp `pause_pid`.
async fn pause_pid(target: &Target, pod_id: &str) -> Result<Option<u32>, BenchError> {
    let request = PodSandboxStatusRequest { pod_sandbox_id: pod_id.to_owned(), verbose: true };
    let status = call(target, "PodSandboxStatus", target.client.runtime.clone().pod_sandbox_status(request)).await?;
    Ok(status.info.values().find_map(|info| pid_in_info(info)))
}

fn pid_in_info(info: &str) -> Option<u32> {
    let info: serde_json::Value = serde_json::from_str(info).ok()?;
    let pid = ["pid", "pause_pid"].iter().find_map(|key| info.get(key)?.as_u64())?;
    u32::try_from(pid).ok().filter(|&pid| pid > 0)
}

/// A row of the table: its name, the value as shown, and as a number where a ratio means something.
type Row = (&'static str, String, Option<f64>);

impl DensityLine {
    fn rows(&self) -> Vec<Row> {
        let kib =
            |name, v: Option<u64>| (name, v.map_or("n/a".to_owned(), |v| format!("{v} KiB")), v.map(|v| v as f64));
        let ms = |name, s: f64| (name, format!("{:.1}ms", s * 1000.0), Some(s));
        let cpu = |name, cpu: Option<CpuSeconds>, pick: fn(&CpuSeconds) -> f64| {
            let seconds = cpu.as_ref().map(pick);
            (name, seconds.map_or("n/a".to_owned(), |s| format!("{s:.2}s")), seconds)
        };
        let text = |name, text: String| (name, text, None);
        let per_pod = &self.per_pod;
        vec![
            text("runtime", self.runtime.clone()),
            text("daemon pid", self.daemon_pid.map_or("n/a".into(), |p| p.to_string())),
            kib("daemon RSS before", self.daemon_rss_before_kib),
            kib("daemon RSS held", self.daemon_rss_held_kib),
            text("keeper", per_pod.keeper.clone().unwrap_or_else(|| "none found".into())),
            text("keepers, pauses found", format!("{}, {}", per_pod.keepers_found, per_pod.pauses_found)),
            kib("keeper RSS p50", per_pod.keeper_p50_kib),
            kib("pause RSS p50", per_pod.pause_p50_kib),
            kib("per-pod overhead p50", per_pod.overhead_p50_kib),
            kib("per-pod overhead max", per_pod.overhead_max_kib),
            ms("ListContainers p50", self.list_containers.p50),
            ms("ListContainers p99", self.list_containers.p99),
            ms("ListPodSandbox p50", self.list_pod_sandbox.p50),
            ms("ListPodSandbox p99", self.list_pod_sandbox.p99),
            cpu("daemon CPU", self.daemon_cpu, |c| c.own),
            cpu("daemon children CPU", self.daemon_cpu, |c| c.children),
            cpu("keepers CPU", self.keepers_cpu, |c| c.own + c.children),
        ]
    }
}

impl fmt::Display for DensityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "density: {} pods held at once, each with a running `sleep` container; {} ListContainers and \
             {} ListPodSandbox calls while held",
            self.pods, self.list_calls, self.list_calls
        )?;
        let columns: Vec<_> = self.endpoints.iter().map(DensityLine::rows).collect();
        let Some(first) = columns.first() else { return Ok(()) };
        let label_width = first.iter().map(|(name, ..)| name.len()).max().unwrap_or_default() + 2;
        let widths: Vec<_> = columns
            .iter()
            .zip(&self.endpoints)
            .map(|(rows, line)| {
                rows.iter().map(|(_, v, _)| v.len()).chain([line.endpoint.len()]).max().unwrap_or(0) + 2
            })
            .collect();
        let mut head = " ".repeat(label_width);
        for (line, width) in self.endpoints.iter().zip(&widths) {
            head += &format!("{:<width$}", line.endpoint);
        }
        if columns.len() == 2 {
            head += "first / second";
        }
        writeln!(f, "{}", head.trim_end())?;
        for (row, (name, ..)) in first.iter().enumerate() {
            let mut text = format!("{name:<label_width$}");
            for (column, width) in columns.iter().zip(&widths) {
                text += &format!("{:<width$}", column[row].1);
            }
            if let [(.., Some(a)), (.., Some(b))] = columns.iter().map(|c| &c[row]).collect::<Vec<_>>()[..] {
                text += &format!("{:.2}x", a / b);
            }
            writeln!(f, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_pid_from_verbose_info() {
        assert_eq!(pid_in_info(r#"{"pid": 4242, "status": {}}"#), Some(4242));
        assert_eq!(pid_in_info(r#"{"id": "x", "pause_pid": 77}"#), Some(77));
        assert_eq!(pid_in_info(r#"{"pid": 0}"#), None);
        assert_eq!(pid_in_info(r#"{"pause_pid": null}"#), None);
        assert_eq!(pid_in_info("not json"), None);
    }

    #[test]
    fn keepers_cpu_counts_each_process_once() {
        // A sleeping child: its CPU time stays put between the reads.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let once = CpuSeconds::read(pid).unwrap();
        let twice = keepers_cpu([pid, pid].into_iter());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(twice, Some(once));
        assert_eq!(keepers_cpu([pid].into_iter()), None, "a process gone counts nothing");
        assert_eq!(keepers_cpu(std::iter::empty()), None);
    }

    #[test]
    fn report_is_a_column_per_endpoint() {
        let summary = |s| Summary { p50: s, p90: s, p99: s * 2.0, max: s * 2.0 };
        let line = |endpoint: &str, runtime: &str| DensityLine {
            endpoint: endpoint.into(),
            runtime: runtime.into(),
            daemon_pid: Some(12),
            daemon_rss_before_kib: Some(10_000),
            daemon_rss_held_kib: Some(12_000),
            daemon_cpu: Some(CpuSeconds { own: 1.5, children: 0.25 }),
            keepers_cpu: Some(CpuSeconds { own: 0.5, children: 0.25 }),
            per_pod: PerPod {
                keeper: Some("crisp-monitor".into()),
                keepers_found: 2,
                pauses_found: 2,
                keeper_p50_kib: Some(900),
                pause_p50_kib: Some(100),
                overhead_p50_kib: Some(1000),
                overhead_max_kib: Some(1100),
            },
            list_containers: summary(0.002),
            list_pod_sandbox: summary(0.001),
        };
        let report = DensityReport {
            pods: 2,
            list_calls: LIST_CALLS,
            endpoints: vec![line("unix:///run/a.sock", "crisp 0.1.0"), line("unix:///b", "containerd 1.6")],
        };
        let text = report.to_string();
        assert!(
            text.contains("\n                       unix:///run/a.sock  unix:///b       first / second\n"),
            "{text}"
        );
        assert!(text.contains("\nruntime                crisp 0.1.0         containerd 1.6\n"), "{text}");
        assert!(text.contains("\nper-pod overhead p50   1000 KiB            1000 KiB        1.00x\n"), "{text}");
        assert!(text.contains("\nListContainers p99     4.0ms               4.0ms           1.00x\n"), "{text}");
        assert!(text.contains("\ndaemon CPU             1.50s               1.50s           1.00x\n"), "{text}");
        assert!(text.contains("\nkeepers CPU            0.75s               0.75s           1.00x\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["endpoints"][0]["per_pod"]["overhead_p50_kib"], 1000);
        assert_eq!(json["endpoints"][1]["daemon_cpu"]["children"], 0.25);
    }
}
