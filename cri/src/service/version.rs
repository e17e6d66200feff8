use k8s_cri::v1::{VersionRequest, VersionResponse};

/// The version of the kubelet runtime API that CRI v1 runtimes report.
const KUBELET_API_VERSION: &str = "0.1.0";

pub fn version(_: VersionRequest) -> VersionResponse {
    VersionResponse {
        version: KUBELET_API_VERSION.into(),
        runtime_name: "crisp".into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: "v1".into(),
    }
}
