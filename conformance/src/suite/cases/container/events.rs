//! GetContainerEvents. critest (cri-tools v1.32 pkg/validate) does not check it; this follows
//! containerd's integration test of it (TestContainerEvents), which is what the kubelet's
//! evented PLEG relies on: the pod's own CREATED and STARTED under its sandbox ID, then its
//! container's CREATED, STARTED, STOPPED and DELETED, then the pod's STOPPED and DELETED, each
//! with the pod's status and its containers' states of that moment.

use std::time::Duration;

use k8s_cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerState, GetEventsRequest, PodSandboxState,
    RemovePodSandboxRequest, StopPodSandboxRequest,
};
use tonic::{Code, Streaming};

use super::{SH_TOP, busybox, create, pod, remove, start, stop};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::{CaseResult, Context, Stop};

/// containerd's test waits this long for each event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn lifecycle(context: &mut Context) -> CaseResult {
    use ContainerEventType::{
        ContainerCreatedEvent, ContainerDeletedEvent, ContainerStartedEvent, ContainerStoppedEvent,
    };
    use ContainerState::{ContainerCreated, ContainerExited, ContainerRunning};
    use PodSandboxState::{SandboxNotready, SandboxReady};
    let request = GetEventsRequest {};
    let events = context.client.runtime.clone().get_container_events(request).await;
    let mut events = match events {
        Ok(events) => events.into_inner(),
        // The kubelet's evented PLEG is an opt-in feature: without it, the kubelet relists.
        Err(s) if s.code() == Code::Unimplemented => {
            return Err(Stop::Skip("the runtime serves no container events (GetContainerEvents)".into()));
        }
        Err(s) => return Err(Stop::Fail(rpc_failed("GetContainerEvents", s))),
    };

    let pod = pod(context, "container-events").await?;
    let mut expect = Expect { events: &mut events, pod: pod.id.clone() };
    expect.next(ContainerCreatedEvent, &pod.id, SandboxReady, &[]).await?;
    expect.next(ContainerStartedEvent, &pod.id, SandboxReady, &[]).await?;

    let config = busybox(context, "events", SH_TOP).await?;
    let id = create(context, &pod, &config).await?;
    expect.next(ContainerCreatedEvent, &id, SandboxReady, &[ContainerCreated]).await?;
    start(context, &id).await?;
    expect.next(ContainerStartedEvent, &id, SandboxReady, &[ContainerRunning]).await?;
    stop(context, &id, 0).await?;
    expect.next(ContainerStoppedEvent, &id, SandboxReady, &[ContainerExited]).await?;
    remove(context, &id).await?;
    expect.next(ContainerDeletedEvent, &id, SandboxReady, &[]).await?;

    let stop_pod = StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    context.client.runtime.stop_pod_sandbox(stop_pod).await.map_err(|s| rpc_failed("StopPodSandbox", s))?;
    expect.next(ContainerStoppedEvent, &pod.id, SandboxNotready, &[]).await?;
    let remove_pod = RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    context.client.runtime.remove_pod_sandbox(remove_pod).await.map_err(|s| rpc_failed("RemovePodSandbox", s))?;
    expect.next(ContainerDeletedEvent, &pod.id, SandboxNotready, &[]).await?;
    Ok(())
}

/// The case's pod's events, in order; other pods' are skipped.
struct Expect<'a> {
    events: &'a mut Streaming<ContainerEventResponse>,
    pod: String,
}

impl Expect<'_> {
    async fn next(
        &mut self,
        kind: ContainerEventType,
        subject: &str,
        pod_state: PodSandboxState,
        container_states: &[ContainerState],
    ) -> Result<(), String> {
        let what = format!("the {} of {subject}", kind.as_str_name());
        let event = loop {
            let event = tokio::time::timeout(EVENT_TIMEOUT, self.events.message()).await;
            let event = event.map_err(|_| format!("no event within {EVENT_TIMEOUT:?}: want {what}"))?;
            let event = event.map_err(|s| rpc_failed("GetContainerEvents stream", s))?;
            let event = event.ok_or_else(|| format!("the event stream ended before {what}"))?;
            if event.pod_sandbox_status.as_ref().is_none_or(|s| s.id == self.pod) {
                break event;
            }
        };
        ensure(event.container_event_type == kind as i32 && event.container_id == subject, || {
            format!("got event {:?} for {}, want {what}", event.container_event_type, event.container_id)
        })?;
        let status = event.pod_sandbox_status.as_ref().ok_or_else(|| format!("{what} has no pod sandbox status"))?;
        ensure(status.state == pod_state as i32, || {
            format!("{what}: pod state {}, want {}", status.state, pod_state.as_str_name())
        })?;
        let states: Vec<i32> = event.containers_statuses.iter().map(|s| s.state).collect();
        let want: Vec<i32> = container_states.iter().map(|s| *s as i32).collect();
        ensure(states == want, || format!("{what}: container states {states:?}, want {want:?}"))
    }
}
