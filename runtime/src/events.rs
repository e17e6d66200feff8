//! Lifecycle events of containers, as the runtime sees them happen: what the kubelet's evented
//! PLEG learns from instead of listing everything every second.

use crate::ContainerId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    /// The process ended: stopped, killed, or exited by itself.
    Stopped,
    Deleted,
}

/// A change in one container's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub kind: EventKind,
    pub id: ContainerId,
    pub sandbox_id: String,
    /// When it was noticed, in nanoseconds since the epoch.
    pub at_ns: i64,
}

/// Where a [`crate::container::Containers`] reports its events, as they happen and in order. It
/// is called synchronously, with the container's operations held, so it must not block.
pub trait ContainerEvents: Send + Sync {
    fn container(&self, event: ContainerEvent);
}
