//! cgroup v1: one tree per controller.

use std::path::Path;

use super::{CgroupStats, CpuUsage, FlatKeyed, MemoryUsage, StatsError, read_optional_u64, read_u64};

/// v1 writes "no limit" as the largest page-aligned i64, not as a word.
const UNLIMITED: u64 = 1 << 62;

pub(super) fn read(root: &Path, dir: &Path) -> Result<CgroupStats, StatsError> {
    Ok(CgroupStats {
        cpu: cpu(&root.join("cpuacct").join(dir))?,
        memory: memory(&root.join("memory").join(dir))?,
        processes: read_optional_u64(&root.join("pids").join(dir).join("pids.current"))?,
    })
}

fn cpu(dir: &Path) -> Result<CpuUsage, StatsError> {
    // cpuacct.stat counts in clock ticks; the per-mode nanosecond files are not on every kernel.
    let stat = FlatKeyed::read(dir.join("cpuacct.stat"))?;
    let tick_ns = 1_000_000_000 / clock_ticks_per_second();
    Ok(CpuUsage {
        total_ns: read_u64(&dir.join("cpuacct.usage"))?,
        user_ns: stat.get("user")? * tick_ns,
        system_ns: stat.get("system")? * tick_ns,
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

fn memory(dir: &Path) -> Result<MemoryUsage, StatsError> {
    // The total_ fields count the cgroup's descendants too, as usage_in_bytes does.
    let stat = FlatKeyed::read(dir.join("memory.stat"))?;
    let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
    let limit = read_u64(&dir.join("memory.limit_in_bytes"))?;
    Ok(MemoryUsage {
        rss: stat.get("total_rss")?,
        cache: stat.get("total_cache")?,
        mapped_file: stat.get("total_mapped_file")?,
        page_faults: stat.get("total_pgfault")?,
        major_page_faults: stat.get("total_pgmajfault")?,
        limit: (limit < UNLIMITED).then_some(limit),
        max_usage: read_optional_u64(&dir.join("memory.max_usage_in_bytes"))?,
        ..MemoryUsage::new(usage, stat.get("total_inactive_file")?)
    })
}
