//! From the sandbox model to what the CNI capability arguments carry.

use crisp_network::cni;

use crate::files::DnsConfig;
use crate::model::{Bandwidth, PortMapping, Protocol};

pub fn port_mapping(p: &PortMapping) -> cni::PortMapping {
    cni::PortMapping {
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: match p.protocol {
            Protocol::Tcp => cni::Protocol::Tcp,
            Protocol::Udp => cni::Protocol::Udp,
            Protocol::Sctp => cni::Protocol::Sctp,
        },
        host_ip: p.host_ip,
    }
}

/// The bandwidth plugin wants a burst with every rate; like the kubelet's own dockershim, crisp
/// gives the largest one, so the rate alone shapes the traffic.
const UNLIMITED_BURST: u64 = i32::MAX as u64;

pub fn bandwidth(b: &Bandwidth) -> Option<cni::Bandwidth> {
    (b.ingress.is_some() || b.egress.is_some()).then(|| cni::Bandwidth {
        ingress_rate: b.ingress.unwrap_or(0),
        ingress_burst: b.ingress.map_or(0, |_| UNLIMITED_BURST),
        egress_rate: b.egress.unwrap_or(0),
        egress_burst: b.egress.map_or(0, |_| UNLIMITED_BURST),
    })
}

pub fn dns(d: &DnsConfig) -> Option<cni::Dns> {
    (!d.is_empty()).then(|| cni::Dns {
        servers: d.servers.clone(),
        searches: d.searches.clone(),
        options: d.options.clone(),
    })
}
