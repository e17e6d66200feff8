//! The series of the metrics RPCs, under cAdvisor's names, help texts and types: the kubelet
//! turns them into `/metrics/cadvisor` as they come, so dashboards keep working without cAdvisor.
//!
//! One table says both what ListMetricDescriptors lists and what ListPodSandboxMetrics sends:
//! a descriptor without values fails critest, and a series whose label values do not match its
//! descriptor's keys is one the kubelet cannot export.

use crisp_network::interface_stats::InterfaceStats;
use crisp_runtime::stats::CgroupStats;
use k8s_cri::v1::MetricType::{Counter, Gauge};
use k8s_cri::v1::{self as cri, MetricType};

use super::stats_convert::{ContainerSample, Layer, PodSample};

/// containerd's label keys: the container's ID and name (the pod's ID and `POD` for the pod's
/// own series).
const BASE_KEYS: &[&str] = &["id", "name"];

/// cAdvisor's name for what belongs to the pod rather than to one of its containers.
const POD_NAME: &str = "POD";

const NANOS_PER_SECOND: u64 = 1_000_000_000;

struct Family<T> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: fn(&T) -> u64,
}

/// What one read of a running container gives the metrics, apart from its identity.
struct Reading {
    at_ns: i64,
    started_at_ns: i64,
    cgroup: CgroupStats,
    layer: Layer,
}

/// cAdvisor's units are seconds; the CRI's values are integers, so CPU time is whole seconds,
/// as CRI-O sends it.
const CONTAINER: &[Family<Reading>] = &[
    Family {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        kind: Counter,
        value: |r| r.cgroup.cpu.total_ns / NANOS_PER_SECOND,
    },
    Family {
        name: "container_cpu_user_seconds_total",
        help: "Cumulative user cpu time consumed in seconds.",
        kind: Counter,
        value: |r| r.cgroup.cpu.user_ns / NANOS_PER_SECOND,
    },
    Family {
        name: "container_cpu_system_seconds_total",
        help: "Cumulative system cpu time consumed in seconds.",
        kind: Counter,
        value: |r| r.cgroup.cpu.system_ns / NANOS_PER_SECOND,
    },
    Family {
        name: "container_memory_usage_bytes",
        help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
        kind: Gauge,
        value: |r| r.cgroup.memory.usage,
    },
    Family {
        name: "container_memory_working_set_bytes",
        help: "Current working set in bytes.",
        kind: Gauge,
        value: |r| r.cgroup.memory.working_set,
    },
    Family { name: "container_memory_rss", help: "Size of RSS in bytes.", kind: Gauge, value: |r| r.cgroup.memory.rss },
    Family {
        name: "container_memory_cache",
        help: "Number of bytes of page cache memory.",
        kind: Gauge,
        value: |r| r.cgroup.memory.cache,
    },
    Family {
        name: "container_memory_mapped_file",
        help: "Size of memory mapped files in bytes.",
        kind: Gauge,
        value: |r| r.cgroup.memory.mapped_file,
    },
    // cAdvisor's 0 for no limit: the kernel's "max" is no number.
    Family {
        name: "container_spec_memory_limit_bytes",
        help: "Memory limit for the container.",
        kind: Gauge,
        value: |r| r.cgroup.memory.limit.unwrap_or(0),
    },
    Family {
        name: "container_fs_usage_bytes",
        help: "Number of bytes that are consumed by the container on this filesystem.",
        kind: Gauge,
        value: |r| r.layer.bytes,
    },
    Family {
        name: "container_start_time_seconds",
        help: "Start time of the container since unix epoch in seconds.",
        kind: Gauge,
        value: |r| seconds(r.started_at_ns),
    },
    Family {
        name: "container_last_seen",
        help: "Last time a container was seen by the exporter",
        kind: Gauge,
        value: |r| seconds(r.at_ns),
    },
];

const FAILURES: &str = "container_memory_failures_total";
const FAILURES_HELP: &str = "Cumulative count of memory allocation failures.";
const FAILURES_KEYS: &[&str] = &["failure_type", "scope"];

const NETWORK: &[Family<InterfaceStats>] = &[
    Family {
        name: "container_network_receive_bytes_total",
        help: "Cumulative count of bytes received",
        kind: Counter,
        value: |i| i.rx_bytes,
    },
    Family {
        name: "container_network_receive_packets_total",
        help: "Cumulative count of packets received",
        kind: Counter,
        value: |i| i.rx_packets,
    },
    Family {
        name: "container_network_receive_packets_dropped_total",
        help: "Cumulative count of packets dropped while receiving",
        kind: Counter,
        value: |i| i.rx_dropped,
    },
    Family {
        name: "container_network_receive_errors_total",
        help: "Cumulative count of errors encountered while receiving",
        kind: Counter,
        value: |i| i.rx_errors,
    },
    Family {
        name: "container_network_transmit_bytes_total",
        help: "Cumulative count of bytes transmitted",
        kind: Counter,
        value: |i| i.tx_bytes,
    },
    Family {
        name: "container_network_transmit_packets_total",
        help: "Cumulative count of packets transmitted",
        kind: Counter,
        value: |i| i.tx_packets,
    },
    Family {
        name: "container_network_transmit_packets_dropped_total",
        help: "Cumulative count of packets dropped while transmitting",
        kind: Counter,
        value: |i| i.tx_dropped,
    },
    Family {
        name: "container_network_transmit_errors_total",
        help: "Cumulative count of errors encountered while transmitting",
        kind: Counter,
        value: |i| i.tx_errors,
    },
];

const NETWORK_KEYS: &[&str] = &["interface"];

fn seconds(ns: i64) -> u64 {
    u64::try_from(ns).unwrap_or(0) / NANOS_PER_SECOND
}

pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    let container = CONTAINER.iter().map(|f| descriptor(f.name, f.help, &[]));
    let failures = std::iter::once(descriptor(FAILURES, FAILURES_HELP, FAILURES_KEYS));
    let network = NETWORK.iter().map(|f| descriptor(f.name, f.help, NETWORK_KEYS));
    container.chain(failures).chain(network).collect()
}

fn descriptor(name: &str, help: &str, extra_keys: &[&str]) -> cri::MetricDescriptor {
    cri::MetricDescriptor {
        name: name.to_owned(),
        help: help.to_owned(),
        label_keys: BASE_KEYS.iter().chain(extra_keys).map(|k| k.to_string()).collect(),
    }
}

/// The pod's interfaces under the pod, its running containers' usage under each container.
pub fn pod_metrics(sample: &PodSample) -> cri::PodSandboxMetrics {
    let id = sample.view.record.id.to_string();
    let metrics = match &sample.interfaces {
        Some(interfaces) => network(sample.at_ns, [id.as_str(), POD_NAME], interfaces),
        None => Vec::new(),
    };
    cri::PodSandboxMetrics {
        pod_sandbox_id: id,
        metrics,
        container_metrics: sample.containers.iter().map(container_metrics).collect(),
    }
}

fn container_metrics(sample: &ContainerSample) -> cri::ContainerMetrics {
    let record = &sample.view.record;
    let reading = Reading {
        at_ns: sample.at_ns,
        started_at_ns: record.started_at_ns.unwrap_or(record.created_at_ns),
        cgroup: sample.cgroup,
        layer: sample.layer,
    };
    cri::ContainerMetrics {
        container_id: record.id.to_string(),
        metrics: container(&reading, [record.id.as_str(), record.key.name.as_str()]),
    }
}

fn container(reading: &Reading, base: [&str; 2]) -> Vec<cri::Metric> {
    let mut metrics: Vec<cri::Metric> =
        CONTAINER.iter().map(|f| metric(f.name, f.kind, reading.at_ns, &base, &[], (f.value)(reading))).collect();
    // A container's cgroup has no children of its own: its faults are also its hierarchy's.
    let memory = &reading.cgroup.memory;
    for (kind, count) in [("pgfault", memory.page_faults), ("pgmajfault", memory.major_page_faults)] {
        for scope in ["container", "hierarchy"] {
            metrics.push(metric(FAILURES, Counter, reading.at_ns, &base, &[kind, scope], count));
        }
    }
    metrics
}

fn network(at_ns: i64, base: [&str; 2], interfaces: &[InterfaceStats]) -> Vec<cri::Metric> {
    let series = |i: &InterfaceStats| {
        let interface = [i.name.as_str()];
        NETWORK.iter().map(|f| metric(f.name, f.kind, at_ns, &base, &interface, (f.value)(i))).collect::<Vec<_>>()
    };
    interfaces.iter().flat_map(series).collect()
}

fn metric(name: &str, kind: MetricType, at_ns: i64, base: &[&str], extra: &[&str], value: u64) -> cri::Metric {
    cri::Metric {
        name: name.to_owned(),
        timestamp: at_ns,
        metric_type: kind as i32,
        label_values: base.iter().chain(extra).map(|v| v.to_string()).collect(),
        value: Some(cri::UInt64Value { value }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn reading() -> Reading {
        let mut cgroup = CgroupStats { cpu: Default::default(), memory: Default::default(), processes: None };
        cgroup.cpu.total_ns = 3_500_000_000;
        cgroup.memory.limit = Some(64 << 20);
        Reading {
            at_ns: 2_000_000_000_000,
            started_at_ns: 1_000_000_000_000,
            cgroup,
            layer: Layer { bytes: 4096, inodes: 2 },
        }
    }

    #[test]
    fn every_descriptor_has_values_with_as_many_labels_as_keys() {
        let eth0 = InterfaceStats { name: "eth0".into(), rx_bytes: 10, ..Default::default() };
        let mut produced = container(&reading(), ["c1", "app"]);
        produced.extend(network(1, ["p1", POD_NAME], &[eth0]));
        let keys: HashMap<String, usize> = descriptors().into_iter().map(|d| (d.name, d.label_keys.len())).collect();
        for d in descriptors() {
            assert!(!d.help.is_empty(), "{}", d.name);
            assert!(produced.iter().any(|m| m.name == d.name), "no value for {}", d.name);
        }
        for m in &produced {
            assert_eq!(Some(&m.label_values.len()), keys.get(&m.name), "{}: {:?}", m.name, m.label_values);
        }
    }

    #[test]
    fn values_in_cadvisor_units() {
        let produced = container(&reading(), ["c1", "app"]);
        let value = |name: &str| produced.iter().find(|m| m.name == name).unwrap().value.unwrap().value;
        assert_eq!(value("container_cpu_usage_seconds_total"), 3);
        assert_eq!(value("container_spec_memory_limit_bytes"), 64 << 20);
        assert_eq!(value("container_start_time_seconds"), 1000);
        assert_eq!(value("container_fs_usage_bytes"), 4096);
        let cpu = produced.iter().find(|m| m.name == "container_cpu_usage_seconds_total").unwrap();
        assert_eq!((cpu.metric_type, cpu.label_values.clone()), (Counter as i32, vec!["c1".into(), "app".into()]));
    }
}
