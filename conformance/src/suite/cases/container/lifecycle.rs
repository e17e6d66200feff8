//! The container lifecycle (critest container.go "runtime should support basic operations on
//! container", "... log", "... adding volume and device"; container_linux.go "Container OOM";
//! idempotence.go StopContainer and RemoveContainer).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, LinuxContainerResources, Mount, ReopenContainerLogRequest,
};

use super::{
    DEFAULT_LOG, SH_TOP, TOP, busybox, by_id, create, ensure_gone, ensure_logged, ensure_state, exec, exec_ok, list,
    log_messages, pod, remove, run_container, run_to_exit, status, stop, wait_state,
};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::pod_config::{fresh_uid, selector};
use crate::suite::{CaseResult, Context};

/// critest's defaultStopContainerTimeout, in seconds.
const STOP_TIMEOUT: i64 = 60;

/// critest container.go:81 "runtime should support creating container": the created container
/// is listed by its id. Here also: it is CREATED in its pod, with its metadata, labels and
/// annotations, a creation time and no start time, in both ListContainers and ContainerStatus.
pub async fn create_is_listed(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-create").await?;
    let mut config = busybox(context, "create", TOP).await?;
    config.labels.insert("foo".into(), "bar".into());
    config.annotations = selector(&[("crisp-conformance/annotation", "kept as sent")]);
    let before = now_ns();
    let id = create(context, &pod, &config).await?;
    let after = now_ns();

    let listed = list(context, by_id(&id)).await?;
    ensure(listed.len() == 1 && listed[0].id == id, || format!("ListContainers by id {id} lists {listed:?}"))?;
    let container = &listed[0];
    ensure(container.pod_sandbox_id == pod.id, || {
        format!("ListContainers: pod {:?}, want {}", container.pod_sandbox_id, pod.id)
    })?;
    ensure_state(container.state, ContainerState::ContainerCreated, "ListContainers")?;
    ensure(container.metadata == config.metadata, || {
        format!("ListContainers: metadata {:?}, want {:?}", container.metadata, config.metadata)
    })?;
    ensure_subset(&container.labels, &config.labels, "ListContainers: labels")?;
    ensure_subset(&container.annotations, &config.annotations, "ListContainers: annotations")?;

    let status = status(context, &id).await?;
    ensure(status.id == id, || format!("ContainerStatus {id} returned id {:?}", status.id))?;
    ensure_state(status.state, ContainerState::ContainerCreated, "ContainerStatus")?;
    ensure(status.metadata == config.metadata, || {
        format!("ContainerStatus: metadata {:?}, want {:?}", status.metadata, config.metadata)
    })?;
    ensure_subset(&status.labels, &config.labels, "ContainerStatus: labels")?;
    ensure_subset(&status.annotations, &config.annotations, "ContainerStatus: annotations")?;
    ensure((before - SLACK_NS..=after + SLACK_NS).contains(&status.created_at), || {
        format!("ContainerStatus: created_at {} is not when CreateContainer ran ({before}..{after})", status.created_at)
    })?;
    ensure(status.started_at == 0 && status.finished_at == 0, || {
        format!("a created container has started_at {} and finished_at {}", status.started_at, status.finished_at)
    })?;
    ensure(!status.image_ref.is_empty(), || "ContainerStatus: image_ref is empty".into())?;
    ensure(status.log_path.ends_with(&config.log_path), || {
        format!("ContainerStatus: log_path {:?} is not the config's {:?}", status.log_path, config.log_path)
    })?;
    Ok(())
}

/// critest container.go:90 "runtime should support starting container": RUNNING after start,
/// with a start time after its creation time.
pub async fn start_runs(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-start").await?;
    let config = busybox(context, "start", TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    let status = status(context, &id).await?;
    ensure(status.started_at >= status.created_at && status.started_at > 0, || {
        format!("started_at {} is not after created_at {}", status.started_at, status.created_at)
    })?;
    ensure(status.finished_at == 0, || format!("a running container has finished_at {}", status.finished_at))?;
    let running = list(context, by_id(&id)).await?;
    ensure(running.len() == 1, || format!("ListContainers by id lists {running:?}"))?;
    ensure_state(running[0].state, ContainerState::ContainerRunning, "ListContainers")?;
    Ok(())
}

/// critest container.go:98 "runtime should support stopping container": StopContainer returns
/// within its timeout and the container is EXITED. The container here handles SIGTERM by exiting
/// 0, so the exit code also shows that the stop signal (busybox sets none: SIGTERM) reached it;
/// a clean exit is "Completed", with a finish time.
pub async fn stop_sends_the_stop_signal(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-stop").await?;
    let config = busybox(context, "stop", &["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]).await?;
    let id = run_container(context, &pod, &config).await?;
    let started = Instant::now();
    stop(context, &id, STOP_TIMEOUT).await?;
    let took = started.elapsed();
    ensure(took < Duration::from_secs(STOP_TIMEOUT as u64), || {
        format!("StopContainer of a container that exits on SIGTERM took {took:?}")
    })?;
    let status = wait_state(context, &id, ContainerState::ContainerExited).await?;
    ensure(status.exit_code == 0, || {
        format!("the container that exits 0 on SIGTERM exited {} ({:?}): no SIGTERM?", status.exit_code, status.reason)
    })?;
    ensure(status.reason == "Completed", || format!("reason {:?} for exit code 0, want \"Completed\"", status.reason))?;
    ensure(status.finished_at >= status.started_at, || {
        format!("finished_at {} is before started_at {}", status.finished_at, status.started_at)
    })?;
    Ok(())
}

/// StopContainer of a container that ignores SIGTERM kills it once the timeout has passed:
/// the RPC ends about then, and the exit code is 137 (SIGKILL).
pub async fn stop_kills_after_the_timeout(context: &mut Context) -> CaseResult {
    const TIMEOUT: i64 = 2;
    let pod = pod(context, "container-stop-kill").await?;
    let config = busybox(context, "stop-kill", &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]).await?;
    let id = run_container(context, &pod, &config).await?;
    let started = Instant::now();
    stop(context, &id, TIMEOUT).await?;
    let took = started.elapsed();
    let grace = Duration::from_secs(TIMEOUT as u64);
    ensure(took >= grace - Duration::from_millis(100) && took < grace + Duration::from_secs(20), || {
        format!("StopContainer with timeout {TIMEOUT}s of a container that ignores SIGTERM took {took:?}")
    })?;
    let status = wait_state(context, &id, ContainerState::ContainerExited).await?;
    ensure(status.exit_code == 137, || format!("exit code {} after the SIGKILL, want 137", status.exit_code))?;
    Ok(())
}

/// critest container.go:109 "runtime should support removing created container".
pub async fn remove_created(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-remove-created").await?;
    let config = busybox(context, "remove-created", SH_TOP).await?;
    let id = create(context, &pod, &config).await?;
    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    Ok(())
}

/// critest container.go:119 "runtime should support removing running container": removed
/// without a stop first.
pub async fn remove_running(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-remove-running").await?;
    let config = busybox(context, "remove-running", SH_TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    Ok(())
}

/// critest container.go:132 "runtime should support removing stopped container".
pub async fn remove_stopped(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-remove-stopped").await?;
    let config = busybox(context, "remove-stopped", SH_TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    stop(context, &id, 0).await?;
    wait_state(context, &id, ContainerState::ContainerExited).await?;
    remove(context, &id).await?;
    ensure_gone(context, &id).await?;
    Ok(())
}

/// ListContainers' filters (critest uses the id filter throughout): by id, a prefix of it, pod,
/// state and labels, alone and together, on a running container and a created one of one pod.
pub async fn list_filters(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-list").await?;
    let mut running_config = busybox(context, "list-running", TOP).await?;
    running_config.labels.insert("crisp-conformance/role".into(), "running".into());
    let mut created_config = busybox(context, "list-created", TOP).await?;
    created_config.labels.insert("crisp-conformance/role".into(), "created".into());
    let running = run_container(context, &pod, &running_config).await?;
    let created = create(context, &pod, &created_config).await?;

    let state = |s: ContainerState| Some(ContainerStateValue { state: s.into() });
    let role = |r: &str| selector(&[("crisp-conformance/role", r)]);
    let in_pod = |f: ContainerFilter| ContainerFilter { pod_sandbox_id: pod.id.clone(), ..f };
    let checks: Vec<(&str, ContainerFilter, Vec<&str>)> = vec![
        ("the pod", in_pod(ContainerFilter::default()), vec![&running, &created]),
        ("the running one's id", by_id(&running), vec![&running]),
        ("a prefix of the created one's id", by_id(&created[..13.min(created.len())]), vec![&created]),
        (
            "the pod and state RUNNING",
            in_pod(ContainerFilter { state: state(ContainerState::ContainerRunning), ..Default::default() }),
            vec![&running],
        ),
        (
            "the pod and state CREATED",
            in_pod(ContainerFilter { state: state(ContainerState::ContainerCreated), ..Default::default() }),
            vec![&created],
        ),
        (
            "the pod and state EXITED",
            in_pod(ContainerFilter { state: state(ContainerState::ContainerExited), ..Default::default() }),
            vec![],
        ),
        (
            "the pod and a label",
            in_pod(ContainerFilter { label_selector: role("created"), ..Default::default() }),
            vec![&created],
        ),
        (
            "the running one's id and the other's label",
            ContainerFilter { label_selector: role("created"), ..by_id(&running) },
            vec![],
        ),
        ("another pod", ContainerFilter { pod_sandbox_id: "0".repeat(64), ..Default::default() }, vec![]),
    ];
    for (what, filter, want) in checks {
        let mut got: Vec<String> = list(context, filter).await?.into_iter().map(|c| c.id).collect();
        let mut want: Vec<String> = want.into_iter().map(str::to_owned).collect();
        got.sort_unstable();
        want.sort_unstable();
        ensure(got == want, || format!("ListContainers by {what} lists {got:?}, want {want:?}"))?;
    }
    Ok(())
}

/// critest container.go:148 "runtime should support execSync": `echo -n hello` prints `hello`
/// and nothing on stderr. Here also: each stream comes back apart, with the exit code.
pub async fn exec_sync(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-exec").await?;
    let config = busybox(context, "exec", TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    let hello = exec_ok(context, &id, &["echo", "-n", "hello"]).await?;
    ensure(hello == "hello", || format!("`echo -n hello` printed {hello:?}"))?;
    let out = exec(context, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"]).await?;
    let (stdout, stderr) = (super::text(&out.stdout), super::text(&out.stderr));
    ensure(out.exit_code == 3 && stdout == "out\n" && stderr == "err\n", || {
        format!(
            "`echo out; echo err >&2; exit 3` gave exit code {}, stdout {stdout:?}, stderr {stderr:?}",
            out.exit_code
        )
    })?;
    Ok(())
}

/// critest container.go:159 "runtime should support execSync with timeout": a command that
/// outlives its timeout fails (an error, or a failing exit code) about when the timeout ends,
/// and is gone after.
pub async fn exec_sync_timeout(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-exec-timeout").await?;
    let config = busybox(context, "exec-timeout", TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    let request =
        k8s_cri::v1::ExecSyncRequest { container_id: id.clone(), cmd: super::strings(&["sleep", "4321"]), timeout: 1 };
    let started = Instant::now();
    if let Ok(response) = context.client.runtime.exec_sync(request).await {
        let response = response.into_inner();
        ensure(response.exit_code != 0, || {
            format!("ExecSync `sleep 4321` with a 1s timeout succeeded after {:?}", started.elapsed())
        })?;
    }
    let took = started.elapsed();
    ensure(took < Duration::from_secs(15), || format!("ExecSync with a 1s timeout returned after {took:?}"))?;
    // critest asks `pgrep`, which Debian's busybox lacks; `pidof` answers the same.
    let left = exec_ok(context, &id, &["sh", "-c", "pidof sleep || true"]).await?;
    ensure(left.trim().is_empty(), || format!("the timed-out `sleep` still runs: pidof found {left:?}"))?;
    Ok(())
}

/// critest container.go:332 "runtime should support starting container with log": what the
/// container prints is in its log, in the CRI format, on stdout.
pub async fn log(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-log").await?;
    let config = busybox(context, "log", &["echo", DEFAULT_LOG]).await?;
    let status = run_to_exit(context, &pod, &config).await?;
    ensure(status.exit_code == 0, || format!("`echo` exited {}", status.exit_code))?;
    ensure_logged(&pod, &config, "stdout", &format!("{DEFAULT_LOG}\n")).await?;
    Ok(())
}

/// critest container.go:348 "runtime should support reopening container log": after the log
/// is renamed and reopened, a new file gets the output and the renamed one no more.
pub async fn reopen_log(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-reopen-log").await?;
    let command = format!("while true; do echo {DEFAULT_LOG}; sleep 0.2; done");
    let config = busybox(context, "reopen-log", &["sh", "-c", &command]).await?;
    let id = run_container(context, &pod, &config).await?;
    wait_for_log(&pod, &config).await?;

    let path = pod.log_file(&config);
    let renamed = path.with_extension("log.new");
    tokio::fs::rename(&path, &renamed).await.map_err(|e| format!("renaming {}: {e}", path.display()))?;
    let request = ReopenContainerLogRequest { container_id: id.clone() };
    context.client.runtime.reopen_container_log(request).await.map_err(|s| rpc_failed("ReopenContainerLog", s))?;
    ensure(tokio::fs::try_exists(&path).await.unwrap_or(false), || {
        format!("ReopenContainerLog did not make a new {}", path.display())
    })?;
    wait_for_log(&pod, &config).await?;
    let old = tokio::fs::read_to_string(&renamed).await.map_err(|e| format!("reading {}: {e}", renamed.display()))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = tokio::fs::read_to_string(&renamed).await.map_err(|e| format!("reading {}: {e}", renamed.display()))?;
    ensure(later == old, || format!("the renamed log still grows after ReopenContainerLog: {old:?} then {later:?}"))?;
    Ok(())
}

/// Waits until the container's log holds a message.
async fn wait_for_log(pod: &super::Pod, config: &k8s_cri::v1::ContainerConfig) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_messages(pod, config).await?.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{} got no log within a minute", pod.log_file(config).display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// critest container.go:274 "runtime should support starting container with volume": a host
/// directory mounted at the same path shows its file inside.
pub async fn volume(context: &mut Context) -> CaseResult {
    let host = context.scratch_dir("volume")?;
    volume_at(context, &host, "volume").await
}

/// critest container.go:291 "... with volume when host path is a symlink".
pub async fn volume_through_a_symlink(context: &mut Context) -> CaseResult {
    let dir = context.scratch_dir("volume-symlink")?;
    let target = dir.join("target");
    let link = dir.join("link");
    tokio::fs::create_dir(&target).await.map_err(|e| format!("creating {}: {e}", target.display()))?;
    tokio::fs::symlink(&target, &link).await.map_err(|e| format!("creating {}: {e}", link.display()))?;
    volume_at(context, &link, "volume-symlink").await
}

async fn volume_at(context: &mut Context, host: &std::path::Path, purpose: &str) -> CaseResult {
    let flag = host.join("testVolume.file");
    tokio::fs::write(&flag, b"").await.map_err(|e| format!("creating {}: {e}", flag.display()))?;
    let host_path = host.display().to_string();
    let pod = pod(context, &format!("container-{purpose}")).await?;
    let mut config = busybox(context, purpose, SH_TOP).await?;
    config.mounts =
        vec![Mount { host_path: host_path.clone(), container_path: host_path.clone(), ..Default::default() }];
    let id = run_container(context, &pod, &config).await?;
    let listed = exec_ok(context, &id, &["ls", "-A", &host_path]).await?;
    ensure(listed.trim() == "testVolume.file", || format!("`ls -A {host_path}` in the container printed {listed:?}"))?;
    Ok(())
}

/// critest container_linux.go:147 "should terminate with exitCode 137 and reason OOMKilled": a
/// container allocating past its 15 MiB memory limit.
pub async fn oom_killed(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-oom").await?;
    let mut config = busybox(context, "oom", &["sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"]).await?;
    config.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 15 << 20,
        memory_swap_limit_in_bytes: 15 << 20,
        ..Default::default()
    });
    let status = run_to_exit(context, &pod, &config).await?;
    ensure(status.exit_code == 137 && status.reason == "OOMKilled", || {
        format!("exit code {} reason {:?}, want 137 OOMKilled", status.exit_code, status.reason)
    })?;
    Ok(())
}

/// critest idempotence.go:82 StopContainer "should not return an error if already stopped"
/// (which stops once and removes twice): here stopping twice and removing twice.
pub async fn stop_twice_and_remove_twice(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-idempotence").await?;
    let config = busybox(context, "idempotence", SH_TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    for round in ["first", "second"] {
        stop(context, &id, STOP_TIMEOUT).await.map_err(|e| format!("{round} stop: {e}"))?;
        let state = status(context, &id).await?.state;
        ensure_state(state, ContainerState::ContainerExited, &format!("ContainerStatus after the {round} stop"))?;
    }
    for round in ["first", "second"] {
        remove(context, &id).await.map_err(|e| format!("{round} removal: {e}"))?;
        ensure_gone(context, &id).await?;
    }
    Ok(())
}

/// critest idempotence.go:77 and :112, StopContainer and RemoveContainer "should not return an
/// error if not found" (a fresh UUID); here also an id shaped as runtimes make them.
pub async fn unknown_ids(context: &mut Context) -> CaseResult {
    for id in [fresh_uid(), "0".repeat(64)] {
        stop(context, &id, 0).await.map_err(|e| format!("stopping unknown container {id}: {e}"))?;
        remove(context, &id).await.map_err(|e| format!("removing unknown container {id}: {e}"))?;
    }
    Ok(())
}

/// How far `created_at` may be from the RPC's own start and end.
const SLACK_NS: i64 = 60_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

fn ensure_subset(got: &HashMap<String, String>, want: &HashMap<String, String>, what: &str) -> Result<(), String> {
    let mut missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(v)).collect();
    missing.sort_unstable();
    ensure(missing.is_empty(), || format!("{what} lack {missing:?} (got {got:?})"))
}
