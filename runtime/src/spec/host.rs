//! What the host offers that changes a container's spec: probed once at start, passed in, so
//! specs are built (and tested) without reading the host on every call.

use std::fs;
use std::io;
use std::path::Path;

/// The host's kernel and cgroup features a container spec depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFeatures {
    /// `/sys/fs/cgroup` is the unified (v2) hierarchy: containers get a cgroup namespace and
    /// may set `unified` resources.
    pub cgroup_v2: bool,
    /// The memory controller accounts swap (`memory.memsw.*` on v1, `memory.swap.max` on v2):
    /// only then is a swap limit set.
    pub swap_limit: bool,
    /// The hugetlb controller exists: hugepage limits are refused without it.
    pub hugetlb: bool,
    /// `/sys/module/apparmor/parameters/enabled` says `Y`: AppArmor profiles are applied.
    pub apparmor: bool,
    /// The capabilities the daemon itself has (`CapEff`, bit N for capability N): "all
    /// capabilities" (privileged, or `ALL` added) means these, as in containerd. Not every
    /// capability the kernel knows: a runtime cannot give what its bounding set lacks, so
    /// under a restricted bounding set (a systemd `CapabilityBoundingSet=`, a nested
    /// runtime) such containers would fail to start.
    pub capabilities: u64,
    /// The running kernel's (major, minor), for the seccomp rules older kernels need.
    pub kernel: (u32, u32),
}

impl HostFeatures {
    /// Probes this host.
    pub fn detect() -> io::Result<HostFeatures> {
        let cgroup_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .map_err(io::Error::from)?;
        let swap_limit = if cgroup_v2 {
            own_unified_cgroup()?.is_some_and(|dir| dir.join("memory.swap.max").exists())
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        let hugetlb = if cgroup_v2 {
            fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")?.split_whitespace().any(|c| c == "hugetlb")
        } else {
            Path::new("/sys/fs/cgroup/hugetlb").is_dir()
        };
        let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y");
        let capabilities = fs::read_to_string("/proc/self/status")?
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff in /proc/self/status"))?;
        let kernel = parse_release(&fs::read_to_string("/proc/sys/kernel/osrelease")?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable kernel release"))?;
        Ok(HostFeatures { cgroup_v2, swap_limit, hugetlb, apparmor, capabilities, kernel })
    }
}

/// `6.1.0-13-amd64` → (6, 1).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The daemon's own cgroup v2 directory: `memory.swap.max` exists only below the root.
fn own_unified_cgroup() -> io::Result<Option<std::path::PathBuf>> {
    let text = fs::read_to_string("/proc/self/cgroup")?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_release("4.19.0-13-amd64"), Some((4, 19)));
        assert_eq!(parse_release("weird"), None);
    }

    #[test]
    fn detect_reads_this_host() {
        let host = HostFeatures::detect().unwrap();
        // Root tests: CAP_CHOWN (0) and CAP_SYS_ADMIN (21) at least.
        assert_eq!(host.capabilities & (1 | 1 << 21), 1 | 1 << 21, "{host:?}");
        assert!(host.kernel >= (4, 0));
    }
}
