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
        let valid = text.split(',').all(|cidr| {
            let Some((addr, prefix)) = cidr.split_once('/') else { return false };
            let max = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            prefix.parse::<u8>().is_ok_and(|p| p <= max)
        });
        if valid { Ok(PodCidr(text.to_owned())) } else { Err(PodCidrError(text.to_owned())) }
    }
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
        for bad in ["", "10.88.0.0", "10.88.0.0/33", "fd00::/129", "10.88.0.0/16,", "x/8", "10.88.0.0/-1"] {
            assert!(PodCidr::parse(bad).is_err(), "{bad:?}");
        }
    }
}
