//! The CRI `ImageService`.

use k8s_cri::v1::image_service_server::ImageService as Service;

/// Serves images; every RPC lands with the image store.
pub struct ImageService;

cri_service! {
    impl Service for ImageService {}
    unimplemented {
        list_images(ListImagesRequest) -> ListImagesResponse = "ListImages";
        image_status(ImageStatusRequest) -> ImageStatusResponse = "ImageStatus";
        pull_image(PullImageRequest) -> PullImageResponse = "PullImage";
        remove_image(RemoveImageRequest) -> RemoveImageResponse = "RemoveImage";
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse = "ImageFsInfo";
    }
}
