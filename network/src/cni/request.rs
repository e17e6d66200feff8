//! What a pod asks of the network, and what it gets: the attachment parameters.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;

use super::capabilities::{Bandwidth, Dns, PortMapping};
use super::error::CniError;

/// The interface every pod gets; one attachment per pod.
pub(crate) const IFNAME: &str = "eth0";

/// One pod to attach to the network.
#[derive(Debug, Clone, PartialEq)]
pub struct PodNetworkRequest {
    /// The sandbox id: `CNI_CONTAINERID`, and the key of the attachment.
    pub container_id: String,
    pub netns: PathBuf,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub port_mappings: Vec<PortMapping>,
    pub bandwidth: Option<Bandwidth>,
    pub dns: Option<Dns>,
}

impl PodNetworkRequest {
    /// `CNI_ARGS` as kubelet runtimes pass it; `IgnoreUnknown` keeps plugins that know none of
    /// the keys from refusing them.
    pub(crate) fn cni_args(&self) -> Result<String, CniError> {
        let pairs = [
            ("K8S_POD_NAMESPACE", &self.pod_namespace),
            ("K8S_POD_NAME", &self.pod_name),
            ("K8S_POD_INFRA_CONTAINER_ID", &self.container_id),
            ("K8S_POD_UID", &self.pod_uid),
        ];
        let mut args = String::from("IgnoreUnknown=1");
        for (key, value) in pairs {
            if value.contains([';', '=', '\0']) {
                return Err(CniError::InvalidArgument { key, value: value.clone() });
            }
            args.push_str(&format!(";{key}={value}"));
        }
        Ok(args)
    }
}

/// A pod's place on the network, as ADD left it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The network's `name`.
    pub network: String,
    /// The pod's interface, `eth0`.
    pub interface: String,
    /// The pod's addresses, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// The result of the chain's last plugin.
    pub result: Value,
}

/// The spec's container id: alphanumeric first, then alphanumerics, `_`, `.` or `-`. It also
/// names the attachment's cache file, so nothing else may pass.
pub(crate) fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid { Ok(()) } else { Err(CniError::InvalidContainerId(id.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PodNetworkRequest {
        PodNetworkRequest {
            container_id: "abc123".into(),
            netns: "/run/netns/x".into(),
            pod_name: "web-0".into(),
            pod_namespace: "default".into(),
            pod_uid: "0f6e-11".into(),
            port_mappings: vec![],
            bandwidth: None,
            dns: None,
        }
    }

    #[test]
    fn cni_args_in_kubelet_order() {
        assert_eq!(
            request().cni_args().unwrap(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0f6e-11"
        );
        let mut bad = request();
        bad.pod_name = "a;b=c".into();
        assert!(matches!(bad.cni_args(), Err(CniError::InvalidArgument { key: "K8S_POD_NAME", .. })));
    }

    #[test]
    fn container_ids() {
        for ok in ["a", "0123abcdef", "a_b.c-d"] {
            check_container_id(ok).unwrap();
        }
        for bad in ["", ".a", "-a", "_a", "a/b", "../x", "a b", "é"] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
    }
}
