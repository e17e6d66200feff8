use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value};
use tonic::Status;

use crate::daemon::Daemon;

/// Walks the image store on a blocking thread: the kubelet asks every few seconds and a walk of
/// a large store is no work for the async runtime.
pub async fn image_fs_info(daemon: &Daemon, _: ImageFsInfoRequest) -> Result<ImageFsInfoResponse, Status> {
    let root = daemon.images.root().to_owned();
    let (bytes, inodes) = tokio::task::spawn_blocking({
        let root = root.clone();
        move || crisp_image::store::usage(&root)
    })
    .await
    .map_err(|e| Status::internal(format!("ImageFsInfo: {e}")))?
    .map_err(|e| Status::internal(format!("ImageFsInfo: {}: {e}", root.display())))?;
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let usage = FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier { mountpoint: root.display().to_string() }),
        used_bytes: Some(UInt64Value { value: bytes }),
        inodes_used: Some(UInt64Value { value: inodes }),
    };
    Ok(ImageFsInfoResponse { image_filesystems: vec![usage], container_filesystems: Vec::new() })
}
