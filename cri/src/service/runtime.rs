//! The CRI `RuntimeService`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use k8s_cri::v1::runtime_service_server::RuntimeService as Service;
use k8s_cri::v1::{
    AttachRequest, AttachResponse, ContainerEventResponse, ContainerStatusRequest, ContainerStatusResponse,
    CreateContainerRequest, CreateContainerResponse, ExecRequest, ExecResponse, ExecSyncRequest, ExecSyncResponse,
    GetEventsRequest, ListContainersRequest, ListContainersResponse, ListPodSandboxRequest, ListPodSandboxResponse,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PortForwardRequest, PortForwardResponse, RemoveContainerRequest,
    RemoveContainerResponse, RemovePodSandboxRequest, RemovePodSandboxResponse, ReopenContainerLogRequest,
    ReopenContainerLogResponse, RunPodSandboxRequest, RunPodSandboxResponse, RuntimeConfigRequest,
    RuntimeConfigResponse, StartContainerRequest, StartContainerResponse, StatusRequest, StatusResponse,
    StopContainerRequest, StopContainerResponse, StopPodSandboxRequest, StopPodSandboxResponse,
    UpdateContainerResourcesRequest, UpdateContainerResourcesResponse, UpdateRuntimeConfigRequest,
    UpdateRuntimeConfigResponse, VersionRequest, VersionResponse,
};
use k8s_cri::v1::{
    ContainerStatsRequest, ContainerStatsResponse, ListContainerStatsRequest, ListContainerStatsResponse,
    ListPodSandboxStatsRequest, ListPodSandboxStatsResponse, PodSandboxStatsRequest, PodSandboxStatsResponse,
};
use k8s_cri::v1::{
    ListMetricDescriptorsRequest, ListMetricDescriptorsResponse, ListPodSandboxMetricsRequest,
    ListPodSandboxMetricsResponse,
};
use tonic::{Request, Response, Status};

use super::rpc::serve;
use super::{
    attach, container_status, create_container, exec, exec_sync, get_container_events, list_containers,
    list_pod_sandbox, pod_sandbox_status, port_forward, remove_container, remove_pod_sandbox, reopen_container_log,
    run_pod_sandbox, runtime_config, start_container, status, stop_container, stop_pod_sandbox,
    update_container_resources, update_runtime_config, version,
};
use super::{container_stats, list_container_stats, list_pod_sandbox_stats, pod_sandbox_stats};
use super::{list_metric_descriptors, list_pod_sandbox_metrics};
use crate::daemon::Daemon;

pub struct RuntimeService {
    daemon: Arc<Daemon>,
}

impl RuntimeService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeService { daemon }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

cri_service! {
    impl Service for RuntimeService {
        type GetContainerEventsStream = EventStream;

        async fn version(&self, request: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
            serve("Version", async { Ok(version::version(request.into_inner())) }).await
        }

        async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
            serve("Status", status::status(self.daemon.clone(), request.into_inner())).await
        }

        async fn runtime_config(
            &self,
            request: Request<RuntimeConfigRequest>,
        ) -> Result<Response<RuntimeConfigResponse>, Status> {
            serve("RuntimeConfig", async { Ok(runtime_config::runtime_config(&self.daemon, request.into_inner())) }).await
        }

        async fn update_runtime_config(
            &self,
            request: Request<UpdateRuntimeConfigRequest>,
        ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
            serve("UpdateRuntimeConfig", async {
                update_runtime_config::update_runtime_config(&self.daemon, request.into_inner())
            })
            .await
        }

        async fn run_pod_sandbox(
            &self,
            request: Request<RunPodSandboxRequest>,
        ) -> Result<Response<RunPodSandboxResponse>, Status> {
            serve("RunPodSandbox", run_pod_sandbox::run_pod_sandbox(&self.daemon, request.into_inner())).await
        }

        async fn stop_pod_sandbox(
            &self,
            request: Request<StopPodSandboxRequest>,
        ) -> Result<Response<StopPodSandboxResponse>, Status> {
            serve("StopPodSandbox", stop_pod_sandbox::stop_pod_sandbox(&self.daemon, request.into_inner())).await
        }

        async fn remove_pod_sandbox(
            &self,
            request: Request<RemovePodSandboxRequest>,
        ) -> Result<Response<RemovePodSandboxResponse>, Status> {
            serve("RemovePodSandbox", remove_pod_sandbox::remove_pod_sandbox(&self.daemon, request.into_inner())).await
        }

        async fn pod_sandbox_status(
            &self,
            request: Request<PodSandboxStatusRequest>,
        ) -> Result<Response<PodSandboxStatusResponse>, Status> {
            serve("PodSandboxStatus", async { pod_sandbox_status::pod_sandbox_status(&self.daemon, request.into_inner()) })
                .await
        }

        async fn list_pod_sandbox(
            &self,
            request: Request<ListPodSandboxRequest>,
        ) -> Result<Response<ListPodSandboxResponse>, Status> {
            serve("ListPodSandbox", async { Ok(list_pod_sandbox::list_pod_sandbox(&self.daemon, request.into_inner())) })
                .await
        }

        async fn create_container(
            &self,
            request: Request<CreateContainerRequest>,
        ) -> Result<Response<CreateContainerResponse>, Status> {
            serve("CreateContainer", create_container::create_container(&self.daemon, request.into_inner())).await
        }

        async fn start_container(
            &self,
            request: Request<StartContainerRequest>,
        ) -> Result<Response<StartContainerResponse>, Status> {
            serve("StartContainer", start_container::start_container(&self.daemon, request.into_inner())).await
        }

        async fn stop_container(
            &self,
            request: Request<StopContainerRequest>,
        ) -> Result<Response<StopContainerResponse>, Status> {
            serve("StopContainer", stop_container::stop_container(&self.daemon, request.into_inner())).await
        }

        async fn remove_container(
            &self,
            request: Request<RemoveContainerRequest>,
        ) -> Result<Response<RemoveContainerResponse>, Status> {
            serve("RemoveContainer", remove_container::remove_container(&self.daemon, request.into_inner())).await
        }

        async fn container_status(
            &self,
            request: Request<ContainerStatusRequest>,
        ) -> Result<Response<ContainerStatusResponse>, Status> {
            serve("ContainerStatus", async { container_status::container_status(&self.daemon, request.into_inner()) })
                .await
        }

        async fn list_containers(
            &self,
            request: Request<ListContainersRequest>,
        ) -> Result<Response<ListContainersResponse>, Status> {
            serve("ListContainers", async { Ok(list_containers::list_containers(&self.daemon, request.into_inner())) })
                .await
        }

        async fn reopen_container_log(
            &self,
            request: Request<ReopenContainerLogRequest>,
        ) -> Result<Response<ReopenContainerLogResponse>, Status> {
            serve("ReopenContainerLog", reopen_container_log::reopen_container_log(&self.daemon, request.into_inner()))
                .await
        }

        async fn update_container_resources(
            &self,
            request: Request<UpdateContainerResourcesRequest>,
        ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
            serve(
                "UpdateContainerResources",
                update_container_resources::update_container_resources(&self.daemon, request.into_inner()),
            )
            .await
        }

        async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
            serve("Exec", async { exec::exec(&self.daemon, request.into_inner()) }).await
        }

        async fn attach(&self, request: Request<AttachRequest>) -> Result<Response<AttachResponse>, Status> {
            serve("Attach", async { attach::attach(&self.daemon, request.into_inner()) }).await
        }

        async fn port_forward(
            &self,
            request: Request<PortForwardRequest>,
        ) -> Result<Response<PortForwardResponse>, Status> {
            serve("PortForward", async { port_forward::port_forward(&self.daemon, request.into_inner()) }).await
        }

        async fn exec_sync(&self, request: Request<ExecSyncRequest>) -> Result<Response<ExecSyncResponse>, Status> {
            serve("ExecSync", exec_sync::exec_sync(&self.daemon, request.into_inner())).await
        }

        async fn container_stats(
            &self,
            request: Request<ContainerStatsRequest>,
        ) -> Result<Response<ContainerStatsResponse>, Status> {
            serve("ContainerStats", container_stats::container_stats(&self.daemon, request.into_inner())).await
        }

        async fn list_container_stats(
            &self,
            request: Request<ListContainerStatsRequest>,
        ) -> Result<Response<ListContainerStatsResponse>, Status> {
            serve("ListContainerStats", list_container_stats::list_container_stats(&self.daemon, request.into_inner()))
                .await
        }

        async fn pod_sandbox_stats(
            &self,
            request: Request<PodSandboxStatsRequest>,
        ) -> Result<Response<PodSandboxStatsResponse>, Status> {
            serve("PodSandboxStats", pod_sandbox_stats::pod_sandbox_stats(&self.daemon, request.into_inner())).await
        }

        async fn list_pod_sandbox_stats(
            &self,
            request: Request<ListPodSandboxStatsRequest>,
        ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
            serve(
                "ListPodSandboxStats",
                list_pod_sandbox_stats::list_pod_sandbox_stats(&self.daemon, request.into_inner()),
            )
            .await
        }

        async fn list_metric_descriptors(
            &self,
            request: Request<ListMetricDescriptorsRequest>,
        ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
            serve("ListMetricDescriptors", async {
                Ok(list_metric_descriptors::list_metric_descriptors(request.into_inner()))
            })
            .await
        }

        async fn list_pod_sandbox_metrics(
            &self,
            request: Request<ListPodSandboxMetricsRequest>,
        ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
            serve(
                "ListPodSandboxMetrics",
                list_pod_sandbox_metrics::list_pod_sandbox_metrics(&self.daemon, request.into_inner()),
            )
            .await
        }

        async fn get_container_events(
            &self,
            request: Request<GetEventsRequest>,
        ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
            serve("GetContainerEvents", async {
                let events = get_container_events::get_container_events(&self.daemon, request.into_inner());
                Ok(Box::pin(events) as EventStream)
            })
            .await
        }
    }
    unimplemented {
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
    }
}
