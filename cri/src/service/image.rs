//! The CRI `ImageService`.

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageService as Service;
use k8s_cri::v1::{
    ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse, ListImagesRequest,
    ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest, RemoveImageResponse,
};
use tonic::{Request, Response, Status};

use super::rpc::serve;
use super::{image_fs_info, image_status, list_images, pull_image, remove_image};
use crate::daemon::Daemon;

pub struct ImageService {
    daemon: Arc<Daemon>,
}

impl ImageService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageService { daemon }
    }
}

#[tonic::async_trait]
impl Service for ImageService {
    async fn list_images(&self, request: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        serve("ListImages", async { list_images::list_images(&self.daemon, request.into_inner()) }).await
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        serve("ImageStatus", async { image_status::image_status(&self.daemon, request.into_inner()) }).await
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        serve("PullImage", pull_image::pull_image(&self.daemon, request.into_inner())).await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        serve("RemoveImage", remove_image::remove_image(&self.daemon, request.into_inner())).await
    }

    async fn image_fs_info(
        &self,
        request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        serve("ImageFsInfo", image_fs_info::image_fs_info(&self.daemon, request.into_inner())).await
    }
}
