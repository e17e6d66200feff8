//! End-to-end: GetContainerEvents as the kubelet's evented PLEG reads it: every subscriber gets a
//! container's and its pod's whole life in order, with the statuses of that moment, and a
//! subscriber that stops reading is dropped without holding anyone else up.

mod common;

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerState, GetEventsRequest, PodSandboxState,
    RemoveContainerRequest, StopContainerRequest, VersionRequest,
};
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint, Uri};

use common::containers::setup;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

async fn subscribe(client: &mut RuntimeServiceClient<Channel>) -> Streaming<ContainerEventResponse> {
    client.get_container_events(GetEventsRequest {}).await.expect("GetContainerEvents").into_inner()
}

async fn next(events: &mut Streaming<ContainerEventResponse>) -> ContainerEventResponse {
    let event = tokio::time::timeout(EVENT_TIMEOUT, events.message()).await.expect("an event in time");
    event.expect("the stream goes on").expect("the stream has not ended")
}

/// The event's type, subject, and the state it shows the subject in (for a container, none once
/// it is deleted).
fn summary(event: &ContainerEventResponse) -> (ContainerEventType, String, Option<i32>) {
    let kind = ContainerEventType::try_from(event.container_event_type).unwrap();
    let sandbox = event.pod_sandbox_status.as_ref().expect("every event has the pod's status");
    let state = if sandbox.id == event.container_id {
        Some(sandbox.state)
    } else {
        event.containers_statuses.iter().find(|s| s.id == event.container_id).map(|s| s.state)
    };
    (kind, event.container_id.clone(), state)
}

#[tokio::test]
async fn a_whole_lifecycle_in_order_on_two_subscribers() {
    use ContainerEventType::{
        ContainerCreatedEvent, ContainerDeletedEvent, ContainerStartedEvent, ContainerStoppedEvent,
    };
    let mut s = setup(45).await;
    let mut first = subscribe(&mut s.client.runtime).await;
    let mut second = subscribe(&mut s.client.runtime).await;
    let (created, running, exited) = (
        Some(ContainerState::ContainerCreated as i32),
        Some(ContainerState::ContainerRunning as i32),
        Some(ContainerState::ContainerExited as i32),
    );

    let quits = s.create(s.config("quits", &["sh", "-c", "sleep 1; exit 3"])).await.unwrap();
    s.start(&quits).await.unwrap();
    assert_eq!(s.wait_exited(&quits).await.exit_code, 3);
    // The exit is noticed by the daemon's scan, not by a call: wait for its event.
    let mut expected = vec![
        (ContainerCreatedEvent, quits.clone(), created),
        (ContainerStartedEvent, quits.clone(), running),
        (ContainerStoppedEvent, quits.clone(), exited),
    ];
    for (i, want) in expected.iter().enumerate() {
        let event = next(&mut first).await;
        assert_eq!(&summary(&event), want, "event {i} on the first subscriber");
    }
    s.client.runtime.remove_container(RemoveContainerRequest { container_id: quits.clone() }).await.unwrap();
    expected.push((ContainerDeletedEvent, quits.clone(), None));

    let stopped = s.create(s.config("stopped", &["sleep", "1000"])).await.unwrap();
    s.start(&stopped).await.unwrap();
    let stop = StopContainerRequest { container_id: stopped.clone(), timeout: 0 };
    s.client.runtime.stop_container(stop).await.unwrap();
    s.client.runtime.remove_container(RemoveContainerRequest { container_id: stopped.clone() }).await.unwrap();
    expected.extend([
        (ContainerCreatedEvent, stopped.clone(), created),
        (ContainerStartedEvent, stopped.clone(), running),
        (ContainerStoppedEvent, stopped.clone(), exited),
        (ContainerDeletedEvent, stopped.clone(), None),
    ]);

    let pod = s.pod.clone();
    s.teardown().await;
    let not_ready = Some(PodSandboxState::SandboxNotready as i32);
    expected.extend([(ContainerStoppedEvent, pod.clone(), not_ready), (ContainerDeletedEvent, pod.clone(), not_ready)]);

    for (i, want) in expected.iter().enumerate().skip(3) {
        let event = next(&mut first).await;
        assert_eq!(&summary(&event), want, "event {i} on the first subscriber");
    }
    for (i, want) in expected.iter().enumerate() {
        let event = next(&mut second).await;
        assert_eq!(&summary(&event), want, "event {i} on the second subscriber");
        assert_eq!(event.pod_sandbox_status.as_ref().unwrap().metadata.as_ref().unwrap().uid, "ctr-uid");
        assert!(event.created_at > 0);
    }
}

/// Dials the daemon's socket for a channel of its own.
#[derive(Clone)]
struct Dial(PathBuf);

impl tonic::codegen::Service<Uri> for Dial {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) })
    }
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped() {
    const CONTAINERS: usize = 400;
    let mut s = setup(46).await;
    // The smallest HTTP/2 windows, so that what the transport holds for it is little next to
    // the daemon's queue.
    let channel = Endpoint::from_static("http://crisp.invalid")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect_with_connector(Dial(s.daemon.socket.clone()))
        .await
        .unwrap();
    let mut idle = subscribe(&mut RuntimeServiceClient::new(channel)).await;
    let mut reader = subscribe(&mut s.client.runtime).await;
    let read = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 2 * CONTAINERS {
            seen.push(summary(&next(&mut reader).await));
        }
        seen
    });

    let (client, pod, pod_config) = (s.client.runtime.clone(), s.pod.clone(), s.pod_config.clone());
    let configs: Vec<_> = (0..CONTAINERS).map(|i| s.config(&format!("churn-{i}"), &["true"])).collect();
    let made: Vec<String> = futures::stream::iter(configs)
        .map(|config| {
            let (mut client, pod, pod_config) = (client.clone(), pod.clone(), pod_config.clone());
            async move {
                let request = k8s_cri::v1::CreateContainerRequest {
                    pod_sandbox_id: pod,
                    config: Some(config),
                    sandbox_config: Some(pod_config),
                };
                let id = client.create_container(request).await.unwrap().into_inner().container_id;
                client.remove_container(RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
                id
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let seen = tokio::time::timeout(Duration::from_secs(60), read).await.expect("the reader keeps up").unwrap();
    for id in &made {
        let kinds: Vec<_> = seen.iter().filter(|(_, subject, _)| subject == id).map(|(k, _, _)| *k).collect();
        assert_eq!(kinds, [ContainerEventType::ContainerCreatedEvent, ContainerEventType::ContainerDeletedEvent]);
    }

    let mut delivered = 0;
    let status = loop {
        match tokio::time::timeout(EVENT_TIMEOUT, idle.message()).await.expect("the idle stream ends") {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("the idle subscriber's stream ended without an error after {delivered} events"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(delivered < 2 * CONTAINERS, "{delivered} events");
    common::assert_contains(&s.daemon.logs(), "dropping an event subscriber");
    s.client.runtime.version(VersionRequest::default()).await.unwrap();
    s.teardown().await;
}

/// The conformance suite's events case, against crisp.
#[tokio::test]
async fn conformance_events_case_passes() {
    use crisp_conformance::suite::{self, Selection, Verdict};
    let lab = common::Lab::with_network(47);
    lab.write_config("");
    let test_lab = crisp_conformance::lab::Lab::start().await.expect("starting the test registry");
    let daemon = lab.start();
    let mut context = suite::Context::new(daemon.client().await, suite::TestImages::from_lab(&test_lab, true));
    let selection = Selection { focus: vec!["container/events".into()], skip: vec![] };
    let report = suite::run(&mut context, &selection, |_| {}).await;
    assert_eq!(report.outcomes.len(), 1);
    let outcome = &report.outcomes[0];
    assert_eq!(outcome.verdict, Verdict::Pass, "{outcome}\n{}", daemon.logs());
}
