//! Every workload's report in one, and issue 8's targets checked against them: crisp (the first
//! endpoint) against the runtime it is compared with, and against the floor.

use std::fmt;

use serde::Serialize;

use super::BenchReport;
use super::burst::BurstReport;
use super::density::DensityReport;
use super::sequential::SequentialReport;

#[derive(Debug, Clone, Serialize)]
pub struct AllReport {
    pub sequential: SequentialReport,
    pub burst: BurstReport,
    pub density: DensityReport,
    pub pull: BenchReport,
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
    pub fn new(sequential: SequentialReport, burst: BurstReport, density: DensityReport, pull: BenchReport) -> Self {
        let targets = targets(&sequential, &burst, &density);
        AllReport { sequential, burst, density, pull, targets }
    }

    /// The targets' table alone: the sections are printed as they finish.
    pub fn targets_table(&self) -> TargetsTable<'_> {
        TargetsTable(&self.targets)
    }
}

/// The targets that compare two endpoints: none without a second one.
fn targets(sequential: &SequentialReport, burst: &BurstReport, density: &DensityReport) -> Vec<TargetCheck> {
    let [first, second] = density.endpoints.as_slice() else { return Vec::new() };
    let ratio = |a: Option<u64>, b: Option<u64>| Some(a? as f64 / b? as f64);
    vec![
        TargetCheck::new(
            "pod with a running container, p50, vs the second endpoint",
            0.7,
            sequential.pod_running.ratio.map(|r| r.p50),
        ),
        TargetCheck::new(
            "burst wall time, p50, vs the second endpoint",
            0.7,
            burst.wall.ratio.map(|r| r.p50),
        ),
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
    ]
}

pub struct TargetsTable<'a>(&'a [TargetCheck]);

impl fmt::Display for TargetsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "targets: none checked (they compare with a second endpoint: --compare)");
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
