//! The lifecycle events of pods and their containers, for any number of subscribers (the
//! kubelet's evented PLEG, `crictl events`), each with what the pod looked like at that moment.
//!
//! A pod's own events carry its sandbox ID where a container's ID goes, as containerd and
//! CRI-O send them: the kubelet drops a pod from its cache on the DELETED event of its sandbox.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crisp_runtime::ContainerId;
use crisp_runtime::container::{ContainerView, Containers};
use crisp_runtime::events::{ContainerEvent, ContainerEvents, EventKind};
use tokio::sync::mpsc;

use crate::lifecycle::{Pods, SandboxView};
use crate::model::SandboxId;

/// Events a subscriber may have unread before it is dropped. A node's burst (a hundred pods
/// started at once) is some hundreds of events, which a subscriber reading as they come never
/// nears; one that stops reading must not make the daemon keep events for it without end.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// Whose life an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Container(ContainerId),
    Sandbox(SandboxId),
}

#[derive(Debug, Clone)]
pub struct PodEvent {
    pub kind: EventKind,
    pub subject: Subject,
    pub at_ns: i64,
    /// The pod as it was then; for its DELETED event, as it was last. None if it is gone.
    pub sandbox: Option<SandboxView>,
    /// The pod's containers as they were then; a deleted one is no longer among them.
    pub containers: Vec<ContainerView>,
}

/// A subscriber's queue ran over: it was dropped, and what was left in the queue is all it gets.
#[derive(Debug, thiserror::Error)]
#[error("more than {SUBSCRIBER_BUFFER} events were left unread: the subscription was dropped")]
pub struct Overflowed;

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Arc<PodEvent>>,
    overflowed: Arc<AtomicBool>,
}

/// Takes events as they happen and hands each to every subscriber's queue, in order.
#[derive(Default)]
pub struct EventHub {
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    /// Where the pod's state at each event is read; set once both are open.
    sources: OnceLock<(Weak<Pods>, Weak<Containers>)>,
}

impl EventHub {
    pub fn bind(&self, pods: &Arc<Pods>, containers: &Arc<Containers>) {
        let _ = self.sources.set((Arc::downgrade(pods), Arc::downgrade(containers)));
    }

    pub fn subscribe(&self) -> Subscription {
        let (queue, events) = mpsc::channel(SUBSCRIBER_BUFFER);
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Subscriber { id, queue, overflowed: overflowed.clone() };
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(subscriber);
        tracing::debug!(subscriber = id, "a new event subscriber");
        Subscription { id, events, overflowed }
    }

    /// A pod's own event, with the pod as the caller saw it.
    pub(crate) fn sandbox(&self, kind: EventKind, view: &SandboxView, at_ns: i64) {
        self.publish(|| PodEvent {
            kind,
            subject: Subject::Sandbox(view.record.id.clone()),
            at_ns,
            sandbox: Some(view.clone()),
            containers: self.containers_of(view.record.id.as_str()),
        });
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<ContainerView> {
        let containers = self.sources.get().and_then(|(_, containers)| containers.upgrade());
        containers.map(|c| c.views_of_sandbox(sandbox_id)).unwrap_or_default()
    }

    /// Reads the pod's state and queues the event while holding the subscribers, so that every
    /// subscriber sees events in one order, each with a state no older than the one before.
    fn publish(&self, event: impl FnOnce() -> PodEvent) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        if subscribers.is_empty() {
            return;
        }
        let event = Arc::new(event());
        subscribers.retain(|s| match s.queue.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    subscriber = s.id,
                    "dropping an event subscriber: it left {SUBSCRIBER_BUFFER} events unread"
                );
                s.overflowed.store(true, Ordering::Release);
                false
            }
        });
    }
}

impl ContainerEvents for EventHub {
    fn container(&self, event: ContainerEvent) {
        self.publish(|| {
            let pods = self.sources.get().and_then(|(pods, _)| pods.upgrade());
            PodEvent {
                kind: event.kind,
                subject: Subject::Container(event.id),
                at_ns: event.at_ns,
                sandbox: pods.and_then(|p| p.status(&event.sandbox_id).ok()),
                containers: self.containers_of(&event.sandbox_id),
            }
        });
    }
}

/// One subscriber's events, from its subscription on.
pub struct Subscription {
    pub id: u64,
    events: mpsc::Receiver<Arc<PodEvent>>,
    overflowed: Arc<AtomicBool>,
}

impl Subscription {
    /// The next event; none once the hub is gone.
    pub async fn next(&mut self) -> Result<Option<Arc<PodEvent>>, Overflowed> {
        match self.events.recv().await {
            Some(event) => Ok(Some(event)),
            None if self.overflowed.load(Ordering::Acquire) => Err(Overflowed),
            None => Ok(None),
        }
    }
}
