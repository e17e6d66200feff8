//! Why a layer was refused or could not be unpacked.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Every variant names the entry it is about: the tar path as the layer spells it, or for `Limit`
/// and `Corrupt`, which can strike between entries, the last entry read.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?}: absolute paths are refused")]
    AbsolutePath { path: String },
    #[error("layer entry {path:?}: \"..\" components are refused")]
    ParentComponent { path: String },
    #[error("layer entry {path:?}: invalid path: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("layer entry {path:?}: {component:?} is a symlink; refusing to go through it")]
    ThroughSymlink { path: String, component: String },
    #[error("layer entry {path:?}: {component:?} is not a directory")]
    NotADirectory { path: String, component: String },
    #[error("layer entry {path:?}: hard link target {target:?} is outside the layer")]
    LinkOutside { path: String, target: String },
    #[error("layer entry {path:?}: invalid whiteout: {reason}")]
    Whiteout { path: String, reason: &'static str },
    #[error("layer entry {path:?}: extended attribute {name:?} is reserved for overlayfs")]
    ReservedXattr { path: String, name: String },
    #[error("layer entry {path:?}: only a directory can stand for the layer root")]
    RootNotDirectory { path: String },
    #[error("layer entry {path:?}: unsupported tar entry type {kind:?}")]
    UnsupportedType { path: String, kind: char },
    #[error("at layer entry {path:?}: the layer has {limit}")]
    Limit { path: String, limit: LimitExceeded },
    #[error("at layer entry {path:?}: corrupt layer: {source}")]
    Corrupt { path: String, source: io::Error },
    #[error("layer entry {path:?}: {source}")]
    Io { path: String, source: io::Error },
    #[error("unpacking into {path:?}: {source}")]
    Destination { path: PathBuf, source: io::Error },
}

/// The limit a layer went past; each carries the limit's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// Of the tar stream, or of file content: sparse entries expand holes the stream never held.
    Bytes(u64),
    /// Tar entries, plus the directories created because entries needed them but the layer left
    /// them out: together they bound the inodes a layer makes.
    Entries(u64),
    /// PAX records and GNU long names of one entry, which the tar parser holds in memory.
    HeaderBytes(u64),
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::Bytes(max) => write!(f, "more than {max} uncompressed bytes"),
            LimitExceeded::Entries(max) => write!(f, "more than {max} entries and implied directories"),
            LimitExceeded::HeaderBytes(max) => write!(f, "more than {max} bytes of headers for one entry"),
        }
    }
}

impl UnpackError {
    pub(super) fn io(path: &str, errno: nix::errno::Errno) -> UnpackError {
        UnpackError::Io { path: path.to_owned(), source: errno.into() }
    }

    pub(super) fn corrupt(path: &str, reason: String) -> UnpackError {
        UnpackError::Corrupt { path: path.to_owned(), source: io::Error::new(io::ErrorKind::InvalidData, reason) }
    }
}
