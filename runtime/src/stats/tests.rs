use std::fs;
use std::path::Path;

use super::*;

fn write(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

const V1_MEMORY_STAT: &str = "cache 100\nrss 50\ninactive_file 7\ntotal_cache 4096\ntotal_rss 67108864\n\
total_mapped_file 1024\ntotal_pgfault 300\ntotal_pgmajfault 2\ntotal_inactive_file 2048\ntotal_active_file 2048\n";

#[test]
fn v1_tree() {
    let root = tempfile::tempdir().unwrap();
    let dir = Path::new("crisp/crisp-abc");
    write(
        &root.path().join("cpuacct").join(dir),
        &[("cpuacct.usage", "2500000000\n"), ("cpuacct.stat", "user 150\nsystem 50\n")],
    );
    write(
        &root.path().join("memory").join(dir),
        &[
            ("memory.stat", V1_MEMORY_STAT),
            ("memory.usage_in_bytes", "67112960\n"),
            ("memory.limit_in_bytes", "134217728\n"),
            ("memory.max_usage_in_bytes", "70000000\n"),
        ],
    );
    write(&root.path().join("pids").join(dir), &[("pids.current", "3\n")]);

    let stats = Hierarchy::V1(root.path().to_owned()).read(dir).unwrap();
    let tick_ns = 1_000_000_000 / v1_ticks();
    assert_eq!(stats.cpu, CpuUsage { total_ns: 2_500_000_000, user_ns: 150 * tick_ns, system_ns: 50 * tick_ns });
    let m = stats.memory;
    assert_eq!((m.usage, m.working_set, m.rss, m.cache, m.mapped_file), (67112960, 67110912, 67108864, 4096, 1024));
    assert_eq!((m.page_faults, m.major_page_faults, m.max_usage), (300, 2, Some(70000000)));
    assert_eq!((m.limit, m.available()), (Some(134217728), Some(134217728 - 67110912)));
    assert_eq!(stats.processes, Some(3));
}

fn v1_ticks() -> u64 {
    // SAFETY: as in the reader.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
}

#[test]
fn v1_unlimited_and_without_pids() {
    let root = tempfile::tempdir().unwrap();
    let dir = Path::new("pod");
    write(&root.path().join("cpuacct").join(dir), &[("cpuacct.usage", "0\n"), ("cpuacct.stat", "user 0\nsystem 0\n")]);
    write(
        &root.path().join("memory").join(dir),
        &[
            ("memory.stat", V1_MEMORY_STAT),
            ("memory.usage_in_bytes", "1000\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
        ],
    );
    let stats = Hierarchy::V1(root.path().to_owned()).read(dir).unwrap();
    assert_eq!(stats.memory.working_set, 0, "inactive file above usage is no negative working set");
    assert_eq!((stats.memory.limit, stats.memory.available(), stats.memory.max_usage), (None, None, None));
    assert_eq!(stats.processes, None);
}

const V2_MEMORY_STAT: &str = "anon 67108864\nfile 8192\nkernel 4096\nfile_mapped 512\ninactive_anon 0\n\
active_anon 67108864\ninactive_file 4096\nactive_file 4096\npgfault 1200\npgmajfault 5\n";

#[test]
fn v2_tree() {
    let root = tempfile::tempdir().unwrap();
    let dir = Path::new("system.slice/crisp-abc.scope");
    write(
        &root.path().join(dir),
        &[
            ("cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n"),
            ("memory.stat", V2_MEMORY_STAT),
            ("memory.current", "67125248\n"),
            ("memory.max", "max\n"),
            ("pids.current", "1\n"),
        ],
    );
    let stats = Hierarchy::V2(root.path().to_owned()).read(dir).unwrap();
    assert_eq!(stats.cpu, CpuUsage { total_ns: 1_500_000_000, user_ns: 1_000_000_000, system_ns: 500_000_000 });
    let m = stats.memory;
    assert_eq!((m.usage, m.working_set, m.rss, m.cache, m.mapped_file), (67125248, 67121152, 67108864, 8192, 512));
    assert_eq!((m.page_faults, m.major_page_faults), (1200, 5));
    assert_eq!((m.limit, m.max_usage), (None, None));
    assert_eq!(stats.processes, Some(1));

    write(&root.path().join(dir), &[("memory.max", "100000000\n"), ("memory.peak", "70000000\n")]);
    let m = Hierarchy::V2(root.path().to_owned()).read(dir).unwrap().memory;
    assert_eq!((m.limit, m.available(), m.max_usage), (Some(100000000), Some(100000000 - 67121152), Some(70000000)));
}

#[test]
fn missing_cgroup_is_gone_and_garbage_is_a_parse_error() {
    let root = tempfile::tempdir().unwrap();
    let err = Hierarchy::V2(root.path().to_owned()).read(Path::new("nope")).unwrap_err();
    assert!(err.is_gone(), "{err}");
    write(&root.path().join("bad"), &[("cpu.stat", "usage_usec lots\n")]);
    let err = Hierarchy::V2(root.path().to_owned()).read(Path::new("bad")).unwrap_err();
    assert!(matches!(err, StatsError::Parse { ref field, .. } if field == "usage_usec"), "{err}");
    let offline = StatsError::Read { path: "x".into(), source: std::io::Error::from_raw_os_error(libc::ENODEV) };
    assert!(offline.is_gone(), "{offline}");
    assert!(!StatsError::Read { path: "x".into(), source: std::io::Error::from_raw_os_error(libc::EACCES) }.is_gone());
}

#[test]
fn cgroups_paths_map_as_runc_does() {
    assert_eq!(cgroup_dir("/crisp/crisp-abc").unwrap(), Path::new("crisp/crisp-abc"));
    assert_eq!(cgroup_dir("system.slice:crisp:abc").unwrap(), Path::new("system.slice/crisp-abc.scope"));
    assert_eq!(
        cgroup_dir("kubepods-besteffort-pod1.slice:crisp:abc").unwrap(),
        Path::new("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crisp-abc.scope")
    );
    assert_eq!(cgroup_dir("-.slice:crisp:abc").unwrap(), Path::new("crisp-abc.scope"));
    for bad in ["crisp/x", "/a/../b", "a:b", "kubepods:crisp:x", "a--b.slice:crisp:x", "a:b:c:d"] {
        assert!(cgroup_dir(bad).is_err(), "{bad}");
    }
}

#[test]
fn cpu_rate_between_reads() {
    let rates = CpuRates::default();
    assert_eq!(rates.rate("c", 1_000_000_000, 0), None, "no rate on the first read");
    assert_eq!(rates.rate("c", 3_000_000_000, 1_000_000_000), Some(500_000_000));
    // A read soon after is measured against the kept sample, not a zero-width window.
    assert_eq!(rates.rate("c", 3_500_000_000, 1_250_000_000), Some(500_000_000));
    assert_eq!(rates.rate("c", 4_000_000_000, 2_000_000_000), Some(1_000_000_000));
    rates.retain(|k| k != "c");
    assert_eq!(rates.rate("c", 5_000_000_000, 2_000_000_000), None, "forgotten");
}
