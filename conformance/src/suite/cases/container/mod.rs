//! Containers, as critest checks them (pkg/validate of cri-tools v1.32): its Container cases
//! (container.go, container_linux.go), Security Context (security_context_linux.go), Multiple
//! Containers (multi_container_linux.go), the networking cases that need a container
//! (networking.go), the container idempotence cases (idempotence.go) and Streaming (streaming.go:
//! Exec, Attach and PortForward over SPDY and WebSocket), container stats (container.go) and the
//! metrics RPCs (pod.go). critest's own images (nginx, httpd, nonewprivs) are replaced by the
//! lab's busybox images: each case says how.
//!
//! Every case runs its containers in pods of its own on the pod network (or the host's where
//! it says so), reads what they see through ExecSync or their CRI logs, and leaves the removal
//! of both to the runner.

mod apparmor;
mod events;
mod ipc;
mod lifecycle;
mod metrics;
mod mounts;
mod pods;
mod security;
mod states;
mod stats;
mod streaming;
mod sysctls;
mod userns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ExecSyncResponse, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxSandboxSecurityContext, ListContainersRequest, PodSandboxConfig,
    RemoveContainerRequest, StartContainerRequest, StopContainerRequest,
};
use tonic::Code;

use super::pod::{need_network, new_pod, run};
use super::{case, ensure, rpc_failed};
use crate::lab::image::LabImage;
use crate::suite::pod_config::{RUN_LABEL, fresh_token, selector};
use crate::suite::{Case, Context, Stop};

pub fn cases() -> Vec<Case> {
    vec![
        case!("container/create-is-listed", lifecycle::create_is_listed),
        case!("container/start-runs", lifecycle::start_runs),
        case!("container/stop-sends-the-stop-signal", lifecycle::stop_sends_the_stop_signal),
        case!("container/stop-kills-after-the-timeout", lifecycle::stop_kills_after_the_timeout),
        case!("container/remove-created", lifecycle::remove_created),
        case!("container/remove-running", lifecycle::remove_running),
        case!("container/remove-stopped", lifecycle::remove_stopped),
        case!("container/status-in-every-state", states::every_state),
        case!("container/list-filters", lifecycle::list_filters),
        case!("container/exec-sync", lifecycle::exec_sync),
        case!("container/exec-sync-timeout", lifecycle::exec_sync_timeout),
        case!("container/log", lifecycle::log),
        case!("container/reopen-log", lifecycle::reopen_log),
        case!("container/volume", lifecycle::volume),
        case!("container/volume-through-a-symlink", lifecycle::volume_through_a_symlink),
        case!("container/mount-propagation-rprivate", mounts::propagation_private),
        case!("container/mount-propagation-rshared", mounts::propagation_bidirectional),
        case!("container/mount-propagation-rslave", mounts::propagation_host_to_container),
        case!("container/readonly-mount", mounts::readonly),
        case!("container/recursive-readonly-mount", mounts::recursive_readonly),
        case!("container/recursive-readonly-host-to-container-refused", mounts::recursive_readonly_host_to_container),
        case!("container/recursive-readonly-bidirectional-refused", mounts::recursive_readonly_bidirectional),
        case!("container/recursive-readonly-not-readonly-refused", mounts::recursive_readonly_not_readonly),
        case!("container/oom-killed", lifecycle::oom_killed),
        case!("container/stop-twice-and-remove-twice-are-ok", lifecycle::stop_twice_and_remove_twice),
        case!("container/stop-and-remove-unknown-are-ok", lifecycle::unknown_ids),
        case!("container/events-lifecycle", events::lifecycle),
        case!("container/stats", stats::of_one),
        case!("container/stats-list-by-id", stats::list_by_id),
        case!("container/stats-list-unfiltered", stats::list_unfiltered),
        case!("container/stats-list-three-created-then-started", stats::list_three_created_then_started),
        case!("container/stats-list-by-label", stats::list_by_label),
        case!("container/metric-descriptors", metrics::descriptors_described),
        case!("container/pod-sandbox-metrics", metrics::pod_sandbox_metrics),
        case!("container/run-as-user", security::run_as_user),
        case!("container/run-as-username", security::run_as_username),
        case!("container/run-as-group", security::run_as_group),
        case!("container/run-as-group-without-user-refused", security::run_as_group_without_user),
        case!("container/supplemental-groups", security::supplemental_groups),
        case!("container/supplemental-groups-policy-merge", security::supplemental_groups_policy_merge),
        case!("container/supplemental-groups-policy-strict", security::supplemental_groups_policy_strict),
        case!("container/image-user-uid", security::image_user_uid),
        case!("container/image-user-name", security::image_user_name),
        case!("container/image-user-uid-gid", security::image_user_uid_gid),
        case!("container/readonly-rootfs-false", security::readonly_rootfs_false),
        case!("container/readonly-rootfs-true", security::readonly_rootfs_true),
        case!("container/privileged", security::privileged),
        case!("container/not-privileged", security::not_privileged),
        case!("container/default-capabilities", security::default_capabilities),
        case!("container/add-capability", security::add_capability),
        case!("container/drop-capability", security::drop_capability),
        case!("container/add-all-capabilities", security::add_all_capabilities),
        case!("container/drop-all-capabilities", security::drop_all_capabilities),
        case!("container/default-masked-and-readonly-paths", security::default_masked_and_readonly_paths),
        case!("container/masked-paths", security::masked_paths),
        case!("container/readonly-paths", security::readonly_paths),
        case!("container/no-new-privs", security::no_new_privs),
        case!("container/seccomp-unconfined", security::seccomp_unconfined),
        case!("container/seccomp-nil-is-unconfined", security::seccomp_nil),
        case!("container/seccomp-runtime-default", security::seccomp_runtime_default),
        case!("container/seccomp-localhost", security::seccomp_localhost),
        case!("container/seccomp-unconfined-allows-sethostname", security::seccomp_unconfined_sethostname),
        case!("container/seccomp-localhost-blocks-sethostname", security::seccomp_localhost_blocks_sethostname),
        case!("container/seccomp-ignored-when-privileged", security::seccomp_ignored_when_privileged),
        case!("container/userns-node", userns::node),
        case!("container/userns-pod", userns::pod),
        case!("container/userns-two-mappings-refused", userns::two_mappings_refused),
        case!("container/userns-root-unmapped-refused", userns::root_unmapped_refused),
        case!("container/userns-container-mode-refused", userns::container_mode_refused),
        case!("container/userns-target-mode-refused", userns::target_mode_refused),
        case!("container/apparmor-deprecated-field-unloaded-refused", apparmor::deprecated_unloaded_refused),
        case!("container/apparmor-deprecated-field-deny-write", apparmor::deprecated_deny_write),
        case!("container/apparmor-deprecated-field-audit-write", apparmor::deprecated_audit_write),
        case!("container/apparmor-field-unloaded-refused", apparmor::field_unloaded_refused),
        case!("container/apparmor-field-deny-write", apparmor::field_deny_write),
        case!("container/apparmor-field-audit-write", apparmor::field_audit_write),
        case!("container/apparmor-both-fields-unloaded-refused", apparmor::both_unloaded_refused),
        case!("container/apparmor-both-fields-deny-write", apparmor::both_deny_write),
        case!("container/apparmor-both-fields-audit-write", apparmor::both_audit_write),
        case!("container/host-pid", pods::host_pid),
        case!("container/pod-pid", pods::pod_pid),
        case!("container/container-pid", pods::container_pid),
        case!("container/host-ipc", ipc::host_ipc),
        case!("container/pod-ipc", ipc::pod_ipc),
        case!("container/host-network", pods::host_network),
        case!("container/pod-network", pods::pod_network),
        case!("container/dns-config", pods::dns_config),
        case!("container/hostname", pods::hostname),
        case!("container/safe-sysctl", sysctls::safe),
        case!("container/unsafe-sysctl", sysctls::unsafe_namespaced),
        case!("container/port-mapping-container-port", pods::port_mapping_container_port),
        case!("container/port-mapping-host-port", pods::port_mapping_host_port),
        case!("container/multi-container-network", pods::multi_container_network),
        case!("container/multi-container-exec-and-logs", pods::multi_container_exec_and_logs),
    ]
    .into_iter()
    .chain(streaming::cases())
    .collect()
}

/// The kubelet's first attempt is 0; critest uses 2 (framework.DefaultAttempt).
const ATTEMPT: u32 = 2;

/// critest's container commands (consts.go): `top` runs until stopped, as a plain process and
/// under a shell (its "pause" command).
const TOP: &[&str] = &["top"];
const SH_TOP: &[&str] = &["sh", "-c", "top"];
/// critest's defaultLog (container.go).
const DEFAULT_LOG: &str = "hello World";

/// critest waits a minute for a state (`Eventually(..., time.Minute, ...)`).
const STATE_TIMEOUT: Duration = Duration::from_secs(60);
/// critest's defaultExecSyncTimeout, in seconds.
const EXEC_TIMEOUT: i64 = 30;

/// A READY pod a case made, with the config it was run with.
struct Pod {
    id: String,
    config: PodSandboxConfig,
}

impl Pod {
    /// Where the runtime writes the log of a container of this pod.
    fn log_file(&self, container: &ContainerConfig) -> PathBuf {
        Path::new(&self.config.log_directory).join(&container.log_path)
    }
}

/// critest's pod for containers (framework.CreatePodSandboxForContainer) with a log directory
/// of the case's own (createPodSandboxWithLogDirectory), before it runs: cases change it first.
async fn pod_config(context: &mut Context, purpose: &str) -> Result<PodSandboxConfig, Stop> {
    let (_, mut config) = new_pod(context, purpose).await;
    config.log_directory = context.scratch_dir("logs")?.display().to_string();
    Ok(config)
}

/// Runs `config` on the pod network, which must be ready (else the case skips).
async fn run_pod(context: &mut Context, config: PodSandboxConfig) -> Result<Pod, Stop> {
    need_network(context).await?;
    run_pod_anywhere(context, config).await
}

/// Runs `config`, which may use the host's network.
async fn run_pod_anywhere(context: &mut Context, config: PodSandboxConfig) -> Result<Pod, Stop> {
    let id = run(context, &config).await?;
    Ok(Pod { id, config })
}

/// A plain pod on the pod network.
async fn pod(context: &mut Context, purpose: &str) -> Result<Pod, Stop> {
    let config = pod_config(context, purpose).await?;
    run_pod(context, config).await
}

/// critest's container config: a fresh name, `image` (pulled if the runtime lacks it), the
/// command, a log file named after the container; and this run's label, for the cleanup.
async fn config(
    context: &mut Context,
    purpose: &str,
    image: LabImage,
    command: &[&str],
) -> Result<ContainerConfig, Stop> {
    context.use_image(image).await?;
    let name = format!("crisp-conformance-{purpose}-{}", fresh_token());
    let reference = context.images.reference(image);
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.clone(), attempt: ATTEMPT }),
        image: Some(ImageSpec { image: reference.clone(), user_specified_image: reference, ..Default::default() }),
        command: strings(command),
        labels: selector(&[(RUN_LABEL, context.run())]),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    })
}

/// A busybox container config.
async fn busybox(context: &mut Context, purpose: &str, command: &[&str]) -> Result<ContainerConfig, Stop> {
    config(context, purpose, LabImage::Busybox, command).await
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|&w| w.to_owned()).collect()
}

/// The container's security context, made if absent.
fn security(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    config.linux.get_or_insert_with(Default::default).security_context.get_or_insert_with(Default::default)
}

/// The pod's security context, made if absent.
fn pod_security(config: &mut PodSandboxConfig) -> &mut LinuxSandboxSecurityContext {
    config.linux.get_or_insert_with(Default::default).security_context.get_or_insert_with(Default::default)
}

/// CreateContainer in `pod`; a container it makes is the case's, removed after it.
async fn try_create(context: &mut Context, pod: &Pod, config: &ContainerConfig) -> Result<String, tonic::Status> {
    let request = CreateContainerRequest {
        pod_sandbox_id: pod.id.clone(),
        config: Some(with_pod_namespaces(config, &pod.config)),
        sandbox_config: Some(pod.config.clone()),
    };
    let id = context.client.runtime.create_container(request).await?.into_inner().container_id;
    if id.is_empty() {
        return Err(tonic::Status::internal("CreateContainer succeeded with an empty container id"));
    }
    context.made_container(id.clone());
    Ok(id)
}

/// `config` with the pod's namespace modes where the case set none, as the kubelet sends every
/// container: without them the CRI's defaults (POD for each) apply, and runtimes differ on
/// whether a container asking for the pod's PID namespace gets one in a pod that has none.
fn with_pod_namespaces(config: &ContainerConfig, pod: &PodSandboxConfig) -> ContainerConfig {
    let mut config = config.clone();
    let pod_options =
        pod.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone());
    let security = security(&mut config);
    if security.namespace_options.is_none() {
        security.namespace_options = pod_options;
    }
    config
}

/// CreateContainer, which must succeed.
async fn create(context: &mut Context, pod: &Pod, config: &ContainerConfig) -> Result<String, String> {
    try_create(context, pod, config).await.map_err(|s| rpc_failed("CreateContainer", s))
}

async fn start(context: &mut Context, id: &str) -> Result<(), String> {
    let request = StartContainerRequest { container_id: id.to_owned() };
    context
        .client
        .runtime
        .start_container(request)
        .await
        .map_err(|s| rpc_failed(&format!("StartContainer {id}"), s))?;
    Ok(())
}

/// Creates and starts a container and waits until it runs (critest's testStartContainer).
async fn run_container(context: &mut Context, pod: &Pod, config: &ContainerConfig) -> Result<String, String> {
    let id = create(context, pod, config).await?;
    start(context, &id).await?;
    wait_state(context, &id, ContainerState::ContainerRunning).await?;
    Ok(id)
}

/// Creates and starts a container that ends on its own, and waits until it has exited.
async fn run_to_exit(context: &mut Context, pod: &Pod, config: &ContainerConfig) -> Result<ContainerStatus, String> {
    let id = create(context, pod, config).await?;
    start(context, &id).await?;
    wait_state(context, &id, ContainerState::ContainerExited).await
}

async fn stop(context: &mut Context, id: &str, timeout: i64) -> Result<(), String> {
    let request = StopContainerRequest { container_id: id.to_owned(), timeout };
    context.client.runtime.stop_container(request).await.map_err(|s| rpc_failed(&format!("StopContainer {id}"), s))?;
    Ok(())
}

async fn remove(context: &mut Context, id: &str) -> Result<(), String> {
    let request = RemoveContainerRequest { container_id: id.to_owned() };
    let response = context.client.runtime.remove_container(request).await;
    response.map_err(|s| rpc_failed(&format!("RemoveContainer {id}"), s))?;
    Ok(())
}

async fn status(context: &mut Context, id: &str) -> Result<ContainerStatus, String> {
    let request = ContainerStatusRequest { container_id: id.to_owned(), verbose: false };
    let response = context.client.runtime.container_status(request).await;
    let response = response.map_err(|s| rpc_failed(&format!("ContainerStatus {id}"), s))?.into_inner();
    response.status.ok_or_else(|| format!("ContainerStatus {id} returned no status"))
}

async fn list(context: &mut Context, filter: ContainerFilter) -> Result<Vec<Container>, String> {
    let response = context.client.runtime.list_containers(ListContainersRequest { filter: Some(filter) }).await;
    Ok(response.map_err(|s| rpc_failed("ListContainers", s))?.into_inner().containers)
}

fn by_id(id: &str) -> ContainerFilter {
    ContainerFilter { id: id.to_owned(), ..Default::default() }
}

/// Polls ContainerStatus until the container is in `want` (critest: within a minute).
async fn wait_state(context: &mut Context, id: &str, want: ContainerState) -> Result<ContainerStatus, String> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let status = status(context, id).await?;
        if status.state == i32::from(want) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "container {id} is {} after {STATE_TIMEOUT:?}, want {} (exit code {}, reason {:?}, message {:?})",
                state_name(status.state),
                want.as_str_name(),
                status.exit_code,
                status.reason,
                status.message
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_name(state: i32) -> String {
    ContainerState::try_from(state).map(|s| s.as_str_name().to_owned()).unwrap_or_else(|_| format!("{state}"))
}

fn ensure_state(state: i32, want: ContainerState, what: &str) -> Result<(), String> {
    ensure(state == i32::from(want), || format!("{what}: state {}, want {}", state_name(state), want.as_str_name()))
}

/// ExecSync with critest's timeout; the command's exit code is in the response.
async fn exec(context: &mut Context, id: &str, cmd: &[&str]) -> Result<ExecSyncResponse, String> {
    let request = ExecSyncRequest { container_id: id.to_owned(), cmd: strings(cmd), timeout: EXEC_TIMEOUT };
    let response = context.client.runtime.exec_sync(request).await;
    Ok(response.map_err(|s| rpc_failed(&format!("ExecSync {cmd:?}"), s))?.into_inner())
}

/// critest's execSyncContainer: the command succeeds with nothing on stderr; its stdout.
async fn exec_ok(context: &mut Context, id: &str, cmd: &[&str]) -> Result<String, String> {
    let out = exec(context, id, cmd).await?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure(out.exit_code == 0 && stderr.is_empty(), || {
        format!("ExecSync {cmd:?}: exit code {}, stdout {stdout:?}, stderr {stderr:?}", out.exit_code)
    })?;
    Ok(stdout)
}

/// ExecSync of a command that must fail (critest: `Expect(err).To(HaveOccurred())`, which a
/// non-zero exit code is in its client); the response.
async fn exec_fails(context: &mut Context, id: &str, cmd: &[&str]) -> Result<ExecSyncResponse, String> {
    let out = exec(context, id, cmd).await?;
    ensure(out.exit_code != 0, || {
        format!("ExecSync {cmd:?} succeeded: stdout {:?}, stderr {:?}", text(&out.stdout), text(&out.stderr))
    })?;
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One message of a CRI log: a full line, its `P` parts joined.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogMessage {
    stream: String,
    /// With the newline the container wrote, as critest's parseCRILog adds it.
    log: String,
}

/// The messages of a CRI log file (`TIMESTAMP STREAM P|F TEXT` lines); a malformed line fails.
fn parse_log(content: &str) -> Result<Vec<LogMessage>, String> {
    let mut messages = Vec::new();
    let mut partial: HashMap<String, String> = HashMap::new();
    for line in content.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("log line {line:?} is not TIMESTAMP STREAM TAG TEXT"));
        };
        let rest = fields.next().unwrap_or_default();
        ensure(is_rfc3339(time), || format!("log line {line:?}: {time:?} is no RFC 3339 timestamp"))?;
        ensure(stream == "stdout" || stream == "stderr", || format!("log line {line:?}: stream {stream:?}"))?;
        let pending = partial.entry(stream.to_owned()).or_default();
        pending.push_str(rest);
        match tag {
            "P" => {}
            "F" => {
                let log = format!("{}\n", std::mem::take(pending));
                messages.push(LogMessage { stream: stream.to_owned(), log });
            }
            _ => return Err(format!("log line {line:?}: tag {tag:?} is neither P nor F")),
        }
    }
    Ok(messages)
}

/// `2006-01-02T15:04:05.999999999Z07:00`'s shape: a date, `T`, a time and a zone.
fn is_rfc3339(time: &str) -> bool {
    let bytes = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|b| b.iter().all(u8::is_ascii_digit));
    let zone = time.ends_with('Z') || time.len() > 6 && matches!(bytes[time.len() - 6], b'+' | b'-');
    bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19)
        && zone
}

/// The container's log messages so far; none while its file is not there yet.
async fn log_messages(pod: &Pod, config: &ContainerConfig) -> Result<Vec<LogMessage>, String> {
    let path = pod.log_file(config);
    match tokio::fs::read_to_string(&path).await {
        Ok(content) => parse_log(&content).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// critest's verifyLogContents: `log` (with its newline) on `stream` is in the container's log,
/// within a few seconds of being written.
async fn ensure_logged(pod: &Pod, config: &ContainerConfig, stream: &str, log: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = log_messages(pod, config).await?;
        if messages.iter().any(|m| m.stream == stream && m.log == log) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{} lacks {log:?} on {stream}: it holds {messages:?}", pod.log_file(config).display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A ContainerStatus of a container that is gone: NotFound, as the kubelet expects.
async fn ensure_gone(context: &mut Context, id: &str) -> Result<(), String> {
    let listed = list(context, by_id(id)).await?;
    ensure(listed.is_empty(), || format!("ListContainers by id still lists removed container {id}"))?;
    let request = ContainerStatusRequest { container_id: id.to_owned(), verbose: false };
    match context.client.runtime.container_status(request).await {
        Ok(response) => Err(format!("ContainerStatus of removed container {id} returned {:?}", response.into_inner())),
        Err(status) if status.code() == Code::NotFound => Ok(()),
        Err(status) => {
            Err(format!("ContainerStatus of removed container {id}: want NotFound, got {}", rpc_failed("", status)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_logs_parse() {
        let content = "2016-10-06T00:17:09.669794202Z stdout P hello \n\
                       2016-10-06T00:17:09.669794203Z stderr F oops\n\
                       2016-10-06T00:17:10.113242941+02:00 stdout F World\n\
                       2016-10-06T00:17:10.113242942Z stdout F \n";
        let messages = parse_log(content).unwrap();
        let pairs: Vec<_> = messages.iter().map(|m| (m.stream.as_str(), m.log.as_str())).collect();
        assert_eq!(pairs, [("stderr", "oops\n"), ("stdout", "hello World\n"), ("stdout", "\n")]);
        assert!(parse_log("2016-10-06T00:17:09Z stdout X a\n").is_err());
        assert!(parse_log("yesterday stdout F a\n").is_err());
        assert!(parse_log("2016-10-06T00:17:09Z stdin F a\n").is_err());
        assert!(parse_log("2016-10-06T00:17:09Z\n").is_err());
        assert_eq!(parse_log("").unwrap(), []);
    }

    #[test]
    fn timestamps() {
        assert!(is_rfc3339("2006-01-02T15:04:05.999999999Z"));
        assert!(is_rfc3339("2006-01-02T15:04:05Z"));
        assert!(is_rfc3339("2006-01-02T15:04:05.5-07:00"));
        assert!(!is_rfc3339("2006-01-02 15:04:05Z"));
        assert!(!is_rfc3339("1136214245"));
    }
}
