use std::collections::HashMap;

use k8s_cri::v1::{ImageStatusRequest, ImageStatusResponse};
use tonic::Status;

use super::image_convert::to_cri;
use crate::daemon::Daemon;
use crate::status::ToStatus;

/// An image that is not there is an empty answer, not an error: the kubelet asks before pulling.
pub fn image_status(daemon: &Daemon, request: ImageStatusRequest) -> Result<ImageStatusResponse, Status> {
    let query = request.image.map(|i| i.image).unwrap_or_default();
    if query.is_empty() {
        return Err(Status::invalid_argument("ImageStatus: no image given"));
    }
    let Some(record) = daemon.images.resolve(&query).map_err(ToStatus::to_status)? else {
        return Ok(ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if request.verbose {
        let json = serde_json::to_string(&record).map_err(|e| Status::internal(format!("ImageStatus: {e}")))?;
        info.insert("info".to_owned(), json);
    }
    Ok(ImageStatusResponse { image: Some(to_cri(&record, daemon.is_pinned(&record))), info })
}
