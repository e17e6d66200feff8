//! Runtime info: Version, Status, RuntimeConfig, UpdateRuntimeConfig, and that RPCs a runtime
//! refuses are refused as gRPC statuses, not dropped connections.

use k8s_cri::v1::{
    CgroupDriver, ContainerStatsRequest, ContainerStatusRequest, ExecSyncRequest, ImageFsInfoRequest, ImageSpec,
    ImageStatusRequest, ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, NetworkConfig,
    PodSandboxStatusRequest, RuntimeConfig, RuntimeConfigRequest, StatusRequest, StopContainerRequest,
    UpdateRuntimeConfigRequest, VersionRequest,
};
use tonic::Code;

use super::{case, ensure, rpc_failed};
use crate::suite::{Case, CaseResult, Context, Stop};

pub fn cases() -> Vec<Case> {
    vec![
        case!("runtime/version", version),
        case!("runtime/status-conditions", status_conditions),
        case!("runtime/status-verbose", status_verbose),
        case!("runtime/runtime-config", runtime_config),
        case!("runtime/update-runtime-config", update_runtime_config),
        case!("runtime/refusals-are-clean", refusals_are_clean),
    ]
}

async fn version(context: &mut Context) -> CaseResult {
    let client = &mut context.client;
    let v = client
        .runtime
        .version(VersionRequest { version: "v1".into() })
        .await
        .map_err(|s| rpc_failed("Version", s))?
        .into_inner();
    ensure(v.runtime_api_version == "v1", || {
        format!("runtime_api_version is {:?}, want \"v1\"", v.runtime_api_version)
    })?;
    ensure(!v.runtime_name.is_empty(), || "runtime_name is empty".into())?;
    ensure(!v.runtime_version.is_empty(), || "runtime_version is empty".into())?;
    ensure(!v.version.is_empty(), || "version is empty".into())?;
    Ok(())
}

async fn status_conditions(context: &mut Context) -> CaseResult {
    let client = &mut context.client;
    let status = client
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .map_err(|s| rpc_failed("Status", s))?
        .into_inner()
        .status
        .ok_or("Status: no status")?;
    let find = |kind: &str| status.conditions.iter().find(|c| c.r#type == kind).cloned();
    let runtime = find("RuntimeReady").ok_or("no RuntimeReady condition")?;
    ensure(runtime.status, || format!("RuntimeReady is false: {}: {}", runtime.reason, runtime.message))?;
    let network = find("NetworkReady").ok_or("no NetworkReady condition")?;
    ensure(network.status || (!network.reason.is_empty() && !network.message.is_empty()), || {
        "NetworkReady is false without a reason and a message".into()
    })?;
    Ok(())
}

/// `info` is for debugging and comes only with `verbose`.
async fn status_verbose(context: &mut Context) -> CaseResult {
    let client = &mut context.client;
    let status = |verbose| {
        let mut runtime = client.runtime.clone();
        async move { runtime.status(StatusRequest { verbose }).await.map_err(|s| rpc_failed("Status", s)) }
    };
    let verbose = status(true).await?.into_inner();
    ensure(!verbose.info.is_empty(), || "verbose Status returned no info".into())?;
    let terse = status(false).await?.into_inner();
    ensure(terse.info.is_empty(), || {
        format!("Status without verbose returned info: {:?}", terse.info.keys().collect::<Vec<_>>())
    })?;
    Ok(())
}

async fn runtime_config(context: &mut Context) -> CaseResult {
    let client = &mut context.client;
    let response = match client.runtime.runtime_config(RuntimeConfigRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => {
            return Err(Stop::Skip(
                "the runtime does not implement RuntimeConfig (optional: the kubelet then uses its own cgroupDriver)"
                    .into(),
            ));
        }
        Err(s) => return Err(rpc_failed("RuntimeConfig", s).into()),
    };
    let linux = response.linux.ok_or("RuntimeConfig: no linux configuration")?;
    CgroupDriver::try_from(linux.cgroup_driver)
        .map_err(|_| format!("unknown cgroup driver {}", linux.cgroup_driver))?;
    Ok(())
}

async fn update_runtime_config(context: &mut Context) -> CaseResult {
    let client = &mut context.client;
    let request = UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig { network_config: Some(NetworkConfig { pod_cidr: "10.88.0.0/16".into() }) }),
    };
    client.runtime.update_runtime_config(request).await.map_err(|s| rpc_failed("UpdateRuntimeConfig", s))?;
    Ok(())
}

/// RPCs about objects that do not exist, which a runtime may answer or refuse (NotFound,
/// Unimplemented, ...): what counts is a status with a message, not a dropped connection or an
/// internal error, and that the runtime answers afterwards.
async fn refusals_are_clean(context: &mut Context) -> CaseResult {
    let client = &mut context.client;
    const ABSENT: &str = "crisp-conformance-absent-0000000000000000000000000000000000000000";
    let absent_image =
        || Some(ImageSpec { image: "crisp-conformance.invalid/absent:never".into(), ..Default::default() });
    let r = client.runtime.clone();
    let i = client.image.clone();
    let calls: Vec<(&str, Result<(), tonic::Status>)> = vec![
        (
            "PodSandboxStatus",
            r.clone()
                .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: ABSENT.into(), verbose: false })
                .await
                .map(drop),
        ),
        ("ListPodSandbox", r.clone().list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.map(drop)),
        (
            "ContainerStatus",
            r.clone()
                .container_status(ContainerStatusRequest { container_id: ABSENT.into(), verbose: false })
                .await
                .map(drop),
        ),
        ("ListContainers", r.clone().list_containers(ListContainersRequest { filter: None }).await.map(drop)),
        (
            "StopContainer",
            r.clone().stop_container(StopContainerRequest { container_id: ABSENT.into(), timeout: 0 }).await.map(drop),
        ),
        (
            "ContainerStats",
            r.clone().container_stats(ContainerStatsRequest { container_id: ABSENT.into() }).await.map(drop),
        ),
        (
            "ExecSync",
            r.clone()
                .exec_sync(ExecSyncRequest { container_id: ABSENT.into(), cmd: vec!["true".into()], timeout: 1 })
                .await
                .map(drop),
        ),
        ("ListImages", i.clone().list_images(ListImagesRequest { filter: None }).await.map(drop)),
        (
            "ImageStatus",
            i.clone().image_status(ImageStatusRequest { image: absent_image(), verbose: false }).await.map(drop),
        ),
        ("ImageFsInfo", i.clone().image_fs_info(ImageFsInfoRequest {}).await.map(drop)),
    ];
    for (rpc, result) in calls {
        if let Err(status) = result {
            ensure(!matches!(status.code(), Code::Internal | Code::Unknown | Code::Unavailable), || {
                format!("{rpc} failed uncleanly: {}", rpc_failed(rpc, status.clone()))
            })?;
            ensure(!status.message().is_empty(), || format!("{rpc} refused with {:?} and no message", status.code()))?;
        }
    }
    client
        .runtime
        .version(VersionRequest { version: "v1".into() })
        .await
        .map_err(|s| format!("the runtime stopped answering: {}", rpc_failed("Version", s)))?;
    Ok(())
}
