use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

/// Removes the image with all its tags. Removing an image that is not there succeeds: the
/// caller's wish, that it be gone, holds.
pub async fn remove_image(daemon: &Daemon, request: RemoveImageRequest) -> Result<RemoveImageResponse, Status> {
    let query = request.image.map(|i| i.image).unwrap_or_default();
    if query.is_empty() {
        return Err(Status::invalid_argument("RemoveImage: no image given"));
    }
    if let Some(record) = daemon.images.resolve(&query).map_err(ToStatus::to_status)? {
        daemon.images.remove(&record.id).await.map_err(ToStatus::to_status)?;
        tracing::info!(image = %record.id, tags = ?record.repo_tags, "image removed");
    }
    Ok(RemoveImageResponse {})
}
