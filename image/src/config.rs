//! The `[image]` section of crisp's configuration: how each registry host is reached.

use serde::{Deserialize, Serialize};

use crate::host::is_host_port;
use crate::unpack::Limits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// A layer whose uncompressed tar is larger is refused: a decompression bomb.
    pub max_layer_bytes: u64,
    /// A layer with more entries is refused.
    pub max_layer_entries: u64,
    pub registries: Vec<RegistryConfig>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        let limits = Limits::default();
        ImageConfig { max_layer_bytes: limits.max_bytes, max_layer_entries: limits.max_entries, registries: Vec::new() }
    }
}

/// One registry host: the mirrors tried in order, then the host itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry as image references name it: `docker.io`, `registry.k8s.io`, `host:port`.
    pub host: String,
    /// `http://host[:port]` for plain HTTP, `https://host[:port]` or `host[:port]` for TLS.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Accept TLS certificates that do not verify (self-signed) for the host and its mirrors.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    #[error(
        "image.registries: invalid host {0:?}: want a registry host as image references name it, such as docker.io or 127.0.0.1:5000"
    )]
    Host(String),
    #[error(
        "image.registries: host {host:?}: invalid mirror {mirror:?}: want http://host[:port], https://host[:port] or host[:port]"
    )]
    Mirror { host: String, mirror: String },
    #[error("image.registries: host {0:?} is listed twice")]
    Duplicate(String),
}

impl ImageConfig {
    pub fn unpack_limits(&self) -> Limits {
        Limits { max_bytes: self.max_layer_bytes, max_entries: self.max_layer_entries }
    }

    pub fn validate(&self) -> Result<(), RegistryConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for registry in &self.registries {
            if !is_host_port(&registry.host)
                || matches!(registry.host.as_str(), "index.docker.io" | "registry-1.docker.io")
            {
                return Err(RegistryConfigError::Host(registry.host.clone()));
            }
            if !seen.insert(registry.host.as_str()) {
                return Err(RegistryConfigError::Duplicate(registry.host.clone()));
            }
            for mirror in &registry.mirrors {
                let bare = mirror.strip_prefix("http://").or_else(|| mirror.strip_prefix("https://")).unwrap_or(mirror);
                if !is_host_port(bare.trim_end_matches('/')) {
                    return Err(RegistryConfigError::Mirror { host: registry.host.clone(), mirror: mirror.clone() });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(host: &str, mirrors: &[&str]) -> ImageConfig {
        ImageConfig {
            registries: vec![RegistryConfig {
                host: host.into(),
                mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
                insecure: false,
            }],
            ..ImageConfig::default()
        }
    }

    #[test]
    fn accepts_hosts_and_mirrors() {
        registry("docker.io", &["http://127.0.0.1:5000", "https://mirror.example.com", "mirror:443/"])
            .validate()
            .unwrap();
        registry("[::1]:5000", &["http://[::1]:5001"]).validate().unwrap();
        registry("localhost", &[]).validate().unwrap();
    }

    #[test]
    fn refuses_bad_hosts_mirrors_and_duplicates() {
        assert!(matches!(registry("", &[]).validate(), Err(RegistryConfigError::Host(_))));
        assert!(matches!(registry("https://docker.io", &[]).validate(), Err(RegistryConfigError::Host(_))));
        assert!(matches!(registry("docker.io:0", &[]).validate(), Err(RegistryConfigError::Host(_))));
        assert!(matches!(registry("index.docker.io", &[]).validate(), Err(RegistryConfigError::Host(_))));
        assert!(matches!(registry("docker.io", &["ftp://x"]).validate(), Err(RegistryConfigError::Mirror { .. })));
        assert!(matches!(registry("docker.io", &["http://"]).validate(), Err(RegistryConfigError::Mirror { .. })));
        let mut twice = registry("docker.io", &[]);
        twice.registries.push(twice.registries[0].clone());
        assert!(matches!(twice.validate(), Err(RegistryConfigError::Duplicate(_))));
    }
}
