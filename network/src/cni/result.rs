//! ADD results, in the formats of CNI 0.3.x, 0.4.0 and 1.x, and the pod's IPs in them.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::version::SpecVersion;

/// The parts of a result crisp reads; everything else is kept as the plugin wrote it.
#[derive(Deserialize)]
struct Shape {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Deserialize)]
struct Interface {
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    interface: Option<usize>,
    /// "4" or "6" before 1.0.0.
    version: Option<String>,
}

/// Checks an ADD result and returns it in the format of `version` (the one the network runs),
/// converting a result a plugin wrote for another supported version, as libcni does.
pub fn parse(bytes: &[u8], version: SpecVersion) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("no result".into());
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let shape = Shape::deserialize(&value).map_err(|e| e.to_string())?;
    let written = match &shape.cni_version {
        Some(text) => match SpecVersion::parse(text).filter(|v| v.is_supported()) {
            Some(v) => v,
            None => return Err(format!("result version {text:?} is not one crisp reads")),
        },
        None => version,
    };
    for ip in &shape.ips {
        let addr = cidr_address(&ip.address).ok_or_else(|| format!("invalid IP address {:?}", ip.address))?;
        if ip.interface.is_some_and(|i| i >= shape.interfaces.len()) {
            return Err(format!("IP {} names interface {:?} of {}", ip.address, ip.interface, shape.interfaces.len()));
        }
        if let Some(family) = &ip.version {
            let want = if addr.is_ipv4() { "4" } else { "6" };
            if family != want {
                return Err(format!("IP {} has version {family:?}", ip.address));
            }
        }
    }
    let Some(object) = value.as_object_mut() else { unreachable!("checked above") };
    object.insert("cniVersion".into(), version.to_string().into());
    let versioned_ips = version < SpecVersion::V1_0_0;
    if versioned_ips != (written < SpecVersion::V1_0_0) {
        for ip in object.get_mut("ips").and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(ip) = ip.as_object_mut() else { continue };
            if versioned_ips {
                let v4 = ip.get("address").and_then(Value::as_str).and_then(cidr_address).is_some_and(|a| a.is_ipv4());
                ip.insert("version".into(), if v4 { "4" } else { "6" }.into());
            } else {
                ip.remove("version");
            }
        }
    }
    Ok(value)
}

/// The address of `a.b.c.d/len` or `x::y/len`.
fn cidr_address(cidr: &str) -> Option<IpAddr> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let digits = !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit());
    (digits && len.parse::<u8>().is_ok_and(|l| l <= max)).then_some(addr)
}

/// The pod's addresses in a result [`parse`] accepted: those on an interface inside the sandbox
/// (or on none named, as IPAM results have it), IPv4 first.
pub fn pod_ips(result: &Value) -> Vec<IpAddr> {
    let Ok(shape) = Shape::deserialize(result) else { return Vec::new() };
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in &shape.ips {
        let in_pod = ip.interface.is_none_or(|i| shape.interfaces.get(i).is_some_and(|i| !i.sandbox.is_empty()));
        match cidr_address(&ip.address) {
            Some(addr) if in_pod && !ips.contains(&addr) => ips.push(addr),
            _ => {}
        }
    }
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(text: &str) -> SpecVersion {
        SpecVersion::parse(text).unwrap()
    }

    const V1: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
        "ips": [
            {"address": "fd00::5/64", "interface": 2},
            {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2},
            {"address": "10.9.9.9/32", "interface": 0}
        ],
        "routes": [{"dst": "10.1.0.0/16"}],
        "dns": {}
    }"#;

    #[test]
    fn reads_a_1x_result() {
        let result = parse(V1.as_bytes(), v("1.0.0")).unwrap();
        assert_eq!(result["routes"], json!([{"dst": "10.1.0.0/16"}]));
        assert_eq!(pod_ips(&result), ["10.1.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
    }

    #[test]
    fn reads_0_3_and_0_4_results() {
        for version in ["0.3.1", "0.4.0"] {
            let text = json!({
                "cniVersion": version,
                "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
                "ips": [{"version": "4", "address": "10.1.0.7/24", "interface": 0}],
            });
            let result = parse(text.to_string().as_bytes(), v(version)).unwrap();
            assert_eq!(result["ips"][0]["version"], "4");
            assert_eq!(pod_ips(&result), ["10.1.0.7".parse::<IpAddr>().unwrap()]);
        }
    }

    #[test]
    fn converts_between_formats() {
        let old = json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.0.7/24"}]});
        let new = parse(old.to_string().as_bytes(), v("1.0.0")).unwrap();
        assert_eq!(new, json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.7/24"}]}));
        let back = parse(new.to_string().as_bytes(), v("0.3.1")).unwrap();
        assert_eq!(back, json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.0.7/24"}]}));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (bad, why) in [
            ("", "no result"),
            ("  \n", "no result"),
            ("[]", "not a JSON object"),
            (r#"{"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/24"}}"#, "not one crisp reads"),
            (r#"{"ips": [{"address": "10.0.0.1"}]}"#, "invalid IP address"),
            (r#"{"ips": [{"address": "10.0.0.1/33"}]}"#, "invalid IP address"),
            (r#"{"ips": [{"address": "10.0.0.1/24", "interface": 0}]}"#, "names interface"),
            (r#"{"ips": [{"address": "10.0.0.1/24", "version": "6"}]}"#, "has version"),
        ] {
            let err = parse(bad.as_bytes(), v("1.0.0")).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
