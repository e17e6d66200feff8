//! What the stats and metrics RPCs share: reading a container's or a pod's usage off the async
//! workers, and its CRI form.

use std::time::{SystemTime, UNIX_EPOCH};

use crisp_network::interface_stats::{InterfaceStats, InterfaceStatsError, read_interfaces};
use crisp_pod::SandboxView;
use crisp_runtime::container::{ContainerState, ContainerView};
use crisp_runtime::stats::{CgroupStats, CpuUsage, Hierarchy, MemoryUsage, cgroup_dir};
use k8s_cri::v1 as cri;
use tonic::Status;

use super::container_convert::to_cri_container;
use super::pod_convert::to_cri_sandbox;
use crate::daemon::Daemon;

/// The kubelet's name for a pod's main interface.
const DEFAULT_INTERFACE: &str = "eth0";

/// One read of a running container.
pub struct ContainerSample {
    pub view: ContainerView,
    pub at_ns: i64,
    pub cgroup: CgroupStats,
    pub nano_cores: Option<u64>,
    pub layer: Layer,
    /// Where the writable layer lives, as the CRI's filesystem identifier.
    pub layer_dir: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub bytes: u64,
    pub inodes: u64,
}

/// One read of a ready pod: its pause and running containers together.
pub struct PodSample {
    pub view: SandboxView,
    pub at_ns: i64,
    pub cpu: CpuUsage,
    pub nano_cores: Option<u64>,
    pub memory: MemoryUsage,
    pub processes: u64,
    /// None on the host's network, whose traffic is not the pod's.
    pub interfaces: Option<Vec<InterfaceStats>>,
    pub containers: Vec<ContainerSample>,
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

fn hierarchy(daemon: &Daemon) -> Hierarchy {
    Hierarchy::host(daemon.host.cgroup_v2)
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("reading stats: {e}"))
}

/// Reads a running container; none when it does not run (or stopped while being read).
pub async fn sample_container(daemon: &Daemon, view: ContainerView) -> Result<Option<ContainerSample>, Status> {
    if view.state != ContainerState::Running {
        return Ok(None);
    }
    // The pod's cgroup parent decides where the container's cgroup is, as at its creation.
    let Ok(pod) = daemon.pods.status(&view.record.key.sandbox_id) else { return Ok(None) };
    let cgroups_path = crisp_pod::cgroup::cgroups_path(
        daemon.config.runtime.cgroup_manager,
        &pod.record.config.cgroup_parent,
        &view.record.id,
    )
    .map_err(internal)?;
    let dir = cgroup_dir(&cgroups_path).map_err(internal)?;
    let upper = daemon.containers.upper_dir(&view.record.id);
    let hierarchy = hierarchy(daemon);
    let layer_dir = upper.display().to_string();
    let read = tokio::task::spawn_blocking(move || {
        let cgroup = match hierarchy.read(&dir) {
            Ok(cgroup) => cgroup,
            Err(e) if e.is_gone() => return Ok(None),
            Err(e) => return Err(internal(e)),
        };
        let (bytes, inodes) = match crisp_image::store::usage(&upper) {
            Ok(usage) => usage,
            // Removed since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(internal(format!("{}: {e}", upper.display()))),
        };
        Ok(Some((cgroup, Layer { bytes, inodes })))
    });
    let Some((cgroup, layer)) = read.await.map_err(internal)?? else { return Ok(None) };
    let at_ns = now_ns();
    let nano_cores = daemon.cpu_rates.rate(view.record.id.as_str(), at_ns, cgroup.cpu.total_ns);
    Ok(Some(ContainerSample { view, at_ns, cgroup, nano_cores, layer, layer_dir }))
}

/// A container's sample for a list: one container's failure is logged and leaves it out,
/// rather than failing the kubelet's view of every container on the node.
pub async fn sample_or_skip(daemon: &Daemon, view: ContainerView) -> Option<ContainerSample> {
    let id = view.record.id.clone();
    sample_container(daemon, view).await.unwrap_or_else(|e| {
        tracing::warn!(container = %id, "stats: {}", e.message());
        None
    })
}

/// Reads a ready pod; none when it is not.
///
/// Its usage is that of its pause and running containers summed: without a cgroup parent from
/// the kubelet they share crisp's default parent with every other pod, so no one cgroup is the
/// pod's.
pub async fn sample_pod(daemon: &Daemon, view: SandboxView) -> Result<Option<PodSample>, Status> {
    if !view.ready {
        return Ok(None);
    }
    let mut containers = Vec::new();
    let ours = daemon.containers.list().into_iter().filter(|c| c.record.key.sandbox_id == view.record.id.as_str());
    for container in ours {
        containers.extend(sample_or_skip(daemon, container).await);
    }
    let pause_dir = cgroup_dir(&view.record.cgroups_path).map_err(internal)?;
    let pid = view.record.pause_pid.filter(|_| !view.record.host_network());
    let hierarchy = hierarchy(daemon);
    let read = tokio::task::spawn_blocking(move || {
        let pause = match hierarchy.read(&pause_dir) {
            Ok(cgroup) => cgroup,
            Err(e) if e.is_gone() => return Ok(None),
            Err(e) => return Err(internal(e)),
        };
        let interfaces = match pid.map(read_interfaces).transpose() {
            Ok(interfaces) => interfaces,
            // The pause exited after its cgroup was read: the pod is being stopped.
            Err(InterfaceStatsError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(internal(e)),
        };
        Ok(Some((pause, interfaces)))
    });
    let Some((pause, interfaces)) = read.await.map_err(internal)?? else { return Ok(None) };
    let mut cpu = pause.cpu;
    let mut memory = MemoryUsage { limit: None, max_usage: None, ..pause.memory };
    let mut processes = pause.processes.unwrap_or(0);
    for c in &containers {
        let (cc, cm) = (&c.cgroup.cpu, &c.cgroup.memory);
        cpu.total_ns += cc.total_ns;
        cpu.user_ns += cc.user_ns;
        cpu.system_ns += cc.system_ns;
        memory.usage += cm.usage;
        memory.working_set += cm.working_set;
        memory.rss += cm.rss;
        memory.cache += cm.cache;
        memory.mapped_file += cm.mapped_file;
        memory.page_faults += cm.page_faults;
        memory.major_page_faults += cm.major_page_faults;
        processes += c.cgroup.processes.unwrap_or(0);
    }
    let at_ns = now_ns();
    let nano_cores = daemon.cpu_rates.rate(view.record.id.as_str(), at_ns, cpu.total_ns);
    Ok(Some(PodSample { view, at_ns, cpu, nano_cores, memory, processes, interfaces, containers }))
}

/// Forgets the CPU samples of containers and pods that are gone.
pub fn forget_removed(daemon: &Daemon) {
    let containers = daemon.containers.list();
    let pods = daemon.pods.list();
    daemon.cpu_rates.retain(|key| {
        containers.iter().any(|c| c.record.id.as_str() == key) || pods.iter().any(|p| p.record.id.as_str() == key)
    });
}

fn value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn cpu(at_ns: i64, usage: &CpuUsage, nano_cores: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at_ns,
        usage_core_nano_seconds: value(usage.total_ns),
        usage_nano_cores: nano_cores.map(|value| cri::UInt64Value { value }),
    }
}

fn memory(at_ns: i64, usage: &MemoryUsage) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: at_ns,
        working_set_bytes: value(usage.working_set),
        available_bytes: usage.available().and_then(value),
        usage_bytes: value(usage.usage),
        rss_bytes: value(usage.rss),
        page_faults: value(usage.page_faults),
        major_page_faults: value(usage.major_page_faults),
    }
}

pub fn container_stats(sample: &ContainerSample) -> cri::ContainerStats {
    let container = to_cri_container(&sample.view);
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: container.id,
            metadata: container.metadata,
            labels: container.labels,
            annotations: container.annotations,
        }),
        cpu: Some(cpu(sample.at_ns, &sample.cgroup.cpu, sample.nano_cores)),
        memory: Some(memory(sample.at_ns, &sample.cgroup.memory)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: sample.at_ns,
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: sample.layer_dir.clone() }),
            used_bytes: value(sample.layer.bytes),
            inodes_used: value(sample.layer.inodes),
        }),
        swap: None,
    }
}

pub fn pod_stats(sample: &PodSample) -> cri::PodSandboxStats {
    let pod = to_cri_sandbox(&sample.view);
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: pod.id,
            metadata: pod.metadata,
            labels: pod.labels,
            annotations: pod.annotations,
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(sample.at_ns, &sample.cpu, sample.nano_cores)),
            memory: Some(memory(sample.at_ns, &sample.memory)),
            network: sample.interfaces.as_deref().map(|found| network(sample.at_ns, found)),
            process: Some(cri::ProcessUsage { timestamp: sample.at_ns, process_count: value(sample.processes) }),
            containers: sample.containers.iter().map(container_stats).collect(),
        }),
        windows: None,
    }
}

fn network(at_ns: i64, found: &[InterfaceStats]) -> cri::NetworkUsage {
    let usage = |i: &InterfaceStats| cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    };
    let default = found.iter().position(|i| i.name == DEFAULT_INTERFACE).or((!found.is_empty()).then_some(0));
    cri::NetworkUsage {
        timestamp: at_ns,
        default_interface: default.map(|d| usage(&found[d])),
        interfaces: found.iter().enumerate().filter(|(n, _)| Some(*n) != default).map(|(_, i)| usage(i)).collect(),
    }
}
