use std::collections::HashMap;
use std::sync::Arc;

use crisp_runtime::HandlerName;
use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest,
    StatusResponse,
};
use tonic::Status;

use crate::daemon::Daemon;

/// The condition types and reasons the kubelet reads.
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";
const RUNTIME_NOT_READY: &str = "RuntimeNotReady";
const NETWORK_NOT_READY: &str = "NetworkPluginNotReady";

/// Reads the CNI config dir and checks the runtime binary on a blocking thread: the kubelet
/// asks every few seconds, and a slow disk must not stall the async workers.
pub async fn status(daemon: Arc<Daemon>, request: StatusRequest) -> Result<StatusResponse, Status> {
    let cni = daemon.cni.clone();
    let mut response = tokio::task::spawn_blocking(move || status_blocking(&daemon, request))
        .await
        .map_err(|e| Status::internal(format!("Status: {e}")))??;
    // A CNI 1.1 network also answers whether its plugins are ready to add pods.
    let conditions = response.status.as_mut().map(|s| s.conditions.as_mut_slice()).unwrap_or_default();
    if let Some(network) = conditions.iter_mut().find(|c| c.r#type == NETWORK_READY && c.status)
        && let Err(e) = cni.status().await
    {
        *network = condition(NETWORK_READY, NETWORK_NOT_READY, Err(e.to_string()));
    }
    Ok(response)
}

fn status_blocking(daemon: &Daemon, request: StatusRequest) -> Result<StatusResponse, Status> {
    // Usable at start, and its binary still there.
    let default_usable = daemon.usable_handler("").and_then(|()| daemon.default_handler().check());
    let runtime = condition(RUNTIME_READY, RUNTIME_NOT_READY, default_usable.map_err(|e| e.to_string()));
    let network_config = crisp_network::conflist::pod_network(&daemon.config.network);
    let network =
        condition(NETWORK_READY, NETWORK_NOT_READY, network_config.as_ref().map(|_| ()).map_err(|e| e.to_string()));

    let mut info = HashMap::new();
    if request.verbose {
        let json =
            |v: serde_json::Result<String>| v.map_err(|e| Status::internal(format!("Status: encoding info: {e}")));
        info.insert("config".into(), json(serde_json::to_string(&daemon.config))?);
        if let Ok(list) = &network_config {
            info.insert(
                "cniNetwork".into(),
                json(serde_json::to_string(&serde_json::json!({
                    "name": list.name,
                    "cniVersion": list.cni_version,
                    "file": list.path,
                    "plugins": list.plugins,
                })))?,
            );
        }
        let handlers: serde_json::Map<String, serde_json::Value> = daemon
            .handlers
            .iter()
            .map(|h| {
                let problem = daemon.usable_handler(h.name.as_str()).err().map(|e| e.to_string());
                (
                    h.name.to_string(),
                    serde_json::json!({ "path": h.path, "usable": problem.is_none(), "error": problem }),
                )
            })
            .collect();
        info.insert("runtimeHandlers".into(), json(serde_json::to_string(&handlers))?);
        info.insert("oomScoreAdjFloor".into(), json(serde_json::to_string(&daemon.oom_score_adj.floor()))?);
        let cidr = daemon.pod_cidr.read().expect("pod CIDR lock").as_ref().map(|c| c.to_string());
        info.insert("podCIDR".into(), json(serde_json::to_string(&cidr))?);
    }

    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions: vec![runtime, network] }),
        info,
        runtime_handlers: runtime_handlers(daemon),
        features: Some(RuntimeFeatures { supplemental_groups_policy: true }),
    })
}

fn condition(kind: &str, not_ready_reason: &str, state: Result<(), String>) -> RuntimeCondition {
    match state {
        Ok(()) => RuntimeCondition { r#type: kind.into(), status: true, reason: String::new(), message: String::new() },
        Err(message) => {
            RuntimeCondition { r#type: kind.into(), status: false, reason: not_ready_reason.into(), message }
        }
    }
}

/// Each configured handler, and the default one again under the empty name, as the kubelet
/// looks it up for pods without a RuntimeClass.
fn runtime_handlers(daemon: &Daemon) -> Vec<RuntimeHandler> {
    let features = |handler: &HandlerName| {
        let offered = daemon.handler_features(handler);
        Some(RuntimeHandlerFeatures { recursive_read_only_mounts: offered.recursive_read_only, user_namespaces: false })
    };
    std::iter::once((String::new(), &daemon.default_handler))
        .chain(daemon.handlers.iter().map(|h| (h.name.to_string(), &h.name)))
        .map(|(name, handler)| RuntimeHandler { name, features: features(handler) })
        .collect()
}
