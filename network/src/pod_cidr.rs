//! The node's pod CIDR, as the kubelet hands it over in `UpdateRuntimeConfig`.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
#[error("invalid pod CIDR {0:?}: want comma-separated CIDRs such as 10.88.0.0/16 or fd00::/64")]
pub struct PodCidrError(String);

/// One CIDR, or an IPv4 and an IPv6 one for a dual-stack node, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCidr(String);

impl PodCidr {
    pub fn parse(text: &str) -> Result<Self, PodCidrError> {
        let families: Option<Vec<bool>> = text.split(',').map(cidr_is_v4).collect();
        let valid = match families.as_deref() {
            Some([_]) => true,
            Some([a, b]) => a != b,
            _ => false,
        };
        if valid { Ok(PodCidr(text.to_owned())) } else { Err(PodCidrError(text.to_owned())) }
    }
}

/// Whether a CIDR is IPv4 (`Some(true)`), IPv6 (`Some(false)`) or malformed (`None`).
fn cidr_is_v4(cidr: &str) -> Option<bool> {
    let (addr, prefix) = cidr.split_once('/')?;
    let (v4, max) = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => (true, 32),
        IpAddr::V6(_) => (false, 128),
    };
    let digits = !prefix.is_empty() && prefix.len() <= 3 && prefix.bytes().all(|b| b.is_ascii_digit());
    (digits && prefix.parse::<u8>().is_ok_and(|p| p <= max)).then_some(v4)
}

impl fmt::Display for PodCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_single_and_dual_stack() {
        for ok in ["10.88.0.0/16", "fd00::/64", "10.88.0.0/16,fd00::/64", "0.0.0.0/0"] {
            assert_eq!(PodCidr::parse(ok).unwrap().to_string(), ok);
        }
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "10.88.0.0",
            "10.88.0.0/33",
            "fd00::/129",
            "10.88.0.0/16,",
            "x/8",
            "10.88.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8,10.1.0.0/16",
            "10.0.0.0/8,fd00::/64,fd01::/64",
        ] {
            assert!(PodCidr::parse(bad).is_err(), "{bad:?}");
        }
    }
}
