//! The CRI gRPC services, one file per implemented RPC.

/// Implements a CRI service trait: the RPCs written so far, and every other one answering
/// `Unimplemented` with its name until its issue lands.
macro_rules! cri_service {
    (
        impl $trait:ident for $ty:ty { $($implemented:tt)* }
        unimplemented { $($method:ident($req:ident) -> $resp:ident = $name:literal;)* }
    ) => {
        #[tonic::async_trait]
        impl $trait for $ty {
            $($implemented)*
            $(
                async fn $method(
                    &self,
                    _: tonic::Request<k8s_cri::v1::$req>,
                ) -> Result<tonic::Response<k8s_cri::v1::$resp>, tonic::Status> {
                    super::rpc::serve($name, async { Err(crate::status::unimplemented($name)) }).await
                }
            )*
        }
    };
}

mod attach;
mod container_convert;
mod container_holds;
mod container_stats;
mod container_status;
mod create_container;
mod exec;
mod exec_process;
mod exec_sync;
mod get_container_events;
mod image;
mod image_convert;
mod image_fs_info;
mod image_status;
mod list_container_stats;
mod list_containers;
mod list_images;
mod list_metric_descriptors;
mod list_pod_sandbox;
mod list_pod_sandbox_metrics;
mod list_pod_sandbox_stats;
mod metrics_convert;
mod pod_convert;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod pull_image;
mod remove_container;
mod remove_image;
mod remove_pod_sandbox;
mod reopen_container_log;
mod rpc;
mod run_pod_sandbox;
mod runtime;
mod runtime_config;
mod start_container;
mod stats_convert;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod update_container_resources;
mod update_runtime_config;
mod version;

pub use container_holds::release_stale as release_stale_holds;
pub(crate) use exec_process::exec_process;
pub use image::ImageService;
pub use runtime::RuntimeService;
