//! critest security_context_linux.go, "UserNamespaces": a pod in the host's user namespace
//! (NODE) sees the host's ID mappings; one of its own (POD) sees the mapping it asked for, where
//! the runtime handler says it supports user namespaces; modes and mappings no runtime can honour
//! are refused. critest skips all six where the handler lacks the feature; here only the POD one
//! does, since a runtime that cannot make user namespaces must still refuse what it cannot do
//! rather than run the pod in the host's.

use std::time::{Duration, Instant};

use k8s_cri::v1::{IdMapping, NamespaceMode, PodSandboxConfig, RunPodSandboxRequest, StatusRequest, UserNamespace};
use tonic::Code;

use super::{Pod, busybox, log_messages, pod_config, pod_security, run_pod, run_to_exit};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::{CaseResult, Context, Stop};

/// critest's mapping for a POD user namespace: container IDs 0.. to host IDs 1000...
const POD_MAPPING: IdMapping = IdMapping { container_id: 0, host_id: 1000, length: 100000 };
/// What the container prints: its user namespace's UID mappings.
const CAT_UID_MAP: &[&str] = &["cat", "/proc/self/uid_map"];

/// One line of a `uid_map`: container ID, host ID, length.
type Mapping = (u64, u64, u64);

/// critest "runtime should support NamespaceMode_NODE": the container's `uid_map` is this
/// process's (the host's, or the user namespace this suite itself runs in).
pub async fn node(context: &mut Context) -> CaseResult {
    let host = std::fs::read_to_string("/proc/self/uid_map").map_err(|e| format!("reading /proc/self/uid_map: {e}"))?;
    let want = parse_uid_map(&host).map_err(|e| format!("this process's uid_map: {e}"))?;
    let seen = uid_map_in_pod(
        context,
        "userns-node",
        UserNamespace { mode: NamespaceMode::Node.into(), ..Default::default() },
    )
    .await?;
    ensure(seen == want, || format!("a container of a NODE user namespace pod maps {seen:?}, the host {want:?}"))?;
    Ok(())
}

/// critest "runtime should support NamespaceMode_POD": the container's `uid_map` is the one
/// mapping asked for. Needs a handler reporting the `user_namespaces` feature.
pub async fn pod(context: &mut Context) -> CaseResult {
    need_user_namespaces(context).await?;
    let seen = uid_map_in_pod(context, "userns-pod", pod_mode(vec![POD_MAPPING])).await?;
    let want = vec![(0, 1000, 100000)];
    ensure(seen == want, || format!("a container of a POD user namespace pod maps {seen:?}, want {want:?}"))?;
    Ok(())
}

/// critest "runtime should fail if more than one mapping provided".
pub async fn two_mappings_refused(context: &mut Context) -> CaseResult {
    let second = IdMapping { host_id: 2000, ..POD_MAPPING };
    refused(context, "userns-two-mappings", pod_mode(vec![POD_MAPPING, second])).await
}

/// critest "runtime should fail if container ID 0 is not mapped".
pub async fn root_unmapped_refused(context: &mut Context) -> CaseResult {
    refused(context, "userns-root-unmapped", pod_mode(vec![IdMapping { container_id: 1, ..POD_MAPPING }])).await
}

/// critest "runtime should fail with NamespaceMode_CONTAINER": a user namespace is the pod's or
/// the host's (api.proto).
pub async fn container_mode_refused(context: &mut Context) -> CaseResult {
    refused(
        context,
        "userns-container-mode",
        UserNamespace { mode: NamespaceMode::Container.into(), ..Default::default() },
    )
    .await
}

/// critest "runtime should fail with NamespaceMode_TARGET".
pub async fn target_mode_refused(context: &mut Context) -> CaseResult {
    refused(context, "userns-target-mode", UserNamespace { mode: NamespaceMode::Target.into(), ..Default::default() })
        .await
}

fn pod_mode(mappings: Vec<IdMapping>) -> UserNamespace {
    UserNamespace { mode: NamespaceMode::Pod.into(), uids: mappings.clone(), gids: mappings }
}

/// Skips unless the default runtime handler (critest's, when none is named) reports the
/// `user_namespaces` feature.
async fn need_user_namespaces(context: &mut Context) -> CaseResult {
    const HANDLER: &str = "";
    let answer = context.client.runtime.status(StatusRequest { verbose: false }).await;
    let handlers = answer.map_err(|s| rpc_failed("Status", s))?.into_inner().runtime_handlers;
    let supported = handlers.iter().any(|h| h.name == HANDLER && h.features.is_some_and(|f| f.user_namespaces));
    if supported {
        Ok(())
    } else {
        Err(Stop::Skip(format!("handler {HANDLER:?} does not report user namespace support")))
    }
}

/// A pod config for `purpose` with `userns` as its user namespace options.
async fn userns_pod_config(
    context: &mut Context,
    purpose: &str,
    userns: UserNamespace,
) -> Result<PodSandboxConfig, Stop> {
    let mut config = pod_config(context, purpose).await?;
    pod_security(&mut config).namespace_options.get_or_insert_with(Default::default).userns_options = Some(userns);
    Ok(config)
}

/// The `uid_map` a container of a pod with `userns` prints.
async fn uid_map_in_pod(context: &mut Context, purpose: &str, userns: UserNamespace) -> Result<Vec<Mapping>, Stop> {
    let config = userns_pod_config(context, purpose, userns).await?;
    let pod = run_pod(context, config).await?;
    let container = busybox(context, purpose, CAT_UID_MAP).await?;
    run_to_exit(context, &pod, &container).await?;
    Ok(logged_uid_map(&pod, &container).await?)
}

/// The mappings the container wrote to stdout, once its log holds them (within a few seconds
/// of its exit, as critest's verifyLogContents allows).
async fn logged_uid_map(pod: &Pod, container: &k8s_cri::v1::ContainerConfig) -> Result<Vec<Mapping>, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = log_messages(pod, container).await?;
        let stdout: String = messages.iter().filter(|m| m.stream == "stdout").map(|m| m.log.as_str()).collect();
        if !stdout.is_empty() {
            return parse_uid_map(&stdout).map_err(|e| format!("the container printed {stdout:?}: {e}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{} holds no uid_map on stdout: {messages:?}", pod.log_file(container).display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RunPodSandbox with `userns` must fail; a pod it makes anyway is the case's, removed after it.
async fn refused(context: &mut Context, purpose: &str, userns: UserNamespace) -> CaseResult {
    let config = userns_pod_config(context, purpose, userns.clone()).await?;
    let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
    match context.client.runtime.run_pod_sandbox(request).await {
        Ok(response) => {
            let id = response.into_inner().pod_sandbox_id;
            context.made_pod(id.clone());
            Err(format!("RunPodSandbox with user namespace options {userns:?} made pod {id}").into())
        }
        // A runtime that went away or did not answer in time refused nothing.
        Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled) => {
            Err(rpc_failed("RunPodSandbox", status).into())
        }
        Err(_) => Ok(()),
    }
}

fn parse_uid_map(text: &str) -> Result<Vec<Mapping>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let numbers: Vec<u64> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("uid_map line {line:?} is not three numbers"))?;
            match numbers[..] {
                [inside, outside, length] => Ok((inside, outside, length)),
                _ => Err(format!("uid_map line {line:?} is not three numbers")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_maps_parse() {
        let host = "         0          0 4294967295\n";
        assert_eq!(parse_uid_map(host).unwrap(), [(0, 0, 4294967295)]);
        let two = "0 1000 1\n         1     100000      65536\n";
        assert_eq!(parse_uid_map(two).unwrap(), [(0, 1000, 1), (1, 100000, 65536)]);
        assert!(parse_uid_map("0 1000\n").is_err());
        assert!(parse_uid_map("a b c\n").is_err());
        assert_eq!(parse_uid_map("").unwrap(), []);
    }
}
