//! From crisp's container records to the CRI's container messages.

use std::collections::{BTreeMap, HashMap};

use crisp_runtime::container::{ContainerState, ContainerView};
use k8s_cri::v1 as cri;

/// Where the kubelet says, by annotation, its termination message file is mounted.
const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";

/// The kubelet reads at most this much of a termination message.
const MAX_MESSAGE: u64 = 4096;

pub fn cri_state(view: &ContainerView) -> i32 {
    (match view.state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
    }) as i32
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn metadata(view: &ContainerView) -> cri::ContainerMetadata {
    cri::ContainerMetadata { name: view.record.key.name.clone(), attempt: view.record.key.attempt }
}

fn image(view: &ContainerView) -> cri::ImageSpec {
    cri::ImageSpec { image: view.record.image.clone(), ..Default::default() }
}

pub fn to_cri_container(view: &ContainerView) -> cri::Container {
    let record = &view.record;
    cri::Container {
        id: record.id.to_string(),
        pod_sandbox_id: record.key.sandbox_id.clone(),
        metadata: Some(metadata(view)),
        image: Some(image(view)),
        image_ref: if record.image_ref.is_empty() { record.image_id.clone() } else { record.image_ref.clone() },
        state: cri_state(view),
        created_at: record.created_at_ns,
        labels: unsorted(&record.labels),
        annotations: unsorted(&record.annotations),
        image_id: record.image_id.clone(),
    }
}

pub fn to_cri_status(view: &ContainerView) -> cri::ContainerStatus {
    let record = &view.record;
    let (exit_code, finished_at, reason) = match view.exit {
        Some(exit) => {
            let reason = if exit.lost {
                "Unknown"
            } else if exit.oom_killed {
                "OOMKilled"
            } else if exit.code == 0 {
                "Completed"
            } else {
                "Error"
            };
            (exit.code, exit.finished_at_ns, reason.to_owned())
        }
        None => (0, 0, String::new()),
    };
    cri::ContainerStatus {
        id: record.id.to_string(),
        metadata: Some(metadata(view)),
        state: cri_state(view),
        created_at: record.created_at_ns,
        started_at: record.started_at_ns.unwrap_or(0),
        finished_at,
        exit_code,
        image: Some(image(view)),
        image_ref: if record.image_ref.is_empty() { record.image_id.clone() } else { record.image_ref.clone() },
        reason,
        message: if view.exit.is_some() { termination_message(view) } else { String::new() },
        labels: unsorted(&record.labels),
        annotations: unsorted(&record.annotations),
        mounts: record
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                recursive_read_only: m.recursive_read_only,
                ..Default::default()
            })
            .collect(),
        log_path: record.log_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        resources: record
            .resources
            .as_ref()
            .map(|r| cri::ContainerResources { linux: Some(linux_resources(r)), windows: None }),
        image_id: record.image_id.clone(),
        user: record.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: u.uid.into(),
                gid: u.gid.into(),
                supplemental_groups: u.additional_gids.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
    }
}

/// What the container wrote to its termination message file: the host file the kubelet mounted
/// at the annotated path, read with a cap and never through a symlink.
fn termination_message(view: &ContainerView) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let record = &view.record;
    let Some(path) = record.annotations.get(TERMINATION_MESSAGE_PATH) else { return String::new() };
    let Some(mount) = record.mounts.iter().find(|m| m.container_path == *path) else { return String::new() };
    let file =
        std::fs::File::options().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&mount.host_path);
    let mut text = String::new();
    if let Ok(file) = file
        && file.metadata().is_ok_and(|m| m.is_file())
    {
        let mut bytes = Vec::new();
        let _ = file.take(MAX_MESSAGE).read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

fn linux_resources(r: &oci_spec::runtime::LinuxResources) -> cri::LinuxContainerResources {
    let cpu = r.cpu().clone().unwrap_or_default();
    let memory = (*r.memory()).unwrap_or_default();
    cri::LinuxContainerResources {
        cpu_period: cpu.period().map_or(0, |v| v as i64),
        cpu_quota: cpu.quota().unwrap_or(0),
        cpu_shares: cpu.shares().map_or(0, |v| v as i64),
        memory_limit_in_bytes: memory.limit().unwrap_or(0),
        memory_swap_limit_in_bytes: memory.swap().unwrap_or(0),
        cpuset_cpus: cpu.cpus().clone().unwrap_or_default(),
        cpuset_mems: cpu.mems().clone().unwrap_or_default(),
        ..Default::default()
    }
}
