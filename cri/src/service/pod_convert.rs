//! Between the CRI's pod sandbox messages and crisp's own sandbox model.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crisp_pod::PodKey;
use crisp_pod::SandboxView;
use crisp_pod::files::DnsConfig;
use crisp_pod::model::{
    Bandwidth, NamespaceMode, NamespaceModes, PodResources, PortMapping, Protocol, SandboxConfig, SandboxRecord,
};
use k8s_cri::v1 as cri;
use tonic::Status;

use crate::status::ToStatus;

const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

pub fn sandbox_config(config: cri::PodSandboxConfig, runtime_handler: String) -> Result<SandboxConfig, Status> {
    let metadata = config.metadata.ok_or_else(|| Status::invalid_argument("pod sandbox config has no metadata"))?;
    let key = PodKey::new(&metadata.name, &metadata.namespace, &metadata.uid, metadata.attempt)
        .map_err(|e| crisp_pod::PodError::from(e).to_status())?;
    let linux = config.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    let options = security.namespace_options.unwrap_or_default();
    let namespaces = NamespaceModes {
        network: namespace_mode("network", options.network)?,
        pid: namespace_mode("PID", options.pid)?,
        ipc: namespace_mode("IPC", options.ipc)?,
    };
    host_user_namespace(options.userns_options.as_ref(), &runtime_handler)?;
    let port_mappings = config.port_mappings.iter().map(port_mapping).collect::<Result<_, _>>()?;
    let bandwidth = Bandwidth {
        ingress: bandwidth(&config.annotations, INGRESS_BANDWIDTH)?,
        egress: bandwidth(&config.annotations, EGRESS_BANDWIDTH)?,
    };
    Ok(SandboxConfig {
        key,
        hostname: config.hostname,
        log_directory: Some(config.log_directory).filter(|d| !d.is_empty()).map(Into::into),
        dns: config
            .dns_config
            .map(|d| DnsConfig { servers: d.servers, searches: d.searches, options: d.options })
            .unwrap_or_default(),
        port_mappings,
        labels: sorted(config.labels),
        annotations: sorted(config.annotations),
        cgroup_parent: linux.cgroup_parent,
        namespaces,
        sysctls: sorted(linux.sysctls),
        resources: resources(linux.resources.as_ref(), linux.overhead.as_ref()),
        bandwidth,
        privileged: security.privileged,
        runtime_handler,
    })
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn namespace_mode(which: &str, mode: i32) -> Result<NamespaceMode, Status> {
    match cri::NamespaceMode::try_from(mode) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(cri::NamespaceMode::Target) => {
            Err(Status::invalid_argument(format!("{which} namespace mode TARGET is for containers, not pod sandboxes")))
        }
        Err(_) => Err(Status::invalid_argument(format!("unknown {which} namespace mode {mode}"))),
    }
}

/// crisp runs every pod in the host's user namespace: NODE mode, or no user namespace options
/// (what kubelets before user namespaces send, and what they still send for host-user pods). A
/// pod that asks for one of its own is refused rather than silently run with host IDs. Malformed
/// requests are InvalidArgument whatever the runtime supports; a well-formed POD request is
/// Unimplemented, as gRPC defines it ("not supported or enabled"), and the handlers' features say
/// `user_namespaces: false`, so a kubelet with the feature gate should not send one.
fn host_user_namespace(userns: Option<&cri::UserNamespace>, runtime_handler: &str) -> Result<(), Status> {
    let Some(userns) = userns else { return Ok(()) };
    let mapped = !userns.uids.is_empty() || !userns.gids.is_empty();
    match cri::NamespaceMode::try_from(userns.mode) {
        Ok(cri::NamespaceMode::Node) if mapped => {
            Err(Status::invalid_argument("user namespace mode NODE uses the host's IDs: it takes no ID mappings"))
        }
        Ok(cri::NamespaceMode::Node) => Ok(()),
        Ok(cri::NamespaceMode::Pod) => {
            pod_id_mapping("UID", &userns.uids)?;
            pod_id_mapping("GID", &userns.gids)?;
            let handler = if runtime_handler.is_empty() { "the default runtime handler" } else { runtime_handler };
            Err(Status::unimplemented(format!(
                "user namespace mode POD: {handler} does not support user namespaces (it reports the feature \
                 user_namespaces false); run the pod in the host's user namespace (mode NODE)"
            )))
        }
        Ok(mode @ (cri::NamespaceMode::Container | cri::NamespaceMode::Target)) => Err(Status::invalid_argument(
            format!("user namespace mode {} is not for pods: only POD and NODE are", mode.as_str_name()),
        )),
        Err(_) => Err(Status::invalid_argument(format!("unknown user namespace mode {}", userns.mode))),
    }
}

/// The one mapping a POD user namespace takes (the kubelet sends one range per pod): it maps
/// the container's ID 0, so that root in the pod is someone, and it fits in 32-bit IDs.
fn pod_id_mapping(which: &str, mappings: &[cri::IdMapping]) -> Result<(), Status> {
    let [mapping] = mappings else {
        return Err(Status::invalid_argument(format!(
            "user namespace mode POD takes exactly one {which} mapping, not {}",
            mappings.len()
        )));
    };
    let fits = |start: u32| u64::from(start) + u64::from(mapping.length) <= 1 << 32;
    if mapping.container_id != 0 || mapping.length == 0 || !fits(mapping.host_id) {
        return Err(Status::invalid_argument(format!(
            "user namespace {which} mapping {} {} {} (container, host, length) must map container ID 0 to a \
             non-empty range of host IDs",
            mapping.container_id, mapping.host_id, mapping.length
        )));
    }
    Ok(())
}

fn port_mapping(p: &cri::PortMapping) -> Result<PortMapping, Status> {
    let protocol = match cri::Protocol::try_from(p.protocol) {
        Ok(cri::Protocol::Tcp) => Protocol::Tcp,
        Ok(cri::Protocol::Udp) => Protocol::Udp,
        Ok(cri::Protocol::Sctp) => Protocol::Sctp,
        Err(_) => return Err(Status::invalid_argument(format!("port mapping: unknown protocol {}", p.protocol))),
    };
    let port = |what, value: i32| {
        u16::try_from(value)
            .ok()
            .filter(|&v| v != 0 || what == "host_port")
            .ok_or_else(|| Status::invalid_argument(format!("port mapping: {what} {value} is not a port number")))
    };
    let host_ip = match p.host_ip.as_str() {
        "" => None,
        ip => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| Status::invalid_argument(format!("port mapping: host_ip {ip:?} is not an IP address")))?,
        ),
    };
    Ok(PortMapping {
        protocol,
        container_port: port("container_port", p.container_port)?,
        host_port: port("host_port", p.host_port)?,
        host_ip,
    })
}

/// The pod cgroup holds its containers and the sandbox's own overhead.
fn resources(
    resources: Option<&cri::LinuxContainerResources>,
    overhead: Option<&cri::LinuxContainerResources>,
) -> PodResources {
    let positive = |v: i64| (v > 0).then_some(v);
    let sum = |f: fn(&cri::LinuxContainerResources) -> i64| {
        let total: i64 = [resources, overhead].into_iter().flatten().map(f).filter(|v| *v > 0).sum();
        positive(total)
    };
    let either = |f: fn(&cri::LinuxContainerResources) -> &String| {
        [resources, overhead].into_iter().flatten().map(f).find(|s| !s.is_empty()).cloned()
    };
    PodResources {
        cpu_period: [resources, overhead].into_iter().flatten().find_map(|r| positive(r.cpu_period)).map(|v| v as u64),
        cpu_quota: sum(|r| r.cpu_quota),
        cpu_shares: sum(|r| r.cpu_shares).map(|v| v as u64),
        memory_limit: sum(|r| r.memory_limit_in_bytes),
        cpuset_cpus: either(|r| &r.cpuset_cpus),
        cpuset_mems: either(|r| &r.cpuset_mems),
    }
}

/// The kubelet passes traffic shaping as annotations holding Kubernetes quantities (`10M`).
fn bandwidth(annotations: &HashMap<String, String>, key: &str) -> Result<Option<u64>, Status> {
    let Some(text) = annotations.get(key) else {
        return Ok(None);
    };
    parse_quantity(text)
        .map(Some)
        .ok_or_else(|| Status::invalid_argument(format!("annotation {key}: {text:?} is not a bandwidth such as 10M")))
}

fn parse_quantity(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    digits.parse::<u64>().ok().filter(|v| *v > 0)?.checked_mul(multiplier)
}

fn metadata(record: &SandboxRecord) -> cri::PodSandboxMetadata {
    let key = &record.config.key;
    cri::PodSandboxMetadata {
        name: key.name.clone(),
        uid: key.uid.clone(),
        namespace: key.namespace.clone(),
        attempt: key.attempt,
    }
}

fn state(view: &SandboxView) -> i32 {
    if view.ready { cri::PodSandboxState::SandboxReady as i32 } else { cri::PodSandboxState::SandboxNotready as i32 }
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn to_cri_sandbox(view: &SandboxView) -> cri::PodSandbox {
    let record = &view.record;
    cri::PodSandbox {
        id: record.id.to_string(),
        metadata: Some(metadata(record)),
        state: state(view),
        created_at: record.created_at_ns,
        labels: unsorted(&record.config.labels),
        annotations: unsorted(&record.config.annotations),
        runtime_handler: record.config.runtime_handler.clone(),
    }
}

pub fn to_cri_status(view: &SandboxView) -> cri::PodSandboxStatus {
    let record = &view.record;
    let mode = |m: NamespaceMode| match m {
        NamespaceMode::Pod => cri::NamespaceMode::Pod as i32,
        NamespaceMode::Container => cri::NamespaceMode::Container as i32,
        NamespaceMode::Node => cri::NamespaceMode::Node as i32,
    };
    let modes = record.config.namespaces;
    let ips = record.network.as_ref().map(|n| n.ips.as_slice()).unwrap_or_default();
    cri::PodSandboxStatus {
        id: record.id.to_string(),
        metadata: Some(metadata(record)),
        state: state(view),
        created_at: record.created_at_ns,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips.first().map(ToString::to_string).unwrap_or_default(),
            additional_ips: ips.iter().skip(1).map(|ip| cri::PodIp { ip: ip.to_string() }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: mode(modes.network),
                    pid: mode(modes.pid),
                    ipc: mode(modes.ipc),
                    target_id: String::new(),
                    userns_options: None,
                }),
            }),
        }),
        labels: unsorted(&record.config.labels),
        annotations: unsorted(&record.config.annotations),
        runtime_handler: record.config.runtime_handler.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("500"), Some(500));
        for bad in ["", "M", "10m", "1.5M", "-1", "0", "99999999999999999P"] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refuses_bad_ports_and_modes() {
        let mapping = |container_port, host_port, host_ip: &str| cri::PortMapping {
            protocol: 0,
            container_port,
            host_port,
            host_ip: host_ip.into(),
        };
        assert!(port_mapping(&mapping(80, 8080, "127.0.0.1")).is_ok());
        assert!(port_mapping(&mapping(80, 0, "")).is_ok(), "host port 0: no host port");
        for bad in [mapping(0, 1, ""), mapping(70000, 1, ""), mapping(80, -1, ""), mapping(80, 1, "localhost")] {
            assert_eq!(port_mapping(&bad).unwrap_err().code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        assert_eq!(namespace_mode("PID", 3).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(namespace_mode("PID", 9).unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn user_namespaces_only_the_hosts() {
        let mapping = |container_id, host_id, length| cri::IdMapping { container_id, host_id, length };
        let userns = |mode: cri::NamespaceMode, ids: Vec<cri::IdMapping>| cri::UserNamespace {
            mode: mode.into(),
            uids: ids.clone(),
            gids: ids,
        };
        let code = |u: &cri::UserNamespace| host_user_namespace(Some(u), "runc").map_err(|s| s.code());
        assert!(host_user_namespace(None, "").is_ok());
        assert_eq!(code(&userns(cri::NamespaceMode::Node, vec![])), Ok(()));
        let good = vec![mapping(0, 1000, 100000)];
        assert_eq!(code(&userns(cri::NamespaceMode::Pod, good.clone())), Err(tonic::Code::Unimplemented));
        let refused = [
            userns(cri::NamespaceMode::Node, good.clone()),
            userns(cri::NamespaceMode::Container, vec![]),
            userns(cri::NamespaceMode::Target, vec![]),
            userns(cri::NamespaceMode::Pod, vec![]),
            userns(cri::NamespaceMode::Pod, vec![mapping(0, 1000, 100000), mapping(0, 2000, 100000)]),
            userns(cri::NamespaceMode::Pod, vec![mapping(1, 1000, 100000)]),
            userns(cri::NamespaceMode::Pod, vec![mapping(0, 1000, 0)]),
            userns(cri::NamespaceMode::Pod, vec![mapping(0, u32::MAX, 2)]),
            cri::UserNamespace { mode: 9, ..Default::default() },
        ];
        for bad in refused {
            assert_eq!(code(&bad), Err(tonic::Code::InvalidArgument), "{bad:?}");
        }
    }

    #[test]
    fn resources_add_overhead() {
        let r = cri::LinuxContainerResources {
            cpu_shares: 512,
            memory_limit_in_bytes: 100,
            cpu_period: 100000,
            cpu_quota: 50000,
            ..Default::default()
        };
        let o = cri::LinuxContainerResources { cpu_shares: 2, memory_limit_in_bytes: 10, ..Default::default() };
        let sum = resources(Some(&r), Some(&o));
        assert_eq!(sum.cpu_shares, Some(514));
        assert_eq!(sum.memory_limit, Some(110));
        assert_eq!(sum.cpu_period, Some(100000));
        assert_eq!(sum.cpu_quota, Some(50000));
        assert_eq!(resources(None, None), PodResources::default());
    }
}
