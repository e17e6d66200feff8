//! What can go wrong running a network, with the plugin's own words where it gave any.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::version::{Incompatible, SpecVersion};
use crate::NetworkNotReady;

/// A CNI operation, as `CNI_COMMAND` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a plugin that exited non-zero explained itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginFailure {
    /// The CNI error object it printed: `code` 1-99 are the spec's (11: try again later).
    Reported { code: u32, msg: String, details: String },
    /// No error object: its exit status and what it printed, both capped.
    Unstructured { status: String, stdout: String, stderr: String },
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginFailure::Reported { code, msg, details } if details.is_empty() => write!(f, "{msg} (code {code})"),
            PluginFailure::Reported { code, msg, details } => write!(f, "{msg}: {details} (code {code})"),
            PluginFailure::Unstructured { status, stdout, stderr } => {
                write!(f, "{status}")?;
                for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
                    if !text.is_empty() {
                        write!(f, "; {name}: {:?}", text.trim_end())?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The CNI error object; plugins print it on stdout.
#[derive(Deserialize)]
pub(crate) struct ErrorObject {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(transparent)]
    NotReady(#[from] NetworkNotReady),
    #[error("invalid container id {0:?}: want alphanumerics, '_', '.' or '-', starting alphanumeric")]
    InvalidContainerId(String),
    #[error("invalid CNI argument {key}={value:?}: it cannot hold ';', '=' or NUL")]
    InvalidArgument { key: &'static str, value: String },
    #[error("container {0} is already attached to a network; DEL it first")]
    AlreadyAttached(String),
    #[error("container {0} is not attached to a network")]
    NotAttached(String),
    #[error("network {network}: no CNI version usable: {reasons}")]
    Incompatible { network: String, reasons: Incompatible },
    #[error("network {network}: CHECK needs CNI 0.4.0 or later, the attachment runs {version}")]
    CheckUnsupported { network: String, version: SpecVersion },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} {command}: {source}")]
    Exec { plugin: String, command: Command, source: io::Error },
    #[error("CNI plugin {plugin} {command}: killed after {timeout:?} without an answer")]
    Timeout { plugin: String, command: Command, timeout: Duration },
    #[error("CNI plugin {plugin} {command} failed: {failure}")]
    Plugin { plugin: String, command: Command, failure: PluginFailure },
    #[error("CNI plugin {plugin} {command}: invalid output: {reason}")]
    BadOutput { plugin: String, command: Command, reason: String },
    #[error("CNI cache {path}: {source}")]
    Cache { path: PathBuf, source: io::Error },
    #[error("CNI cache {path}: unreadable entry: {reason}")]
    CacheCorrupt { path: PathBuf, reason: String },
    #[error("CNI GC: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Gc(Vec<CniError>),
}
