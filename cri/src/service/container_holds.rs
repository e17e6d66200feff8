//! Images held by containers: a container holds its image for as long as it exists.

use crisp_image::store::Holder;
use crisp_runtime::ContainerId;

use crate::daemon::Daemon;

const PREFIX: &str = "container-";

pub fn holder(id: &ContainerId) -> Holder {
    Holder::new(&format!("{PREFIX}{id}")).expect("container IDs make valid holders")
}

/// Releases the holds of containers that no longer exist: removed ones, and creations that
/// failed after taking their hold.
pub async fn release_stale(daemon: &Daemon) {
    for holder in daemon.images.holders() {
        let Some(id) = holder.as_str().strip_prefix(PREFIX).and_then(|id| ContainerId::parse(id).ok()) else {
            continue;
        };
        if !daemon.containers.exists(&id)
            && let Err(e) = daemon.images.release(&holder).await
        {
            tracing::warn!(container = %id, "releasing the container's image: {e}");
        }
    }
}
