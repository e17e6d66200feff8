//! What is read at scrape time: pods and containers by state, monitors alive, OOM kills, bytes
//! pulled, and the daemon's own memory and descriptors. Reading it from the records and /proc
//! each time keeps it true after a restart, with nothing to keep in step.

use std::fs;

use crisp_runtime::container::ContainerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

use crate::daemon::Daemon;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The series read now, as a registry of their own. Blocking: reads records and /proc.
pub fn snapshot(daemon: &Daemon) -> Registry {
    let mut registry = Registry::with_prefix(super::PREFIX);

    let (mut ready, mut not_ready, mut monitors) = (0, 0, 0);
    for pod in daemon.pods.list() {
        *(if pod.ready { &mut ready } else { &mut not_ready }) += 1;
        monitors += i64::from(crisp_runtime::monitor::runs(&daemon.pods.monitor_dir(&pod.record.id)));
    }
    registry.register("pods", "Pod sandboxes, by state", by_state([("ready", ready), ("notready", not_ready)]));
    registry.register("monitors_alive", "Pods whose crisp-monitor runs", ConstGauge::new(monitors));

    let mut containers = [("created", 0), ("running", 0), ("exited", 0)];
    let mut oom_killed = 0;
    for container in daemon.containers.list() {
        let index = match container.state {
            ContainerState::Created => 0,
            ContainerState::Running => 1,
            ContainerState::Exited => 2,
        };
        containers[index].1 += 1;
        oom_killed += i64::from(container.exit.is_some_and(|e| e.oom_killed));
    }
    registry.register("containers", "Containers, by state", by_state(containers));
    registry.register(
        "containers_oom_killed",
        "Containers (not yet removed) that the kernel killed for going over their memory limit",
        ConstGauge::new(oom_killed),
    );

    registry.register_with_unit(
        "image_pull",
        "Bytes of image layers fetched from registries",
        Unit::Bytes,
        ConstCounter::new(daemon.puller.bytes_fetched()),
    );
    if let Some(rss) = resident_bytes() {
        registry.register_with_unit(
            "process_resident_memory",
            "The daemon's resident memory",
            Unit::Bytes,
            ConstGauge::new(rss),
        );
    }
    if let Ok(fds) = fs::read_dir("/proc/self/fd") {
        registry.register(
            "process_open_fds",
            "The daemon's open file descriptors",
            ConstGauge::new(fds.count() as i64),
        );
    }
    registry
}

/// Every state is shown, zero or not, so that a dashboard's sum never misses a series.
fn by_state<const N: usize>(counts: [(&'static str, i64); N]) -> Family<StateLabels, Gauge> {
    let family = Family::<StateLabels, Gauge>::default();
    for (state, count) in counts {
        family.get_or_create(&StateLabels { state }).set(count);
    }
    family
}

/// The second field of statm, in pages.
fn resident_bytes() -> Option<i64> {
    let statm = fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page_size as i64)
}
