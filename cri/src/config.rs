//! crisp's configuration: `crisp.toml`, then every `crisp.d/*.toml` beside it in name order,
//! later values winning. Each domain owns its section's type; this module composes them.

mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crisp_image::ImageConfig;
use crisp_network::NetworkConfig;
use crisp_pod::PodConfig;
use crisp_runtime::RuntimeConfig;
use serde::{Deserialize, Serialize};

pub use load::{ConfigError, load};

pub const DEFAULT_PATH: &str = "/etc/crisp/crisp.toml";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub runtime: RuntimeConfig,
    pub pod: PodConfig,
    pub network: NetworkConfig,
    pub image: ImageConfig,
    pub streaming: StreamingConfig,
    pub metrics: MetricsConfig,
    pub tracing: TracingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The unix socket the CRI is served on.
    pub listen: PathBuf,
    /// The group (name or numeric ID) whose members may use the socket, besides root.
    pub group: String,
    /// Persistent state: images, containers, pods.
    pub root: PathBuf,
    /// Runtime state that a reboot clears.
    pub state: PathBuf,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "/run/crisp/crisp.sock".into(),
            group: "root".into(),
            root: "/var/lib/crisp".into(),
            state: "/run/crisp".into(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Where Exec/Attach/PortForward are served; port 0 picks a free one.
    pub address: SocketAddr,
    /// PEM certificate chain and private key: the URLs are then `https`. Both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig { address: SocketAddr::from(([127, 0, 0, 1], 0)), tls_cert_file: None, tls_key_file: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; empty: not at all.
    pub address: OptionalAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// An OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; empty: no traces at all.
    pub endpoint: String,
    /// The share of traces started here that are kept, 0.0 to 1.0; a caller's `traceparent`
    /// decides for its own traces.
    #[serde(deserialize_with = "sampling_rate")]
    pub sampling_rate: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig { endpoint: String::new(), sampling_rate: 1.0 }
    }
}

fn sampling_rate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let rate = f64::deserialize(deserializer)?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(serde::de::Error::custom(format!("{rate} is not between 0.0 and 1.0")))
    }
}

/// A socket address where an empty string means "off", as operators write it in TOML.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl FromStr for OptionalAddr {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() { Ok(OptionalAddr(None)) } else { s.parse().map(|a| OptionalAddr(Some(a))) }
    }
}

impl TryFrom<String> for OptionalAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map_err(|e| format!("invalid address {s:?}: {e} (want host:port, or \"\" for off)"))
    }
}

impl From<OptionalAddr> for String {
    fn from(a: OptionalAddr) -> String {
        a.0.map(|a| a.to_string()).unwrap_or_default()
    }
}
