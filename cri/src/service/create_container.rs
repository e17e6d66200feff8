use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crisp_image::ImageRecord;
use crisp_image::overlay::{Upper, mount_overlay};
use crisp_pod::ContainerContext;
use crisp_pod::model::NamespaceMode;
use crisp_runtime::container::{
    ContainerDirs, ContainerError, ContainerKey, MountRecord, NewContainer, Prepare, PrepareFailure, Prepared,
    UserRecord,
};
use crisp_runtime::monitor::ContainerStdio;
use crisp_runtime::spec::{
    AppArmorProfile, BindMount, CapabilityChanges, ContainerSpecInput, Device, Namespaces, PidNamespace, PodFiles,
    ProcessInput, Propagation, Resources, SeccompProfile, SecurityInput, SharedNamespace, SupplementalGroupsPolicy,
    UserRequest, container_spec,
};
use k8s_cri::v1::{self as cri, CreateContainerRequest, CreateContainerResponse};
use sha2::{Digest as _, Sha256};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

pub async fn create_container(
    daemon: &Daemon,
    request: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    let config = request.config.ok_or_else(|| Status::invalid_argument("CreateContainer: no container config"))?;
    let metadata =
        config.metadata.clone().ok_or_else(|| Status::invalid_argument("CreateContainer: no container metadata"))?;
    if metadata.name.is_empty() {
        return Err(Status::invalid_argument("CreateContainer: the container has no name"));
    }
    let sandbox_id = daemon.pods.status(&request.pod_sandbox_id).map_err(ToStatus::to_status)?.record.id.to_string();
    let _pod_gate = daemon.pod_gate(&sandbox_id).read_owned().await;
    let pod = daemon.pods.container_context(&sandbox_id).map_err(ToStatus::to_status)?;
    let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
    let image = daemon.images.resolve(&image_name).map_err(ToStatus::to_status)?.ok_or_else(|| {
        Status::not_found(format!("CreateContainer: image {image_name:?} is not present: pull it first"))
    })?;

    let log_path = match (&pod.record.config.log_directory, config.log_path.as_str()) {
        (_, "") => None,
        // Relative to the pod's log directory, never out of it.
        (Some(_), path) if path.starts_with('/') => {
            return Err(Status::invalid_argument(format!(
                "CreateContainer: log path {path:?} must be relative to the pod's log directory"
            )));
        }
        (Some(dir), path) => Some(dir.join(path)),
        (None, path) => Some(PathBuf::from(path)),
    };
    if let Some(path) = &log_path
        && (!path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir))
    {
        return Err(Status::invalid_argument(format!(
            "CreateContainer: log path {} is not absolute or holds '..'",
            path.display()
        )));
    }
    if let (Some(dir), Some(path)) = (&pod.record.config.log_directory, &log_path) {
        refuse_symlinks(dir, path).await?;
    }
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let new = NewContainer {
        key: ContainerKey {
            sandbox_id: pod.record.id.to_string(),
            name: metadata.name.clone(),
            attempt: metadata.attempt,
        },
        fingerprint: fingerprint(&config),
        image: image_name.clone(),
        image_id: image.id.to_string(),
        image_ref: image.repo_digests.first().cloned().unwrap_or_else(|| image.id.to_string()),
        labels: config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        annotations: config.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        log_path: log_path.clone(),
        mounts: config
            .mounts
            .iter()
            .map(|m| MountRecord {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                recursive_read_only: m.recursive_read_only,
            })
            .collect(),
        stop_signal: stop_signal(&image.config.stop_signal)?,
        stdio: ContainerStdio { log_path, tty: config.tty, stdin: config.stdin, stdin_once: config.stdin_once },
        runtime: pod.runtime.clone(),
        monitor_dir: pod.monitor_dir.clone(),
    };
    let input = spec_input(daemon, &pod, &config, &security, &image)?;
    let prepare = prepare(daemon, image, input, pod.record.config.cgroup_parent.clone());
    let id = match daemon.containers.create(new, prepare).await {
        Ok(id) => id,
        Err(e) => {
            super::container_holds::release_stale(daemon).await;
            return Err(e.to_status());
        }
    };
    Ok(CreateContainerResponse { container_id: id.to_string() })
}

/// The pod's log directory is the kubelet's; below it nothing on the way to the log file may be
/// a symlink, or whoever planted one there would choose where the container's output goes.
async fn refuse_symlinks(dir: &Path, path: &Path) -> Result<(), Status> {
    let Ok(relative) = path.strip_prefix(dir) else { return Ok(()) };
    let mut at = dir.to_path_buf();
    for component in relative.components() {
        at.push(component);
        match tokio::fs::symlink_metadata(&at).await {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Status::invalid_argument(format!(
                    "CreateContainer: log path {} leads through the symlink {}",
                    path.display(),
                    at.display()
                )));
            }
            Ok(_) => {}
            // Nothing below a missing entry exists; the monitor makes the file without following
            // a symlink that appears there meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Status::internal(format!("CreateContainer: checking {}: {e}", at.display()))),
        }
    }
    Ok(())
}

/// The request in a canonical form: a retry must be the same request to get the same container.
fn fingerprint(config: &cri::ContainerConfig) -> String {
    let mut normalized = config.clone();
    let labels: BTreeMap<_, _> = std::mem::take(&mut normalized.labels).into_iter().collect();
    let annotations: BTreeMap<_, _> = std::mem::take(&mut normalized.annotations).into_iter().collect();
    // Every map of the message, sorted: a HashMap's order differs from one request to the next.
    let unified: BTreeMap<_, _> = normalized
        .linux
        .as_mut()
        .and_then(|l| l.resources.as_mut())
        .map(|r| std::mem::take(&mut r.unified).into_iter().collect())
        .unwrap_or_default();
    let text = format!("{normalized:?}\n{labels:?}\n{annotations:?}\n{unified:?}");
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The image's STOPSIGNAL, by name or number; SIGTERM without one.
fn stop_signal(text: &str) -> Result<i32, Status> {
    if text.is_empty() {
        return Ok(libc::SIGTERM);
    }
    let name = text.trim_start_matches("SIG");
    let number = name.parse::<i32>().ok().or_else(|| {
        let upper = format!("SIG{}", name.to_ascii_uppercase());
        nix::sys::signal::Signal::iterator().find(|s| s.as_str() == upper).map(|s| s as i32)
    });
    number.filter(|n| (1..=64).contains(n)).ok_or_else(|| {
        Status::invalid_argument(format!("CreateContainer: the image's STOPSIGNAL {text:?} is not a signal"))
    })
}

fn spec_input(
    daemon: &Daemon,
    pod: &ContainerContext,
    config: &cri::ContainerConfig,
    security: &cri::LinuxContainerSecurityContext,
    image: &ImageRecord,
) -> Result<ContainerSpecInput, Status> {
    let pause = pod.record.pause_pid.ok_or_else(|| Status::failed_precondition("the pod's pause has no pid"))?;
    let ns = |kind: &str| PathBuf::from(format!("/proc/{pause}/ns/{kind}"));
    let modes = pod.record.config.namespaces;
    let shared = |mode: NamespaceMode, kind: &str| match mode {
        NamespaceMode::Node => SharedNamespace::Node,
        _ => SharedNamespace::Pod(ns(kind)),
    };
    let options = security.namespace_options.clone().unwrap_or_default();
    let pid = match cri::NamespaceMode::try_from(options.pid) {
        Ok(cri::NamespaceMode::Node) => PidNamespace::Node,
        Ok(cri::NamespaceMode::Pod) if modes.pid == NamespaceMode::Pod => PidNamespace::Pod(ns("pid")),
        Ok(cri::NamespaceMode::Pod) | Ok(cri::NamespaceMode::Container) => PidNamespace::Container,
        Ok(cri::NamespaceMode::Target) => {
            let target = daemon.containers.status(&options.target_id).map_err(|e| e.to_status())?;
            let pid = target.record.pid.filter(|_| target.state == crisp_runtime::container::ContainerState::Running);
            let pid = pid.ok_or_else(|| {
                Status::failed_precondition(format!("target container {} is not running", options.target_id))
            })?;
            PidNamespace::Target(PathBuf::from(format!("/proc/{pid}/ns/pid")))
        }
        Err(_) => return Err(Status::invalid_argument(format!("unknown PID namespace mode {}", options.pid))),
    };
    let resources = linux_resources(config.linux.as_ref().and_then(|l| l.resources.as_ref()));
    Ok(ContainerSpecInput {
        rootfs: PathBuf::new(),
        process: ProcessInput {
            command: config.command.clone(),
            args: config.args.clone(),
            image_entrypoint: image.config.entrypoint.clone(),
            image_cmd: image.config.cmd.clone(),
            env: config.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect(),
            image_env: image.config.env.clone(),
            working_dir: Some(&config.working_dir).filter(|d| !d.is_empty()).map(PathBuf::from),
            image_working_dir: Some(&image.config.working_dir).filter(|d| !d.is_empty()).map(PathBuf::from),
            hostname: pod.record.hostname.clone(),
            tty: config.tty,
            rlimits: Vec::new(),
        },
        user: UserRequest {
            run_as_user: security.run_as_user.as_ref().map(|v| v.value),
            run_as_username: Some(&security.run_as_username).filter(|n| !n.is_empty()).cloned(),
            run_as_group: security.run_as_group.as_ref().map(|v| v.value),
            supplemental_groups: security.supplemental_groups.clone(),
            supplemental_groups_policy: if security.supplemental_groups_policy == 1 {
                SupplementalGroupsPolicy::Strict
            } else {
                SupplementalGroupsPolicy::Merge
            },
        },
        image_user: image.config.user.clone(),
        security: SecurityInput {
            privileged: security.privileged,
            sandbox_privileged: pod.record.config.privileged,
            capabilities: security
                .capabilities
                .as_ref()
                .map(|c| CapabilityChanges { add: c.add_capabilities.clone(), drop: c.drop_capabilities.clone() })
                .unwrap_or_default(),
            readonly_rootfs: security.readonly_rootfs,
            no_new_privs: security.no_new_privs,
            // The kubelet sends the lists it wants; empty lists from a client that sets
            // nothing mean the defaults, unless the pod is privileged (then none anyway).
            masked_paths: Some(security.masked_paths.clone()).filter(|p| !p.is_empty()),
            readonly_paths: Some(security.readonly_paths.clone()).filter(|p| !p.is_empty()),
            seccomp: seccomp(security)?,
            apparmor: apparmor(security),
        },
        mounts: config
            .mounts
            .iter()
            .map(|m| {
                Ok(BindMount {
                    container_path: m.container_path.clone().into(),
                    host_path: m.host_path.clone().into(),
                    readonly: m.readonly,
                    recursive_readonly: m.recursive_read_only,
                    propagation: match cri::MountPropagation::try_from(m.propagation) {
                        Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
                        Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
                        Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
                        Err(_) => {
                            return Err(Status::invalid_argument(format!(
                                "unknown mount propagation {}",
                                m.propagation
                            )));
                        }
                    },
                })
            })
            .collect::<Result<_, _>>()?,
        pod_files: PodFiles {
            hostname: Some(pod.hostname_file.clone()),
            hosts: Some(pod.hosts_file.clone()),
            resolv_conf: Some(pod.resolv_conf.clone()),
            shm: pod.shm.clone(),
        },
        devices: config
            .devices
            .iter()
            .map(|d| Device {
                host_path: d.host_path.clone().into(),
                container_path: d.container_path.clone().into(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        image_volumes: image.config.volumes.clone(),
        volumes_dir: PathBuf::new(),
        namespaces: Namespaces {
            network: shared(modes.network, "net"),
            ipc: shared(modes.ipc, "ipc"),
            uts: shared(modes.network, "uts"),
            pid,
        },
        resources,
        // Named after the container's ID, which its creation picks.
        cgroups_path: String::new(),
        host: daemon.host.clone(),
        oom: daemon.oom_score_adj,
        runtime_supports_rro: daemon.handler_features(&pod.runtime.handler().name).recursive_read_only,
    })
}

pub(super) fn linux_resources(r: Option<&cri::LinuxContainerResources>) -> Resources {
    let Some(r) = r else { return Resources::default() };
    let positive = |v: i64| (v > 0).then_some(v);
    Resources {
        cpu_shares: positive(r.cpu_shares).map(|v| v as u64),
        cpu_quota: positive(r.cpu_quota),
        cpu_period: positive(r.cpu_period).map(|v| v as u64),
        cpuset_cpus: Some(r.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
        cpuset_mems: Some(r.cpuset_mems.clone()).filter(|s| !s.is_empty()),
        memory_limit: positive(r.memory_limit_in_bytes),
        memory_swap_limit: positive(r.memory_swap_limit_in_bytes),
        hugepage_limits: r.hugepage_limits.iter().map(|h| (h.page_size.clone(), h.limit)).collect(),
        pids_limit: None,
        unified: r.unified.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        oom_score_adj: r.oom_score_adj.clamp(-1000, 1000) as i32,
    }
}

/// The CRI's seccomp field, else its older profile path (older kubelets send only that); none
/// at all is unconfined, as the kubelet means it.
#[allow(deprecated)]
fn seccomp(security: &cri::LinuxContainerSecurityContext) -> Result<SeccompProfile, Status> {
    use cri::security_profile::ProfileType;
    if let Some(profile) = &security.seccomp {
        return match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(SeccompProfile::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(SeccompProfile::Unconfined),
            Ok(ProfileType::Localhost) => Ok(SeccompProfile::Localhost(profile.localhost_ref.clone().into())),
            Err(_) => Err(Status::invalid_argument(format!("unknown seccomp profile type {}", profile.profile_type))),
        };
    }
    match security.seccomp_profile_path.as_str() {
        "" | "unconfined" => Ok(SeccompProfile::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompProfile::RuntimeDefault),
        path => match path.strip_prefix("localhost/") {
            Some(file) => Ok(SeccompProfile::Localhost(file.into())),
            None => Err(Status::invalid_argument(format!("unknown seccomp profile {path:?}"))),
        },
    }
}

/// The CRI's apparmor field, else its older profile name (older kubelets send only that). The
/// kubelet's `localhost_ref` is the bare profile name, but critest sends it with the older
/// field's `localhost/` prefix, which containerd and CRI-O drop too.
#[allow(deprecated)]
fn apparmor(security: &cri::LinuxContainerSecurityContext) -> AppArmorProfile {
    use cri::security_profile::ProfileType;
    match &security.apparmor {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::Localhost) => {
                let name = p.localhost_ref.strip_prefix(LOCALHOST_PREFIX).unwrap_or(&p.localhost_ref);
                AppArmorProfile::Localhost(name.to_owned())
            }
            Ok(ProfileType::Unconfined) => AppArmorProfile::Unconfined,
            _ => AppArmorProfile::RuntimeDefault,
        },
        None => match security.apparmor_profile.as_str() {
            "unconfined" => AppArmorProfile::Unconfined,
            p => match p.strip_prefix(LOCALHOST_PREFIX) {
                Some(name) => AppArmorProfile::Localhost(name.to_owned()),
                None => AppArmorProfile::RuntimeDefault,
            },
        },
    }
}

/// How the older `apparmor_profile` field names a profile loaded on the host.
const LOCALHOST_PREFIX: &str = "localhost/";

/// Mounts the image's layers under the container's own upper dir and writes its spec; holds
/// the image for as long as the container exists.
fn prepare(daemon: &Daemon, image: ImageRecord, mut input: ContainerSpecInput, pod_parent: String) -> Prepare {
    let images = daemon.images.clone();
    let manager = daemon.config.runtime.cgroup_manager;
    Box::new(move |dirs: ContainerDirs| {
        Box::pin(async move {
            images
                .hold(&super::container_holds::holder(&dirs.id), &image.id)
                .map_err(|e| internal(format!("holding image {}: {e}", image.id)))?;
            let lowers: Vec<PathBuf> = image.chain_ids.iter().rev().map(|c| images.layer_path(c)).collect();
            input.rootfs = dirs.rootfs.clone();
            input.volumes_dir = dirs.upper.with_file_name("volumes");
            input.cgroups_path = crisp_pod::cgroup::cgroups_path(manager, &pod_parent, &dirs.id)
                .map_err(|e| ContainerError::Prepare { kind: PrepareFailure::Invalid, message: e.to_string() })?;
            tokio::task::spawn_blocking(move || {
                let upper = Upper { upper: &dirs.upper, work: &dirs.work };
                mount_overlay(&lowers, Some(upper), &dirs.rootfs).map_err(|e| internal(e.to_string()))?;
                let spec = container_spec(&input)
                    .map_err(|e| ContainerError::Prepare { kind: spec_failure(&e), message: e.to_string() })?;
                for volume in &spec.volumes {
                    std::fs::create_dir_all(&volume.host_path)
                        .map_err(|e| internal(format!("creating {}: {e}", volume.host_path.display())))?;
                }
                let user = UserRecord {
                    uid: spec.user.uid,
                    gid: spec.user.gid,
                    additional_gids: spec.user.additional_gids.clone(),
                };
                Ok(Prepared { spec: spec.spec, user: Some(user) })
            })
            .await
            .map_err(|e| internal(format!("preparing the container: {e}")))?
        })
    })
}

fn spec_failure(e: &crisp_runtime::spec::SpecError) -> PrepareFailure {
    use crisp_runtime::spec::SpecError as E;
    match e {
        E::Rootfs(_) => PrepareFailure::Internal,
        E::Mount(crisp_runtime::spec::MountError::MountInfo(_)) => PrepareFailure::Internal,
        _ => PrepareFailure::Invalid,
    }
}

fn internal(message: String) -> ContainerError {
    ContainerError::Prepare { kind: PrepareFailure::Internal, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn apparmor_profiles_by_either_field() {
        use cri::security_profile::ProfileType;
        let localhost = |reference: &str| cri::SecurityProfile {
            profile_type: ProfileType::Localhost.into(),
            localhost_ref: reference.into(),
        };
        let with = |new: Option<cri::SecurityProfile>, old: &str| cri::LinuxContainerSecurityContext {
            apparmor: new,
            apparmor_profile: old.into(),
            ..Default::default()
        };
        let named = |name: &str| AppArmorProfile::Localhost(name.into());
        assert_eq!(apparmor(&with(Some(localhost("deny-write")), "")), named("deny-write"));
        assert_eq!(apparmor(&with(Some(localhost("localhost/deny-write")), "")), named("deny-write"));
        assert_eq!(apparmor(&with(Some(localhost("audit")), "localhost/absent")), named("audit"), "the new field wins");
        assert_eq!(apparmor(&with(None, "localhost/deny-write")), named("deny-write"));
        assert_eq!(apparmor(&with(None, "unconfined")), AppArmorProfile::Unconfined);
        assert_eq!(apparmor(&with(None, "")), AppArmorProfile::RuntimeDefault);
        assert_eq!(apparmor(&with(None, "runtime/default")), AppArmorProfile::RuntimeDefault);
    }
}
