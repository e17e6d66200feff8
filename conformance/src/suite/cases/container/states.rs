//! ContainerStatus through a container's whole life, as the kubelet reads it to fill a pod's
//! container statuses: CREATED, RUNNING, then EXITED by itself with a failing code. critest
//! checks each state in passing (container.go); here every field the kubelet uses is checked in
//! each, with ListContainers agreeing.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{ContainerState, ContainerStatus};

use super::{busybox, by_id, create, ensure_state, exec_ok, list, pod, start, status, wait_state};
use crate::suite::cases::ensure;
use crate::suite::{CaseResult, Context};

/// What the container exits with after it has been seen running.
const EXIT_CODE: i32 = 3;
/// The file whose creation tells the container to exit.
const GO: &str = "/tmp/exit-now";

/// CREATED: a creation time, no start or finish, no exit code or reason. RUNNING: a start time
/// from StartContainer's call, still no finish. EXITED on its own with code 3: that code, reason
/// `Error` (what the kubelet shows for a failed container), a finish time after the start and
/// before now. The image and its resolved reference throughout.
pub async fn every_state(context: &mut Context) -> CaseResult {
    let pod = pod(context, "container-states").await?;
    // It exits when told, not after a sleep: a start slower than the sleep would skip RUNNING.
    let command = format!("until [ -e {GO} ]; do sleep 0.1; done; exit {EXIT_CODE}");
    let config = busybox(context, "states", &["sh", "-c", &command]).await?;
    let id = create(context, &pod, &config).await?;

    let created = status(context, &id).await?;
    ensure_state(created.state, ContainerState::ContainerCreated, "ContainerStatus after CreateContainer")?;
    ensure_image(&created)?;
    ensure(created.created_at > 0 && created.started_at == 0 && created.finished_at == 0, || {
        format!("CREATED: {}", times(&created))
    })?;
    ensure_no_exit(&created, "CREATED")?;

    let before_start = now_ns();
    start(context, &id).await?;
    let running = wait_state(context, &id, ContainerState::ContainerRunning).await?;
    ensure_image(&running)?;
    ensure(running.created_at == created.created_at, || {
        format!("created_at changed from {} to {} when it started", created.created_at, running.created_at)
    })?;
    ensure(running.started_at >= running.created_at && running.started_at >= before_start - SLACK_NS, || {
        format!("RUNNING: {}, StartContainer called at {before_start}", times(&running))
    })?;
    ensure(running.finished_at == 0, || format!("RUNNING: {}", times(&running)))?;
    ensure_no_exit(&running, "RUNNING")?;
    exec_ok(context, &id, &["touch", GO]).await?;

    let exited = wait_state(context, &id, ContainerState::ContainerExited).await?;
    let now = now_ns();
    ensure_image(&exited)?;
    ensure(exited.exit_code == EXIT_CODE && exited.reason == "Error", || {
        format!("EXITED: exit code {}, reason {:?}; want {EXIT_CODE} and \"Error\"", exited.exit_code, exited.reason)
    })?;
    ensure(exited.started_at == running.started_at && exited.finished_at >= exited.started_at, || {
        format!("EXITED: {}, while running started_at was {}", times(&exited), running.started_at)
    })?;
    ensure(exited.finished_at <= now + SLACK_NS, || format!("EXITED: {} is after now ({now})", times(&exited)))?;

    let listed = list(context, by_id(&id)).await?;
    ensure(listed.len() == 1, || format!("ListContainers by id {id} lists {listed:?}"))?;
    ensure_state(listed[0].state, ContainerState::ContainerExited, "ListContainers")?;
    ensure(listed[0].created_at == created.created_at, || {
        format!("ListContainers: created_at {}, ContainerStatus {}", listed[0].created_at, created.created_at)
    })?;
    Ok(())
}

/// How far clocks may disagree: wide enough for a clock step, narrow enough to catch seconds or
/// milliseconds sent as nanoseconds.
const SLACK_NS: i64 = 60_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

fn times(status: &ContainerStatus) -> String {
    format!("created_at {}, started_at {}, finished_at {}", status.created_at, status.started_at, status.finished_at)
}

fn ensure_image(status: &ContainerStatus) -> Result<(), String> {
    let image = status.image.as_ref().map_or("", |i| i.image.as_str());
    ensure(!image.is_empty() && !status.image_ref.is_empty(), || {
        format!("ContainerStatus: image {image:?}, image_ref {:?}: want both", status.image_ref)
    })
}

fn ensure_no_exit(status: &ContainerStatus, state: &str) -> Result<(), String> {
    ensure(status.exit_code == 0 && status.reason.is_empty(), || {
        format!("{state}: exit code {}, reason {:?}: it has not exited", status.exit_code, status.reason)
    })
}
