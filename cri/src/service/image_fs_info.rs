use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value};
use tonic::Status;

use crate::daemon::Daemon;

/// The image store, and the containers' writable layers beside it.
pub async fn image_fs_info(daemon: &Daemon, _: ImageFsInfoRequest) -> Result<ImageFsInfoResponse, Status> {
    let images = usage(daemon.images.root().to_owned()).await?;
    let containers = usage(daemon.config.server.root.join("containers")).await?;
    Ok(ImageFsInfoResponse { image_filesystems: vec![images], container_filesystems: vec![containers] })
}

/// Walks a directory on a blocking thread: the kubelet asks every few seconds and a walk of a
/// large store is no work for the async runtime.
async fn usage(dir: std::path::PathBuf) -> Result<FilesystemUsage, Status> {
    let (bytes, inodes) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || crisp_image::store::usage(&dir)
    })
    .await
    .map_err(|e| Status::internal(format!("ImageFsInfo: {e}")))?
    .map_err(|e| Status::internal(format!("ImageFsInfo: {}: {e}", dir.display())))?;
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    Ok(FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier { mountpoint: dir.display().to_string() }),
        used_bytes: Some(UInt64Value { value: bytes }),
        inodes_used: Some(UInt64Value { value: inodes }),
    })
}
