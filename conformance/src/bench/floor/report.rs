//! The floor's results: each step's times and the whole pod's, a table for people, JSON for
//! machines.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::pod::Sample;
use crate::bench::Summary;

#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    pub workload: &'static str,
    /// What each iteration did, in words.
    pub what: String,
    pub iterations: usize,
    /// The network file the pods joined, and the network's name.
    pub network: String,
    /// The OCI runtime, as its `--version` names itself.
    pub runtime: String,
    /// Each timed pod's addresses on the network, as CNI ADD gave them.
    pub addresses: Vec<Vec<String>>,
    /// The steps in the order they ran, then the whole pod ([`POD`]).
    pub steps: Vec<StepTimes>,
    /// What may make the numbers mean less than they seem to.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTimes {
    pub step: &'static str,
    /// Every iteration's wall time, in running order.
    pub seconds: Vec<f64>,
    #[serde(flatten)]
    pub summary: Summary,
}

/// The step that times the whole pod: a running container, from nothing.
pub const POD: &str = "pod with a running container";

impl FloorReport {
    /// `samples` may not be empty.
    pub(super) fn new(network: String, runtime: String, samples: &[Sample]) -> FloorReport {
        let step = |step: &'static str, time: fn(&Sample) -> Duration| {
            let times: Vec<Duration> = samples.iter().map(time).collect();
            StepTimes {
                step,
                seconds: times.iter().map(Duration::as_secs_f64).collect(),
                summary: Summary::of(&times).expect("at least one pod ran"),
            }
        };
        FloorReport {
            workload: "floor",
            what: "a pod with a running container and no daemon: netns, CNI ADD, pause and `sleep` container \
                   by the OCI runtime"
                .into(),
            iterations: samples.len(),
            network,
            runtime,
            addresses: samples.iter().map(|s| s.addresses.clone()).collect(),
            steps: vec![
                step("netns", |s| s.netns),
                step("CNI ADD", |s| s.cni_add),
                step("pause create+start", |s| s.pause),
                step("container create+start", |s| s.container),
                step(POD, |s| s.pod),
            ],
            notes: vec![
                "one untimed pod ran first".into(),
                "a lower bound: no seccomp, masked paths, logs or monitor; teardown is not timed".into(),
            ],
        }
    }

    /// The whole pod's times: what a runtime's pod with a running container compares to.
    pub fn pod(&self) -> &StepTimes {
        self.steps.iter().find(|s| s.step == POD).expect("every report times the pod")
    }
}

impl fmt::Display for FloorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}, {} iterations", self.workload, self.what, self.iterations)?;
        writeln!(f, "network: {}; runtime: {}", self.network, self.runtime)?;
        let width = self.steps.iter().map(|s| s.step.len()).max().unwrap_or_default();
        writeln!(f, "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}", "step", "p50", "p90", "p99", "max")?;
        let seconds = |s: f64| format!("{s:.3}s");
        for step in &self.steps {
            let summary = &step.summary;
            writeln!(
                f,
                "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
                step.step,
                seconds(summary.p50),
                seconds(summary.p90),
                seconds(summary.p99),
                seconds(summary.max)
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pod_ms: u64) -> Sample {
        let ms = Duration::from_millis;
        let addresses = vec!["10.85.0.7/16".to_owned()];
        Sample { netns: ms(1), cni_add: ms(20), pause: ms(40), container: ms(50), pod: ms(pod_ms), addresses }
    }

    #[test]
    fn table_and_json() {
        let samples = [sample(111), sample(131)];
        let report =
            FloorReport::new("/etc/cni/net.d/10-crisp.conflist (crisp)".into(), "runc version 1.1.5".into(), &samples);
        let text = report.to_string();
        assert!(text.starts_with("floor: a pod with a running container and no daemon"), "{text}");
        assert!(
            text.contains(
                ", 2 iterations\nnetwork: /etc/cni/net.d/10-crisp.conflist (crisp); runtime: runc version 1.1.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nnetns                            0.001s     0.001s     0.001s     0.001s\n"),
            "{text}"
        );
        assert!(
            text.contains("\npod with a running container     0.111s     0.131s     0.131s     0.131s\n"),
            "{text}"
        );
        assert!(text.ends_with("teardown is not timed\n"), "{text}");
        assert_eq!(report.pod().summary.max, 0.131);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workload"], "floor");
        assert_eq!(json["steps"][1]["step"], "CNI ADD");
        assert_eq!(json["steps"][1]["seconds"], serde_json::json!([0.02, 0.02]));
        assert_eq!(json["steps"][4]["p90"], 0.131);
        assert_eq!(json["addresses"][1][0], "10.85.0.7/16");
    }
}
