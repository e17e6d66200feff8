//! GetContainerEvents: the pod and container lifecycle events, from the subscription on, each
//! with the pod's sandbox status and its containers' statuses as they were then.

use crisp_pod::events::{PodEvent, Subject, Subscription};
use crisp_runtime::events::EventKind;
use futures::Stream;
use k8s_cri::v1::{self as cri, ContainerEventResponse, GetEventsRequest};
use tonic::Status;

use super::{container_convert, pod_convert};
use crate::daemon::Daemon;

pub fn get_container_events(
    daemon: &Daemon,
    _: GetEventsRequest,
) -> impl Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static {
    let subscription = daemon.events.subscribe();
    // Ends after the subscriber's error, if it was dropped for falling behind.
    futures::stream::unfold(Some(subscription), |subscription| async move {
        let mut subscription: Subscription = subscription?;
        match subscription.next().await {
            Ok(Some(event)) => Some((Ok(to_cri(&event)), Some(subscription))),
            Ok(None) => None,
            Err(overflowed) => {
                Some((Err(Status::resource_exhausted(format!("GetContainerEvents: {overflowed}"))), None))
            }
        }
    })
}

fn to_cri(event: &PodEvent) -> ContainerEventResponse {
    let kind = match event.kind {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    };
    ContainerEventResponse {
        container_id: match &event.subject {
            Subject::Container(id) => id.to_string(),
            Subject::Sandbox(id) => id.to_string(),
        },
        container_event_type: kind as i32,
        created_at: event.at_ns,
        pod_sandbox_status: event.sandbox.as_ref().map(pod_convert::to_cri_status),
        containers_statuses: event.containers.iter().map(container_convert::to_cri_status).collect(),
    }
}
