//! Noticing that containers ended, and telling [`ContainerEvents`] once per container.
//!
//! A container's exit is recorded by its pod's monitor, which writes the exit file atomically;
//! the daemon is not told. One task scans the started containers every [`SCAN_INTERVAL`]
//! rather than watching with inotify: the exit files live in one directory per container,
//! made and removed with it, so inotify would need a watch per container kept in step with
//! creation and removal (and a rescan after every queue overflow), while a scan costs one
//! `stat` (and a `/proc` read) per running container, and also notices the exits no file
//! records (a monitor killed with its container), which inotify never would.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use super::{ContainerState, Containers, Stage, now_ns};
use crate::ContainerId;
use crate::container::store::Container;
use crate::events::{ContainerEvent, EventKind};

/// How late an exit may be noticed: the kubelet's generic PLEG relists every second.
const SCAN_INTERVAL: Duration = Duration::from_millis(500);

/// The containers whose exit was reported.
#[derive(Default)]
pub(super) struct Exits {
    reported: Mutex<HashSet<ContainerId>>,
}

impl Exits {
    pub(super) fn forget(&self, id: &ContainerId) {
        self.reported.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

impl Containers {
    pub(super) fn emit(&self, kind: EventKind, id: &ContainerId, sandbox_id: &str) {
        self.config.events.container(ContainerEvent {
            kind,
            id: id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            at_ns: now_ns(),
        });
    }

    /// Reports a started container's exit, if it has ended and was not reported yet. The lock
    /// is held while reporting, so that a Remove noticing the same exit cannot get its
    /// DELETED out before this STOPPED.
    pub(super) fn notice_exit(&self, container: &Container) {
        let mut reported = self.exits.reported.lock().unwrap_or_else(PoisonError::into_inner);
        // A scan that listed it before a Remove: its DELETED is out, and no STOPPED may follow.
        let current = self.store.get(&container.id).is_some_and(|c| std::ptr::eq(&*c, container));
        if !current || reported.contains(&container.id) {
            return;
        }
        if container.record().stage != Stage::Started {
            return;
        }
        let view = self.view(container);
        if view.state == ContainerState::Exited {
            reported.insert(container.id.clone());
            self.emit(EventKind::Stopped, &container.id, &view.record.key.sandbox_id);
        }
    }

    /// Exits that happened while the daemon was down are no news: they count as reported.
    pub(super) fn ignore_past_exits(&self) {
        let mut reported = self.exits.reported.lock().unwrap_or_else(PoisonError::into_inner);
        for container in self.store.all() {
            if self.view(&container).state == ContainerState::Exited {
                reported.insert(container.id.clone());
            }
        }
    }

    fn notice_exits(&self) {
        for container in self.store.all() {
            self.notice_exit(&container);
        }
    }
}

/// Scans for exits until the containers are dropped.
pub(super) async fn watch(containers: Weak<Containers>) {
    loop {
        tokio::time::sleep(SCAN_INTERVAL).await;
        let Some(containers) = containers.upgrade() else { return };
        // Reading exit files and /proc blocks; off the async workers.
        if let Err(e) = tokio::task::spawn_blocking(move || containers.notice_exits()).await {
            tracing::error!("scanning for container exits: {e}");
        }
    }
}
