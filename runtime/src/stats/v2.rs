//! cgroup v2: one directory holds every controller's files.

use std::path::Path;

use super::{CgroupStats, CpuUsage, FlatKeyed, MemoryUsage, StatsError, read_file, read_optional_u64, read_u64};

pub(super) fn read(dir: &Path) -> Result<CgroupStats, StatsError> {
    Ok(CgroupStats { cpu: cpu(dir)?, memory: memory(dir)?, processes: read_optional_u64(&dir.join("pids.current"))? })
}

fn cpu(dir: &Path) -> Result<CpuUsage, StatsError> {
    let stat = FlatKeyed::read(dir.join("cpu.stat"))?;
    Ok(CpuUsage {
        total_ns: stat.get("usage_usec")? * 1000,
        user_ns: stat.get("user_usec")? * 1000,
        system_ns: stat.get("system_usec")? * 1000,
    })
}

fn memory(dir: &Path) -> Result<MemoryUsage, StatsError> {
    let stat = FlatKeyed::read(dir.join("memory.stat"))?;
    let usage = read_u64(&dir.join("memory.current"))?;
    let max_path = dir.join("memory.max");
    let limit = match read_file(&max_path)?.trim() {
        "max" => None,
        text => Some(super::parse_u64(&max_path, text, "a limit")?),
    };
    Ok(MemoryUsage {
        rss: stat.get("anon")?,
        cache: stat.get("file")?,
        mapped_file: stat.get("file_mapped")?,
        page_faults: stat.get("pgfault")?,
        major_page_faults: stat.get("pgmajfault")?,
        limit,
        max_usage: read_optional_u64(&dir.join("memory.peak"))?,
        ..MemoryUsage::new(usage, stat.get("inactive_file")?)
    })
}
