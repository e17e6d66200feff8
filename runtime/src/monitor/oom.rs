//! Whether the kernel's OOM killer struck in a container's memory cgroup: its `oom_kill`
//! counter, `memory.oom_control` on cgroup v1, `memory.events` on v2. The monitor reads it
//! when an init dies of SIGKILL, before the runtime deletes the cgroup (the daemon deletes
//! only after the exit record is written).

use std::fs;
use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The memory cgroup file holding `oom_kill N` for a container whose OCI `cgroupsPath` is
/// `cgroups_path`, under the hierarchies mounted at `root`: a v1 memory hierarchy if there is
/// one (also on hybrid hosts), else the unified one.
fn counter_file(root: &Path, cgroups_path: &str, systemd: bool) -> PathBuf {
    let relative = if systemd { systemd_path(cgroups_path) } else { cgroups_path.trim_start_matches('/').to_owned() };
    let v1 = root.join("memory");
    if v1.is_dir() { v1.join(relative).join("memory.oom_control") } else { root.join(relative).join("memory.events") }
}

/// runc's systemd form `slice:prefix:name` as a path: `a-b.slice` nests as
/// `a.slice/a-b.slice`, and the unit is `prefix-name.scope` (`name` alone if it is a
/// `.slice`). Anything else is taken as a path already.
fn systemd_path(cgroups_path: &str) -> String {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let [slice, prefix, name] = parts[..] else { return cgroups_path.trim_start_matches('/').to_owned() };
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let mut path = String::new();
    if slice != "-.slice" {
        let stem = slice.strip_suffix(".slice").unwrap_or(slice);
        let mut prefix_so_far = String::new();
        for part in stem.split('-') {
            if !prefix_so_far.is_empty() {
                prefix_so_far.push('-');
            }
            prefix_so_far.push_str(part);
            path.push_str(&prefix_so_far);
            path.push_str(".slice/");
        }
    }
    if name.ends_with(".slice") {
        path.push_str(name);
    } else if prefix.is_empty() {
        path.push_str(&format!("{name}.scope"));
    } else {
        path.push_str(&format!("{prefix}-{name}.scope"));
    }
    path
}

/// The `oom_kill` count in a `memory.oom_control` or `memory.events` text.
fn oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Whether the OOM killer has killed anything in that cgroup. Unreadable counts as no: the
/// exit code is recorded either way.
pub(crate) fn oom_killed(cgroups_path: &str, systemd: bool) -> bool {
    oom_killed_under(Path::new(CGROUP_ROOT), cgroups_path, systemd)
}

fn oom_killed_under(root: &Path, cgroups_path: &str, systemd: bool) -> bool {
    let file = counter_file(root, cgroups_path, systemd);
    fs::read_to_string(file).ok().as_deref().and_then(oom_kills).is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_nest_slices_as_runc_does() {
        assert_eq!(
            systemd_path("kubepods-besteffort.slice:crisp:abc"),
            "kubepods.slice/kubepods-besteffort.slice/crisp-abc.scope"
        );
        assert_eq!(systemd_path("-.slice:crisp:abc"), "crisp-abc.scope");
        assert_eq!(systemd_path(":crisp:abc"), "system.slice/crisp-abc.scope");
        assert_eq!(systemd_path("a.slice::b-c.slice"), "a.slice/b-c.slice");
        assert_eq!(systemd_path("/plain/path"), "plain/path");
    }

    #[test]
    fn the_counter_is_read_from_v1_or_v2() {
        let v1 = tempfile::tempdir().unwrap();
        let cgroup = v1.path().join("memory/crisp/c1");
        fs::create_dir_all(&cgroup).unwrap();
        fs::write(cgroup.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert!(!oom_killed_under(v1.path(), "/crisp/c1", false));
        fs::write(cgroup.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert!(oom_killed_under(v1.path(), "/crisp/c1", false));
        assert!(!oom_killed_under(v1.path(), "/crisp/absent", false));

        let v2 = tempfile::tempdir().unwrap();
        let cgroup = v2.path().join("crisp.slice/crisp-c2.scope");
        fs::create_dir_all(&cgroup).unwrap();
        fs::write(cgroup.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n").unwrap();
        assert!(oom_killed_under(v2.path(), "crisp.slice:crisp:c2", true));
    }
}
