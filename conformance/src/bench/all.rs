//! Every workload's report in one, and issue 8's targets checked against them: crisp (the first
//! endpoint) against the runtime it is compared with, and against the floor.

use std::fmt;

use serde::Serialize;

use super::BenchReport;
use super::burst::BurstReport;
use super::density::DensityReport;
use super::floor::FloorReport;
use super::sequential::SequentialReport;

#[derive(Debug, Clone, Serialize)]
pub struct AllReport {
    pub sequential: SequentialReport,
    pub burst: BurstReport,
    pub density: DensityReport,
    pub pull: BenchReport,
    /// None when it was left out.
    pub floor: Option<FloorReport>,
    pub targets: Vec<TargetCheck>,
}

/// One of issue 8's targets: a ratio of the first endpoint's figure to another's, at most
/// `limit`. Goals to work towards, not assertions: a target not met fails nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    pub what: &'static str,
    pub limit: f64,
    /// None where a figure is missing (no per-pod process found, a daemon this host cannot see).
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

impl TargetCheck {
    fn new(what: &'static str, limit: f64, ratio: Option<f64>) -> Self {
        TargetCheck { what, limit, ratio, met: ratio.map(|r| r <= limit) }
    }
}

impl AllReport {
    pub fn new(
        sequential: SequentialReport,
        burst: BurstReport,
        density: DensityReport,
        pull: BenchReport,
        floor: Option<FloorReport>,
    ) -> Self {
        let targets = targets(&sequential, &burst, &density, floor.as_ref());
        AllReport { sequential, burst, density, pull, floor, targets }
    }

    /// The targets' table alone: the sections are printed as they finish.
    pub fn targets_table(&self) -> TargetsTable<'_> {
        TargetsTable(&self.targets)
    }
}

/// The targets the figures allow: those against the floor when it ran, those against the second
/// endpoint when there is one.
fn targets(
    sequential: &SequentialReport,
    burst: &BurstReport,
    density: &DensityReport,
    floor: Option<&FloorReport>,
) -> Vec<TargetCheck> {
    let mut targets = Vec::new();
    if let (Some(floor), Some(first)) = (floor, sequential.pod_running.endpoints.first()) {
        targets.push(TargetCheck::new(
            "pod with a running container, p50, vs the floor",
            1.2,
            Some(first.summary.p50 / floor.pod().summary.p50),
        ));
    }
    let [first, second] = density.endpoints.as_slice() else { return targets };
    let ratio = |a: Option<u64>, b: Option<u64>| Some(a? as f64 / b? as f64);
    targets.extend([
        TargetCheck::new(
            "pod with a running container, p50, vs the second endpoint",
            0.7,
            sequential.pod_running.ratio.map(|r| r.p50),
        ),
        TargetCheck::new("burst wall time, p50, vs the second endpoint", 0.7, burst.wall.ratio.map(|r| r.p50)),
        TargetCheck::new(
            "daemon RSS with the pods held, vs the second endpoint",
            1.0 / 3.0,
            ratio(first.daemon_rss_held_kib, second.daemon_rss_held_kib),
        ),
        TargetCheck::new(
            "per-pod overhead (keeper + pause RSS), p50, vs the second endpoint",
            0.1,
            ratio(first.per_pod.overhead_p50_kib, second.per_pod.overhead_p50_kib),
        ),
    ]);
    targets
}

pub struct TargetsTable<'a>(&'a [TargetCheck]);

impl fmt::Display for TargetsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "targets: none checked (they compare with the floor or a second endpoint: --compare)");
        }
        writeln!(f, "targets (issue 8; the first endpoint's figure over the other's)")?;
        let width = self.0.iter().map(|t| t.what.len()).max().unwrap_or_default();
        writeln!(f, "{:<width$}  {:>7}  {:>7}  met", "target", "limit", "ratio")?;
        for target in self.0 {
            let ratio = target.ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}x"));
            let met = match target.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a",
            };
            writeln!(f, "{:<width$}  {:>7}  {ratio:>7}  {met}", target.what, format!("{:.2}x", target.limit))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::density::{DensityLine, PerPod};
    use crate::bench::floor::{POD, StepTimes};
    use crate::bench::{CpuSeconds, Summary};
    use crate::client::Endpoint;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    /// Reports of one endpoint, or two whose second one is `slower` times the first.
    fn reports(endpoints: &[&str], slower: u64) -> (SequentialReport, BurstReport, DensityReport, BenchReport) {
        let endpoints: Vec<_> = endpoints.iter().map(|e| Endpoint::parse(e).unwrap()).collect();
        let timed = |ms_each: u64| {
            let times = endpoints.iter().enumerate().map(|(i, e)| (e, ms(&[ms_each * slower.pow(i as u32)]))).collect();
            BenchReport::new("x", "x".into(), 1, times, vec![])
        };
        let sequential = SequentialReport { iterations: 1, steps: vec![], pod_running: timed(100), runtimes: vec![] };
        let burst = BurstReport { pods: 10, wall: timed(500), pods_per_second: vec![] };
        let line = |i: usize| DensityLine {
            endpoint: endpoints[i].to_string(),
            runtime: "r".into(),
            daemon_pid: Some(1),
            daemon_rss_before_kib: Some(1000),
            daemon_rss_held_kib: Some(1000 * slower.pow(i as u32)),
            daemon_cpu: Some(CpuSeconds::default()),
            keepers_cpu: None,
            per_pod: PerPod {
                keeper: None,
                keepers_found: 0,
                pauses_found: 0,
                keeper_p50_kib: None,
                pause_p50_kib: None,
                overhead_p50_kib: None,
                overhead_max_kib: None,
            },
            list_containers: Summary::of(&ms(&[1])).unwrap(),
            list_pod_sandbox: Summary::of(&ms(&[1])).unwrap(),
        };
        let density = DensityReport { pods: 2, list_calls: 50, endpoints: (0..endpoints.len()).map(line).collect() };
        (sequential, burst, density, timed(300))
    }

    fn floor(pod_ms: u64) -> FloorReport {
        let pod = ms(&[pod_ms]);
        FloorReport {
            workload: "floor",
            what: "x".into(),
            iterations: 1,
            network: "n".into(),
            runtime: "runc".into(),
            addresses: vec![],
            steps: vec![StepTimes { step: POD, seconds: vec![0.1], summary: Summary::of(&pod).unwrap() }],
            notes: vec![],
        }
    }

    #[test]
    fn one_endpoint_without_floor_checks_nothing() {
        let (sequential, burst, density, pull) = reports(&["/a.sock"], 1);
        let all = AllReport::new(sequential, burst, density, pull, None);
        assert!(all.targets.is_empty());
        assert!(all.targets_table().to_string().starts_with("targets: none checked"));
    }

    #[test]
    fn the_floor_is_checked_whenever_it_ran() {
        let (sequential, burst, density, pull) = reports(&["/a.sock"], 1);
        let all = AllReport::new(sequential, burst, density, pull, Some(floor(80)));
        assert_eq!(all.targets.len(), 1);
        assert_eq!(all.targets[0].ratio, Some(1.25));
        assert_eq!(all.targets[0].met, Some(false));
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(json["floor"]["runtime"], "runc");
        assert_eq!(json["targets"][0]["limit"], 1.2);
    }

    #[test]
    fn a_second_endpoint_is_compared() {
        let (sequential, burst, density, pull) = reports(&["/a.sock", "/b.sock"], 2);
        let all = AllReport::new(sequential, burst, density, pull, None);
        let checked: Vec<_> = all.targets.iter().map(|t| (t.ratio, t.met)).collect();
        assert_eq!(checked, [(Some(0.5), Some(true)), (Some(0.5), Some(true)), (Some(0.5), Some(false)), (None, None)]);
        let table = all.targets_table().to_string();
        assert!(table.contains("\nburst wall time, p50, vs the second endpoint  "), "{table}");
        assert!(table.contains("    0.33x    0.50x  NO\n"), "{table}");
        assert!(table.ends_with("    0.10x      n/a  n/a\n"), "{table}");
    }
}
