use k8s_cri::v1::{ListImagesRequest, ListImagesResponse};
use tonic::Status;

use super::image_convert::to_cri;
use crate::daemon::Daemon;
use crate::status::ToStatus;

pub fn list_images(daemon: &Daemon, request: ListImagesRequest) -> Result<ListImagesResponse, Status> {
    let wanted = request.filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
    let records = match wanted {
        Some(query) => daemon.images.resolve(&query).map_err(ToStatus::to_status)?.into_iter().collect(),
        None => daemon.images.list(),
    };
    let images = records.iter().map(|r| to_cri(r, daemon.is_pinned(r))).collect();
    Ok(ListImagesResponse { images })
}
