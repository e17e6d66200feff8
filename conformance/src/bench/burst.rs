//! A burst of pods: P pods, each with a started `sleep` container, asked for all at once (one
//! task per pod: RunPodSandbox, CreateContainer, StartContainer), as a kubelet does when a
//! deployment scales up. The wall time runs from the first call to the last StartContainer's
//! answer; the pods are removed after, untimed. Targets take turns, never burst together.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::pods::{self, Prepared};
use super::{BenchError, BenchReport, Target, order};
use crate::suite::TestImages;

#[derive(Debug, Clone, Serialize)]
pub struct BurstReport {
    pub pods: usize,
    /// Each round's wall time per endpoint.
    pub wall: BenchReport,
    /// Pods over the median wall time, per endpoint, in the order of `wall`'s endpoints.
    pub pods_per_second: Vec<f64>,
}

/// `rounds` bursts of `pods` pods on each target, the targets' order rotated each round, after
/// one untimed pod each.
pub async fn run(
    targets: &[Target],
    images: &TestImages,
    pods: NonZeroUsize,
    rounds: NonZeroUsize,
) -> Result<BurstReport, BenchError> {
    let prepared: Vec<_> = pods::prepare_all(targets, images).await?.into_iter().map(Arc::new).collect();
    let measured = measure(targets, &prepared, pods, rounds).await;
    let finished = pods::finish_all(targets, prepared.iter().map(|p| &**p)).await;
    // A failed measurement is the error to report, before a failed clean-up after it.
    let walls = measured?;
    finished?;

    let what = format!("{pods} pods with a started `sleep` container, launched at once, until the last started");
    let times = targets.iter().map(|t| &t.endpoint).zip(walls).collect();
    let wall = BenchReport::new("burst", what, rounds.get(), times, vec![]);
    let pods_per_second = wall.endpoints.iter().map(|e| pods.get() as f64 / e.summary.p50).collect();
    Ok(BurstReport { pods: pods.get(), wall, pods_per_second })
}

async fn measure(
    targets: &[Target],
    prepared: &[Arc<Prepared>],
    pods: NonZeroUsize,
    rounds: NonZeroUsize,
) -> Result<Vec<Vec<Duration>>, BenchError> {
    for (target, prepared) in targets.iter().zip(prepared) {
        let running = pods::launch(target, prepared, prepared.pod("bench-warm-up")).await?;
        pods::remove_pod(target, &running.pod_id).await?;
    }
    let mut walls = vec![Vec::with_capacity(rounds.get()); targets.len()];
    for round in 0..rounds.get() {
        for index in order(targets.len(), round) {
            walls[index].push(burst(&targets[index], &prepared[index], pods.get()).await?);
        }
    }
    Ok(walls)
}

/// Launches `count` pods at once and removes them all once every launch has ended: the wall
/// time until the last container started.
async fn burst(target: &Target, prepared: &Arc<Prepared>, count: usize) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (target, prepared) = (target.clone(), Arc::clone(prepared));
        tasks.spawn(async move {
            let running = pods::launch(&target, &prepared, prepared.pod("bench-burst")).await;
            (running, started.elapsed())
        });
    }
    // Every task runs to its end, so that no pod is left unremoved even when one launch failed.
    let mut launched = Vec::with_capacity(count);
    let mut wall = Duration::ZERO;
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let (running, finished) = joined.expect("a launch task does not panic");
        wall = wall.max(finished);
        match running {
            Ok(running) => launched.push(running.pod_id),
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    for pod_id in &launched {
        let removed = pods::remove_pod(target, pod_id).await;
        failure = failure.or(removed.err());
    }
    failure.map_or(Ok(wall), Err)
}

impl fmt::Display for BurstReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.wall)?;
        for (times, rate) in self.wall.endpoints.iter().zip(&self.pods_per_second) {
            writeln!(f, "{}: {rate:.1} pods/s (median round)", times.endpoint)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Endpoint;

    #[test]
    fn report_adds_the_rate() {
        let a = Endpoint::parse("/run/a.sock").unwrap();
        let wall =
            BenchReport::new("burst", "10 pods".into(), 1, vec![(&a, vec![Duration::from_millis(2500)])], vec![]);
        let report = BurstReport { pods: 10, wall, pods_per_second: vec![4.0] };
        let text = report.to_string();
        assert!(text.starts_with("burst: 10 pods, 1 iterations\n"), "{text}");
        assert!(text.ends_with("\nunix:///run/a.sock: 4.0 pods/s (median round)\n"), "{text}");
        assert_eq!(serde_json::to_value(&report).unwrap()["pods_per_second"][0], 4.0);
    }
}
