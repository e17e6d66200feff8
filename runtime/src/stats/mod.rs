//! What a cgroup has used, read from the files the kernel keeps for it (cgroup v1 and v2), for
//! the CRI's stats and metrics. Reads are blocking file reads: callers run them off the async
//! workers.

mod cpu_rate;
mod path;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};

pub use cpu_rate::CpuRates;
pub use path::cgroup_dir;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: no {field} in it, or not a number")]
    Parse { path: PathBuf, field: String },
    #[error("cgroups path {0:?} is neither an absolute cgroupfs path nor slice:prefix:name")]
    InvalidPath(String),
}

impl StatsError {
    /// The cgroup is not there: its processes ended and the runtime removed it, or is removing
    /// it (the kernel answers ENODEV for the files of a cgroup going offline).
    pub fn is_gone(&self) -> bool {
        matches!(self, StatsError::Read { source, .. }
            if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ENODEV))
    }
}

/// Where the host's cgroups are, and in which form.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// One mount per controller under this dir (`memory/`, `cpuacct/`, `pids/`), as on hybrid
    /// and legacy hosts: runc puts containers there, not in the unified tree beside them.
    V1(PathBuf),
    /// The unified tree.
    V2(PathBuf),
}

impl Hierarchy {
    pub fn host(cgroup_v2: bool) -> Hierarchy {
        let root = PathBuf::from("/sys/fs/cgroup");
        if cgroup_v2 { Hierarchy::V2(root) } else { Hierarchy::V1(root) }
    }

    /// The usage of one cgroup, `dir` relative to the hierarchy's root (see [`cgroup_dir`]).
    pub fn read(&self, dir: &Path) -> Result<CgroupStats, StatsError> {
        match self {
            Hierarchy::V1(root) => v1::read(root, dir),
            Hierarchy::V2(root) => v2::read(&root.join(dir)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: CpuUsage,
    pub memory: MemoryUsage,
    /// Tasks in the cgroup; none where the pids controller is not enabled.
    pub processes: Option<u64>,
}

/// Cumulative CPU time, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuUsage {
    pub total_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
}

/// Memory in bytes; faults as counts since the cgroup was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Everything charged, page cache included.
    pub usage: u64,
    /// What cannot be reclaimed at once: usage less the inactive file cache, as the kubelet
    /// evicts by it.
    pub working_set: u64,
    /// Anonymous memory and swap cache.
    pub rss: u64,
    pub cache: u64,
    pub mapped_file: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The hard limit; none when unlimited.
    pub limit: Option<u64>,
    /// The highest usage seen; none where the kernel does not keep it (v2 before 5.19).
    pub max_usage: Option<u64>,
}

impl MemoryUsage {
    fn new(usage: u64, inactive_file: u64) -> MemoryUsage {
        MemoryUsage { usage, working_set: usage.saturating_sub(inactive_file), ..MemoryUsage::default() }
    }

    /// What the cgroup may still use before its limit: none when unlimited.
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|limit| limit.saturating_sub(self.working_set))
    }
}

fn read_file(path: &Path) -> Result<String, StatsError> {
    std::fs::read_to_string(path).map_err(|source| StatsError::Read { path: path.to_owned(), source })
}

fn read_u64(path: &Path) -> Result<u64, StatsError> {
    parse_u64(path, read_file(path)?.trim(), "a number")
}

fn parse_u64(path: &Path, text: &str, field: &str) -> Result<u64, StatsError> {
    text.parse().map_err(|_| StatsError::Parse { path: path.to_owned(), field: field.to_owned() })
}

/// Optional files (a controller not enabled, a kernel too old) read as none.
fn read_optional_u64(path: &Path) -> Result<Option<u64>, StatsError> {
    match read_u64(path) {
        Err(e) if e.is_gone() => Ok(None),
        other => other.map(Some),
    }
}

/// `key value` lines, as in `memory.stat` and `cpu.stat`.
struct FlatKeyed {
    path: PathBuf,
    text: String,
}

impl FlatKeyed {
    fn read(path: PathBuf) -> Result<FlatKeyed, StatsError> {
        Ok(FlatKeyed { text: read_file(&path)?, path })
    }

    fn get(&self, key: &str) -> Result<u64, StatsError> {
        let value = self.text.lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then_some(v.trim())
        });
        parse_u64(&self.path, value.unwrap_or_default(), key)
    }
}
