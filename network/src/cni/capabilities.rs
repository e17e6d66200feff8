//! Capability arguments (`runtimeConfig`): what the runtime knows about a pod that plugins may
//! use, given to a plugin only for the capabilities its configuration declares.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

/// A host port forwarded to the pod (`portMappings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// Traffic shaping for the pod (`bandwidth`): rates in bits per second, bursts in bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// The pod's resolver configuration (`dns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The capability arguments of one attachment, by capability name.
pub(crate) fn capability_args(
    port_mappings: &[PortMapping],
    bandwidth: Option<&Bandwidth>,
    dns: Option<&Dns>,
) -> Map<String, Value> {
    let mut args = Map::new();
    if !port_mappings.is_empty() {
        args.insert("portMappings".into(), to_value(port_mappings));
    }
    if let Some(bandwidth) = bandwidth {
        args.insert("bandwidth".into(), to_value(bandwidth));
    }
    if let Some(dns) = dns {
        args.insert("dns".into(), to_value(dns));
    }
    args
}

fn to_value(value: impl Serialize) -> Value {
    // These types serialize to JSON without fail: plain numbers, strings and lists.
    serde_json::to_value(value).unwrap_or_default()
}

/// The `runtimeConfig` for one plugin: the arguments whose capability it declares `true`.
pub(crate) fn runtime_config(plugin: &Value, args: &Map<String, Value>) -> Map<String, Value> {
    let declared = plugin.get("capabilities").and_then(Value::as_object);
    args.iter()
        .filter(|(name, _)| declared.and_then(|c| c.get(*name)).and_then(Value::as_bool) == Some(true))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_the_conventions_say() {
        let ports = [
            PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp, host_ip: None },
            PortMapping {
                host_port: 53,
                container_port: 5353,
                protocol: Protocol::Udp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
            },
        ];
        let bandwidth = Bandwidth { ingress_rate: 1000, ingress_burst: 10, egress_rate: 2000, egress_burst: 20 };
        let dns =
            Dns { servers: vec!["10.0.0.10".into()], searches: vec!["svc".into()], options: vec!["ndots:5".into()] };
        let args = capability_args(&ports, Some(&bandwidth), Some(&dns));
        assert_eq!(
            Value::Object(args),
            json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 53, "containerPort": 5353, "protocol": "udp", "hostIP": "127.0.0.1"},
                ],
                "bandwidth": {"ingressRate": 1000, "ingressBurst": 10, "egressRate": 2000, "egressBurst": 20},
                "dns": {"servers": ["10.0.0.10"], "searches": ["svc"], "options": ["ndots:5"]},
            })
        );
        assert!(capability_args(&[], None, None).is_empty());
    }

    #[test]
    fn only_declared_capabilities_reach_a_plugin() {
        let args = json!({"portMappings": [1], "bandwidth": {"ingressRate": 1}, "dns": {}});
        let args = args.as_object().unwrap();
        let plugin = json!({"type": "x", "capabilities": {"portMappings": true, "bandwidth": false, "mac": true}});
        assert_eq!(Value::Object(runtime_config(&plugin, args)), json!({"portMappings": [1]}));
        assert!(runtime_config(&json!({"type": "x"}), args).is_empty());
        assert!(runtime_config(&json!({"type": "x", "capabilities": {"dns": "yes"}}), args).is_empty());
    }
}
