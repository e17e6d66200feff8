//! Pod sandboxes, as critest checks them: its PodSandbox cases (pkg/validate/pod.go and
//! pod_linux.go), the parts of its networking cases (networking.go) that need no container, and
//! its pod idempotence cases (idempotence.go). What can only be seen from inside a container (the
//! DNS config and hostname a container gets, a mapped port reaching it, a sysctl's value) waits
//! for containers; here each of those pods must run, and the refusals must refuse.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{
    DnsConfig, ListPodSandboxRequest, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata,
    PodSandboxState, PodSandboxStatus, PodSandboxStatusRequest, PortMapping, Protocol, RemovePodSandboxRequest,
    RunPodSandboxRequest, StatusRequest, StopPodSandboxRequest,
};
use tonic::Code;

use super::{case, ensure, rpc_failed};
use crate::suite::pod_config::{
    POD_LABEL, PodSpec, cgroup_parent, filter, fresh_token, fresh_uid, selector, use_host_network,
};
use crate::suite::{Case, CaseResult, Context, Stop};

pub fn cases() -> Vec<Case> {
    vec![
        case!("pod/run-ready-with-its-config", ready_with_its_config),
        case!("pod/list-filters", list_filters),
        case!("pod/stop-then-remove", stop_then_remove),
        case!("pod/stop-twice-is-ok", stop_twice),
        case!("pod/remove-without-stop", remove_without_stop),
        case!("pod/stop-and-remove-unknown-are-ok", unknown_ids),
        case!("pod/same-metadata-twice-makes-one-pod", same_metadata_twice),
        case!("pod/port-mappings", port_mappings),
        case!("pod/host-network", host_network),
        case!("pod/unknown-runtime-handler-refused", unknown_runtime_handler),
        case!("pod/namespaced-sysctls", namespaced_sysctls),
        case!("pod/host-wide-sysctl-refused", host_wide_sysctl),
        case!("pod/sysctl-injection-refused", sysctl_injection),
    ]
}

/// critest's DNS config (pkg/validate/consts.go: defaultDNSServer, -Search, -Option).
pub(super) const DNS_SERVER: &str = "10.10.10.10";
pub(super) const DNS_SEARCH: &str = "google.com";
pub(super) const DNS_OPTION: &str = "ndots:8";

/// How far from the RPC's own start and end a pod's `created_at` may be: wide enough for any
/// clock step, narrow enough to catch seconds or milliseconds sent as nanoseconds.
const CREATED_AT_SLACK_NS: i64 = 60_000_000_000;

/// critest: "runtime should support running PodSandbox", "... preserving PodSandbox
/// attributes" (pod.go), with what its DNS, hostname and log directory cases (networking.go,
/// pod.go) give the pod: READY, with the metadata, labels and annotations it was given, a
/// creation time, and an IP.
pub async fn ready_with_its_config(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (spec, mut config) = new_pod(context, "attributes").await;
    config.labels.insert("foo".into(), "bar".into());
    config.annotations = selector(&[("abc", "def"), ("crisp-conformance/annotation", "spaces, = and : kept")]);
    config.hostname = "crisp-conformance-host".into();
    config.dns_config = Some(DnsConfig {
        servers: vec![DNS_SERVER.into()],
        searches: vec![DNS_SEARCH.into()],
        options: vec![DNS_OPTION.into()],
    });
    // As critest's createLogTempDir: a directory per pod under a temporary one.
    let logs = tempfile::Builder::new()
        .prefix("crisp-conformance-logs")
        .tempdir()
        .map_err(|e| format!("creating a log directory for the pod: {e}"))?;
    let log_directory = logs.path().join(&spec.name);
    let created = tokio::fs::create_dir(&log_directory).await;
    created.map_err(|e| format!("creating {}: {e}", log_directory.display()))?;
    config.log_directory = log_directory.display().to_string();

    let before = now_ns();
    let id = run(context, &config).await?;
    let after = now_ns();
    let status = status(context, &id).await?;
    ensure(status.id == id, || format!("PodSandboxStatus {id} returned id {:?}", status.id))?;
    ensure_state(status.state, PodSandboxState::SandboxReady, "PodSandboxStatus")?;
    ensure_attributes(status.metadata.as_ref(), &status.labels, &status.annotations, &config, "PodSandboxStatus")?;
    ensure_created_at(status.created_at, before, after, "PodSandboxStatus")?;
    let network = status.network.as_ref().ok_or("PodSandboxStatus has no network status")?;
    ensure_pod_ip(&network.ip)?;
    for extra in &network.additional_ips {
        extra.ip.parse::<IpAddr>().map_err(|_| format!("additional pod IP {:?} is no IP address", extra.ip))?;
    }

    let listed = list(context, filter(&id, None, HashMap::new())).await?;
    ensure_listed(&listed, &[&id], "ListPodSandbox by id")?;
    let pod = &listed[0];
    ensure_state(pod.state, PodSandboxState::SandboxReady, "ListPodSandbox")?;
    ensure_attributes(pod.metadata.as_ref(), &pod.labels, &pod.annotations, &config, "ListPodSandbox")?;
    ensure_created_at(pod.created_at, before, after, "ListPodSandbox")?;
    drop(logs);
    Ok(())
}

/// ListPodSandbox's filters, alone and together (they AND), on a READY pod and a NOTREADY one:
/// by id, by an id prefix as crictl shows ids (containerd and CRI-O accept prefixes), by state,
/// by label selector.
pub async fn list_filters(context: &mut Context) -> CaseResult {
    const GROUP_LABEL: &str = "crisp-conformance/group";
    need_network(context).await?;
    let group = fresh_token();
    let (ready_spec, mut ready_config) = new_pod(context, "list-ready").await;
    let (stopped_spec, mut stopped_config) = new_pod(context, "list-stopped").await;
    for config in [&mut ready_config, &mut stopped_config] {
        config.labels.insert(GROUP_LABEL.into(), group.clone());
    }
    let ready = run(context, &ready_config).await?;
    let stopped = run(context, &stopped_config).await?;
    stop(context, &stopped).await?;

    let none = HashMap::new;
    let in_group = || selector(&[(GROUP_LABEL, &group)]);
    let (is_ready, not_ready) = (Some(PodSandboxState::SandboxReady), Some(PodSandboxState::SandboxNotready));
    let checks: Vec<(&str, PodSandboxFilter, Vec<&str>)> = vec![
        ("the READY pod's id", filter(&ready, None, none()), vec![&ready]),
        ("the NOTREADY pod's id", filter(&stopped, None, none()), vec![&stopped]),
        ("a prefix of the READY pod's id", filter(id_prefix(&ready), None, none()), vec![&ready]),
        ("the pods' common label", filter("", None, in_group()), vec![&ready, &stopped]),
        ("the READY pod's labels", filter("", None, ready_spec.selector()), vec![&ready]),
        ("the NOTREADY pod's labels", filter("", None, stopped_spec.selector()), vec![&stopped]),
        ("a label value no pod has", filter("", None, selector(&[(GROUP_LABEL, &format!("{group}-other"))])), vec![]),
        ("state READY and the common label", filter("", is_ready, in_group()), vec![&ready]),
        ("state NOTREADY and the common label", filter("", not_ready, in_group()), vec![&stopped]),
        ("the READY pod's id and state NOTREADY", filter(&ready, not_ready, none()), vec![]),
        ("the NOTREADY pod's id and state NOTREADY", filter(&stopped, not_ready, none()), vec![&stopped]),
        ("the READY pod's id and the other's labels", filter(&ready, None, stopped_spec.selector()), vec![]),
    ];
    for (what, filter, want) in checks {
        let listed = list(context, filter).await?;
        ensure_listed(&listed, &want, &format!("ListPodSandbox by {what}"))?;
    }
    let all = list_all(context).await?;
    for id in [&ready, &stopped] {
        ensure(all.iter().any(|pod| &pod.id == id), || format!("ListPodSandbox without a filter lacks pod {id}"))?;
    }
    Ok(())
}

/// critest: "runtime should support stopping PodSandbox", "... removing PodSandbox" (pod.go):
/// stopped, a pod is NOTREADY and still listed; removed, it is gone, and PodSandboxStatus says
/// NotFound. Removing it again succeeds: RemovePodSandbox "must not return an error if the
/// sandbox has already been removed" (api.proto).
pub async fn stop_then_remove(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (_, config) = new_pod(context, "stop-remove").await;
    let id = run(context, &config).await?;
    stop(context, &id).await?;
    ensure_state(status(context, &id).await?.state, PodSandboxState::SandboxNotready, "PodSandboxStatus after stop")?;
    let listed = list(context, filter(&id, None, HashMap::new())).await?;
    ensure_listed(&listed, &[&id], "ListPodSandbox by id after stop")?;
    ensure_state(listed[0].state, PodSandboxState::SandboxNotready, "ListPodSandbox after stop")?;

    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    remove(context, &id).await.map_err(|e| format!("removing the removed pod again: {e}"))?;
    Ok(())
}

/// critest idempotence.go, StopPodSandbox "should not return an error if already stopped": each
/// stop succeeds and leaves the pod NOTREADY.
pub async fn stop_twice(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (_, config) = new_pod(context, "stop-twice").await;
    let id = run(context, &config).await?;
    for round in ["first", "second"] {
        stop(context, &id).await.map_err(|e| format!("{round} stop: {e}"))?;
        let state = status(context, &id).await?.state;
        ensure_state(state, PodSandboxState::SandboxNotready, &format!("PodSandboxStatus after the {round} stop"))?;
    }
    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    Ok(())
}

/// RemovePodSandbox of a READY pod: "If there are any running containers in the sandbox, they
/// must be forcibly terminated and removed" (api.proto); containerd and CRI-O stop the pod
/// first. The kubelet stops before it removes, but a removal must not leave a running pod.
pub async fn remove_without_stop(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (_, config) = new_pod(context, "remove-ready").await;
    let id = run(context, &config).await?;
    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    Ok(())
}

/// critest idempotence.go, StopPodSandbox and RemovePodSandbox "should not return an error if
/// not found" (it uses a fresh UUID as the id); here also an id shaped as runtimes make them.
/// containerd 1.6 answers StopPodSandbox with NotFound and fails this, as it fails critest;
/// containerd 2 succeeds.
pub async fn unknown_ids(context: &mut Context) -> CaseResult {
    for id in [fresh_uid(), "0".repeat(64)] {
        for round in ["", " again"] {
            stop(context, &id).await.map_err(|e| format!("stopping unknown pod {id}{round}: {e}"))?;
            remove(context, &id).await.map_err(|e| format!("removing unknown pod {id}{round}: {e}"))?;
        }
    }
    Ok(())
}

/// critest does not run a pod twice with the same metadata, and runtimes answer differently:
/// containerd refuses the second RunPodSandbox (the pod's name is reserved), crisp returns the
/// READY pod's id. Both keep one pod per metadata, which is what the kubelet relies on (it never
/// asks twice for one attempt): this case asserts only that, so either answer passes; a second
/// pod, or the first one no longer READY, fails.
pub async fn same_metadata_twice(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (spec, config) = new_pod(context, "twice").await;
    let id = run(context, &config).await?;
    match try_run(context, &config, "").await {
        Ok(again) => ensure(again == id, || {
            format!("RunPodSandbox with the metadata of READY pod {id} made another pod, {again}")
        })?,
        Err(status) => ensure(!status.message().is_empty(), || {
            format!("the second RunPodSandbox was refused with {:?} and no message", status.code())
        })?,
    }
    let ours = with_pod_label(&list_all(context).await?, &spec);
    ensure_listed(&ours, &[&id], "ListPodSandbox, for pods with the twice-used metadata,")?;
    ensure_state(status(context, &id).await?.state, PodSandboxState::SandboxReady, "the first pod")?;
    Ok(())
}

/// critest's port mapping cases (networking.go: "with host port and container port", "with
/// only container port") up to the pod: it runs with both mappings. That a request reaches the
/// container through them needs a container.
pub async fn port_mappings(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (_, mut config) = new_pod(context, "ports").await;
    let host_port = free_port().await?;
    config.port_mappings = vec![
        PortMapping {
            protocol: Protocol::Tcp.into(),
            container_port: 80,
            host_port: host_port.into(),
            host_ip: "127.0.0.1".into(),
        },
        PortMapping { protocol: Protocol::Tcp.into(), container_port: 8080, host_port: 0, host_ip: String::new() },
    ];
    let id = run(context, &config).await?;
    let status = status(context, &id).await?;
    ensure_state(status.state, PodSandboxState::SandboxReady, "PodSandboxStatus")?;
    ensure_pod_ip(&status.network.map(|n| n.ip).unwrap_or_default())?;
    Ok(())
}

/// A pod in the host's network namespace (critest's "HostNetwork is true", security_context_linux.go,
/// up to the pod): it runs whether or not the pod network is ready, and stops and goes like any
/// other. Its IP is "ignored for pods sharing the host networking namespace" (api.proto,
/// PodSandboxNetworkStatus); containerd reports none, CRI-O the host's, so either passes, but an
/// address this host does not have fails.
pub async fn host_network(context: &mut Context) -> CaseResult {
    let (_, mut config) = new_pod(context, "host-network").await;
    use_host_network(&mut config);
    let id = run(context, &config).await?;
    let ready = status(context, &id).await?;
    ensure_state(ready.state, PodSandboxState::SandboxReady, "PodSandboxStatus")?;
    let ip = ready.network.map(|n| n.ip).unwrap_or_default();
    if !ip.is_empty() {
        let address: IpAddr = ip.parse().map_err(|_| format!("the host-network pod's IP {ip:?} is no IP address"))?;
        // Binding succeeds only to an address of this host's (this network namespace's) own.
        tokio::net::UdpSocket::bind((address, 0))
            .await
            .map_err(|e| format!("the host-network pod's IP {ip} is not an address of this host: {e}"))?;
    }
    stop(context, &id).await?;
    ensure_state(status(context, &id).await?.state, PodSandboxState::SandboxNotready, "PodSandboxStatus after stop")?;
    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    Ok(())
}

/// A runtime handler the runtime does not have is refused, and no pod is left. critest has no such
/// case; codes differ (crisp: InvalidArgument, containerd: "no runtime for ... is configured"
/// with code Unknown), so the message must name the handler, whatever the code. The pod uses the
/// host network so that the refusal cannot come from an unready pod network.
pub async fn unknown_runtime_handler(context: &mut Context) -> CaseResult {
    const HANDLER: &str = "crisp-conformance-no-such-handler";
    let (spec, mut config) = new_pod(context, "handler").await;
    use_host_network(&mut config);
    match try_run(context, &config, HANDLER).await {
        Ok(id) => return Err(format!("RunPodSandbox with runtime handler {HANDLER:?} made pod {id}").into()),
        Err(status) => ensure(status.message().contains(HANDLER), || {
            format!("refused with {}, which does not name the handler", rpc_failed("RunPodSandbox", status.clone()))
        })?,
    }
    ensure_none_left(context, &spec).await
}

/// critest: "should support safe sysctls" (pod_linux.go) up to the pod, with a network sysctl
/// besides its IPC one: both are namespaced and safe (the kubelet's default allow list), and the
/// pod runs with them. Their values inside the pod need a container to read.
pub async fn namespaced_sysctls(context: &mut Context) -> CaseResult {
    need_network(context).await?;
    let (_, mut config) = new_pod(context, "sysctls").await;
    let sysctls = selector(&[("kernel.shm_rmid_forced", "1"), ("net.ipv4.ip_unprivileged_port_start", "0")]);
    config.linux.get_or_insert_with(Default::default).sysctls = sysctls;
    let id = run(context, &config).await?;
    ensure_state(status(context, &id).await?.state, PodSandboxState::SandboxReady, "PodSandboxStatus")?;
    Ok(())
}

/// A sysctl the kernel keeps for the whole host is refused: a pod that set it would set it for
/// the host. runc refuses it too ("is not in a separate kernel namespace"), so every runtime that
/// uses runc names it in its error. The host's value must be unchanged after.
pub async fn host_wide_sysctl(context: &mut Context) -> CaseResult {
    let pattern = format!("/tmp/crisp-conformance-core-{}", fresh_token());
    refused_sysctl(context, "host-wide-sysctl", "kernel.core_pattern", &pattern, "kernel.core_pattern").await
}

/// CVE-2022-0811 (CRI-O, "cr8escape"): a value smuggling a second assignment, written as it
/// stands, would set `kernel.core_pattern` on the host. The pod is refused (with runc, writing the
/// value fails: it is no integer), its error names the sysctl it was given, and the host's
/// `kernel.core_pattern` is unchanged.
pub async fn sysctl_injection(context: &mut Context) -> CaseResult {
    let value = format!("1+kernel.core_pattern=/tmp/crisp-conformance-core-{}", fresh_token());
    // runc's error names the file (`/proc/sys/kernel/shm_rmid_forced`), others the key.
    refused_sysctl(context, "sysctl-injection", "kernel.shm_rmid_forced", &value, "shm_rmid_forced").await
}

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// Runs a pod with sysctl `key` = `value`, which must be refused with a message containing
/// `named`, leave no pod, and leave the host's `kernel.core_pattern` as it was (restored, and the
/// case failed, if not). Needs the pod network: refused for lack of one, the pod proves nothing.
async fn refused_sysctl(context: &mut Context, purpose: &str, key: &str, value: &str, named: &str) -> CaseResult {
    need_network(context).await?;
    let before = tokio::fs::read_to_string(CORE_PATTERN).await.map_err(|e| format!("reading {CORE_PATTERN}: {e}"))?;
    let (spec, mut config) = new_pod(context, purpose).await;
    config.linux.get_or_insert_with(Default::default).sysctls = selector(&[(key, value)]);
    let outcome = try_run(context, &config, "").await;

    let after = tokio::fs::read_to_string(CORE_PATTERN).await.map_err(|e| format!("reading {CORE_PATTERN}: {e}"))?;
    if after != before {
        let restored = match tokio::fs::write(CORE_PATTERN, before.trim_end()).await {
            Ok(()) => "restored".to_owned(),
            Err(e) => format!("could not restore it: {e}"),
        };
        return Err(format!(
            "the host's kernel.core_pattern changed from {before:?} to {after:?} ({restored}) by RunPodSandbox \
             with sysctl {key}={value:?}"
        )
        .into());
    }
    match outcome {
        Ok(id) => return Err(format!("RunPodSandbox with sysctl {key}={value:?} made pod {id}").into()),
        Err(status) => ensure(status.message().contains(named), || {
            format!("refused with {}, which does not name {named}", rpc_failed("RunPodSandbox", status.clone()))
        })?,
    }
    ensure_none_left(context, &spec).await
}

/// A pod of this run named after `purpose`, and the config critest would send for it.
pub(super) async fn new_pod(context: &mut Context, purpose: &str) -> (PodSpec, PodSandboxConfig) {
    let spec = PodSpec::new(purpose, context.run());
    let config = spec.config(&cgroup_parent(&mut context.client.runtime).await);
    (spec, config)
}

/// Skips the case, saying why, unless the runtime reports its pod network ready: a pod that needs
/// one cannot run without it, and its failure would say nothing about pods.
pub(super) async fn need_network(context: &mut Context) -> CaseResult {
    let response = context.client.runtime.status(StatusRequest { verbose: false }).await;
    let status = response.map_err(|s| rpc_failed("Status", s))?.into_inner().status.ok_or("Status: no status")?;
    match status.conditions.iter().find(|c| c.r#type == "NetworkReady") {
        Some(network) if network.status => Ok(()),
        Some(network) => Err(Stop::Skip(format!(
            "the runtime's pod network is not ready (NetworkReady false: {}: {})",
            network.reason, network.message
        ))),
        None => Err(Stop::Skip("the runtime reports no NetworkReady condition".into())),
    }
}

/// RunPodSandbox with the default runtime handler, which must succeed.
pub(super) async fn run(context: &mut Context, config: &PodSandboxConfig) -> Result<String, Stop> {
    Ok(try_run(context, config, "").await.map_err(|s| rpc_failed("RunPodSandbox", s))?)
}

/// RunPodSandbox; a pod it makes is the case's, removed after it.
async fn try_run(context: &mut Context, config: &PodSandboxConfig, handler: &str) -> Result<String, tonic::Status> {
    let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.to_owned() };
    let id = context.client.runtime.run_pod_sandbox(request).await?.into_inner().pod_sandbox_id;
    if id.is_empty() {
        return Err(tonic::Status::internal("RunPodSandbox succeeded with an empty pod id"));
    }
    context.made_pod(id.clone());
    Ok(id)
}

pub(super) async fn status(context: &mut Context, id: &str) -> Result<PodSandboxStatus, String> {
    let request = PodSandboxStatusRequest { pod_sandbox_id: id.to_owned(), verbose: false };
    let response = context.client.runtime.pod_sandbox_status(request).await;
    let response = response.map_err(|s| rpc_failed(&format!("PodSandboxStatus {id}"), s))?.into_inner();
    response.status.ok_or_else(|| format!("PodSandboxStatus {id} returned no status"))
}

async fn list(context: &mut Context, filter: PodSandboxFilter) -> Result<Vec<PodSandbox>, String> {
    let response = context.client.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }).await;
    Ok(response.map_err(|s| rpc_failed("ListPodSandbox", s))?.into_inner().items)
}

async fn list_all(context: &mut Context) -> Result<Vec<PodSandbox>, String> {
    let response = context.client.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await;
    Ok(response.map_err(|s| rpc_failed("ListPodSandbox", s))?.into_inner().items)
}

async fn stop(context: &mut Context, id: &str) -> Result<(), String> {
    let request = StopPodSandboxRequest { pod_sandbox_id: id.to_owned() };
    let response = context.client.runtime.stop_pod_sandbox(request).await;
    response.map_err(|s| rpc_failed(&format!("StopPodSandbox {id}"), s))?;
    Ok(())
}

async fn remove(context: &mut Context, id: &str) -> Result<(), String> {
    let request = RemovePodSandboxRequest { pod_sandbox_id: id.to_owned() };
    let response = context.client.runtime.remove_pod_sandbox(request).await;
    response.map_err(|s| rpc_failed(&format!("RemovePodSandbox {id}"), s))?;
    Ok(())
}

/// A removed pod is listed by no filter and unknown to PodSandboxStatus ("If the PodSandbox is
/// not present, returns an error", api.proto; the kubelet tells a gone pod by NotFound).
async fn ensure_gone(context: &mut Context, id: &str) -> Result<(), String> {
    let by_id = list(context, filter(id, None, HashMap::new())).await?;
    ensure_listed(&by_id, &[], &format!("ListPodSandbox by id after removing {id}"))?;
    let all = list_all(context).await?;
    ensure(!all.iter().any(|pod| pod.id == id), || format!("ListPodSandbox still lists removed pod {id}"))?;
    let request = PodSandboxStatusRequest { pod_sandbox_id: id.to_owned(), verbose: false };
    match context.client.runtime.pod_sandbox_status(request).await {
        Ok(response) => {
            Err(format!("PodSandboxStatus of removed pod {id} returned {:?}", response.into_inner().status))
        }
        Err(status) if status.code() == Code::NotFound => Ok(()),
        Err(status) => Err(format!(
            "PodSandboxStatus of removed pod {id}: want NotFound, got {}",
            rpc_failed("PodSandboxStatus", status)
        )),
    }
}

/// No pod of `spec` is listed after its RunPodSandbox was refused. Every pod is listed and picked
/// here by label, so that the check does not lean on the runtime's label filter.
async fn ensure_none_left(context: &mut Context, spec: &PodSpec) -> CaseResult {
    let left = with_pod_label(&list_all(context).await?, spec);
    ensure_listed(&left, &[], "ListPodSandbox, after the refused RunPodSandbox,")?;
    Ok(())
}

/// The pods in `listed` that carry `spec`'s own label.
fn with_pod_label(listed: &[PodSandbox], spec: &PodSpec) -> Vec<PodSandbox> {
    listed.iter().filter(|pod| pod.labels.get(POD_LABEL) == Some(&spec.token)).cloned().collect()
}

/// A free TCP port on 127.0.0.1, for a host port mapping. Free when asked: nothing here keeps it.
pub(super) async fn free_port() -> Result<u16, String> {
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("finding a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| format!("finding a free port: {e}"))?.port())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

/// The first characters of `id`, as crictl shows ids (13), or all but the last of a shorter one.
fn id_prefix(id: &str) -> &str {
    let len = 13.min(id.len().saturating_sub(1)).max(1);
    id.get(..len).unwrap_or(id)
}

/// `listed` holds exactly the pods `want`, each once, in any order.
fn ensure_listed(listed: &[PodSandbox], want: &[&str], how: &str) -> Result<(), String> {
    let mut got: Vec<&str> = listed.iter().map(|pod| pod.id.as_str()).collect();
    let mut want = want.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    ensure(got == want, || format!("{how} lists {got:?}, want {want:?}"))
}

fn ensure_state(state: i32, want: PodSandboxState, what: &str) -> Result<(), String> {
    let name = |state: i32| {
        PodSandboxState::try_from(state).map(|s| s.as_str_name().to_owned()).unwrap_or_else(|_| format!("{state}"))
    };
    ensure(state == i32::from(want), || format!("{what}: state {}, want {}", name(state), want.as_str_name()))
}

/// The metadata is the pod's as sent, and its labels and annotations include those sent (critest
/// checks them as subsets: a runtime may add its own).
fn ensure_attributes(
    metadata: Option<&PodSandboxMetadata>,
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
    config: &PodSandboxConfig,
    what: &str,
) -> Result<(), String> {
    ensure(metadata == config.metadata.as_ref(), || {
        format!("{what}: metadata {metadata:?}, want {:?}", config.metadata)
    })?;
    ensure_subset(labels, &config.labels, &format!("{what}: labels"))?;
    ensure_subset(annotations, &config.annotations, &format!("{what}: annotations"))
}

fn ensure_subset(got: &HashMap<String, String>, want: &HashMap<String, String>, what: &str) -> Result<(), String> {
    let mut missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(v)).collect();
    missing.sort_unstable();
    ensure(missing.is_empty(), || format!("{what} lack {missing:?} (got {got:?})"))
}

/// `created_at` is in nanoseconds since the epoch, stamped while RunPodSandbox ran
/// ([`CREATED_AT_SLACK_NS`] either way).
fn ensure_created_at(created_at: i64, before: i64, after: i64, what: &str) -> Result<(), String> {
    ensure(created_at > 0, || format!("{what}: created_at is {created_at}, want > 0"))?;
    ensure((before - CREATED_AT_SLACK_NS..=after + CREATED_AT_SLACK_NS).contains(&created_at), || {
        format!(
            "{what}: created_at {created_at} is not the time RunPodSandbox ran ({before}..{after} ns since the epoch)"
        )
    })
}

fn ensure_pod_ip(ip: &str) -> Result<(), String> {
    ensure(!ip.is_empty(), || "the pod has no IP".into())?;
    ip.parse::<IpAddr>().map(drop).map_err(|_| format!("the pod's IP {ip:?} is no IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str) -> PodSandbox {
        PodSandbox { id: id.into(), ..Default::default() }
    }

    #[test]
    fn listed_exactly() {
        let listed = [pod("b"), pod("a")];
        assert!(ensure_listed(&listed, &["a", "b"], "x").is_ok());
        assert!(ensure_listed(&[], &[], "x").is_ok());
        let err = ensure_listed(&listed, &["a"], "ListPodSandbox by id").unwrap_err();
        assert_eq!(err, r#"ListPodSandbox by id lists ["a", "b"], want ["a"]"#);
        assert!(ensure_listed(&[pod("a"), pod("a")], &["a"], "x").is_err());
        assert!(ensure_listed(&[], &["a"], "x").is_err());
    }

    #[test]
    fn prefixes() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(id_prefix(id), "0123456789abc");
        assert_eq!(id_prefix("abcd"), "abc");
        assert_eq!(id_prefix("a"), "a");
    }

    #[test]
    fn subsets() {
        let want = selector(&[("a", "1"), ("b", "2")]);
        assert!(ensure_subset(&selector(&[("a", "1"), ("b", "2"), ("c", "3")]), &want, "labels").is_ok());
        assert!(ensure_subset(&HashMap::new(), &HashMap::new(), "labels").is_ok());
        let err = ensure_subset(&selector(&[("a", "1"), ("b", "3")]), &want, "labels").unwrap_err();
        assert!(err.starts_with(r#"labels lack [("b", "2")]"#), "{err}");
    }

    #[test]
    fn states() {
        assert!(ensure_state(0, PodSandboxState::SandboxReady, "x").is_ok());
        let err = ensure_state(1, PodSandboxState::SandboxReady, "status").unwrap_err();
        assert_eq!(err, "status: state SANDBOX_NOTREADY, want SANDBOX_READY");
        assert!(ensure_state(7, PodSandboxState::SandboxNotready, "x").unwrap_err().contains("state 7"));
    }

    #[test]
    fn creation_times() {
        let (before, after) = (1_700_000_000_000_000_000, 1_700_000_000_500_000_000);
        assert!(ensure_created_at(before + 1, before, after, "x").is_ok());
        assert!(ensure_created_at(after + 1_000_000_000, before, after, "x").is_ok());
        assert!(ensure_created_at(0, before, after, "x").is_err());
        // Seconds or milliseconds are not nanoseconds.
        assert!(ensure_created_at(1_700_000_000, before, after, "x").is_err());
        assert!(ensure_created_at(1_700_000_000_000, before, after, "x").is_err());
    }

    #[test]
    fn pod_ips() {
        assert!(ensure_pod_ip("10.88.0.2").is_ok());
        assert!(ensure_pod_ip("fd00::2").is_ok());
        assert!(ensure_pod_ip("").is_err());
        assert!(ensure_pod_ip("10.88.0.2/24").is_err());
    }

    #[test]
    fn pod_label_picks_one_pod() {
        let spec = PodSpec::new("x", "run");
        let mut mine = pod("mine");
        mine.labels = spec.config("").labels;
        let mut other = pod("other");
        other.labels = PodSpec::new("x", "run").config("").labels;
        let picked = with_pod_label(&[mine, other, pod("bare")], &spec);
        assert_eq!(picked.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["mine"]);
    }
}
