//! What `/proc` tells about a runtime's processes on this host: the daemon behind a socket, the
//! per-pod processes that keep pods' containers, resident memory and CPU time.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::client::Endpoint;

/// Program names of the per-pod processes the benchmark knows: crisp's monitor, containerd's
/// shims, CRI-O's conmon.
const KEEPERS: [&str; 3] = ["crisp-monitor", "containerd-shim", "conmon"];

/// A process that keeps a pod's containers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Keeper {
    pub(super) pid: u32,
    /// The program name, as its command line gives it.
    pub(super) program: String,
}

/// The pid of the process serving `endpoint`, from the credentials the kernel recorded for its
/// end of a fresh connection (SO_PEERCRED): the daemon itself, whatever its name. None when it
/// lives in another pid namespace, where the kernel cannot name it.
pub(super) async fn daemon_pid(endpoint: &Endpoint) -> Option<u32> {
    let stream = tokio::net::UnixStream::connect(endpoint.path()).await.ok()?;
    let pid = stream.peer_cred().ok()?.pid()?;
    u32::try_from(pid).ok().filter(|&pid| pid > 0)
}

/// The keepers of `pod_ids` on this host, by pod ID: for each pod, a process of one of the
/// [`KEEPERS`] programs whose command line names it (crisp's monitor runs on
/// `<state>/pods/<id>/monitor`, containerd's shim with `-id <id>`). Pods of a runtime on another
/// host or of another design have none.
pub(super) async fn keepers(pod_ids: Vec<String>) -> HashMap<String, Keeper> {
    let scan = move || {
        let mut found = HashMap::new();
        for (pid, cmdline) in processes() {
            let Some(program) = keeper_program(&cmdline) else { continue };
            let args = String::from_utf8_lossy(&cmdline);
            for pod_id in pod_ids.iter().filter(|id| args.contains(id.as_str())) {
                found.insert(pod_id.clone(), Keeper { pid, program: program.clone() });
            }
        }
        found
    };
    tokio::task::spawn_blocking(scan).await.unwrap_or_default()
}

/// Every process's pid and raw command line.
fn processes() -> impl Iterator<Item = (u32, Vec<u8>)> {
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries.filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse().ok()?;
        Some((pid, std::fs::read(entry.path().join("cmdline")).ok()?))
    })
}

/// The program name of a NUL-separated command line if it is a keeper's.
fn keeper_program(cmdline: &[u8]) -> Option<String> {
    let first = cmdline.split(|&b| b == 0).next().filter(|a| !a.is_empty())?;
    let program = Path::new(std::str::from_utf8(first).ok()?).file_name()?.to_str()?;
    KEEPERS.iter().any(|k| program.starts_with(k)).then(|| program.to_owned())
}

/// VmRSS of `pid` in KiB; None once it is gone.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    vm_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The threads of `pid`; None once it is gone.
pub(super) fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()
}

/// The files `pid` holds open; None once it is gone or when they cannot be read (another
/// user's process, unless root).
pub(super) fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// CPU seconds a process used, user and system added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuSeconds {
    /// Its own threads'.
    pub own: f64,
    /// Its children's that it waited for (crisp runs runc itself; containerd's shims do).
    pub children: f64,
}

impl CpuSeconds {
    pub(super) fn read(pid: u32) -> Option<CpuSeconds> {
        // SAFETY: sysconf only reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks = u32::try_from(ticks).ok().filter(|&t| t > 0)?;
        cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, ticks)
    }

    pub(super) fn since(self, before: CpuSeconds) -> CpuSeconds {
        CpuSeconds { own: self.own - before.own, children: self.children - before.children }
    }
}

/// utime + stime and cutime + cstime of a `/proc/PID/stat` line, in seconds. The fields are
/// counted after the command name's closing parenthesis: the name itself may hold spaces.
fn cpu_seconds(stat: &str, ticks_per_second: u32) -> Option<CpuSeconds> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Field 14 of proc(5) (utime) is the 12th after the name; stime, cutime, cstime follow.
    let tick = |n: usize| fields.get(n)?.parse::<u64>().ok();
    let seconds = |ticks: u64| ticks as f64 / f64::from(ticks_per_second);
    Some(CpuSeconds { own: seconds(tick(11)? + tick(12)?), children: seconds(tick(13)? + tick(14)?) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepers_by_command_line() {
        let monitor = b"/usr/local/bin/crisp-monitor\0/run/crisp/pods/4bf6/monitor\0";
        assert_eq!(keeper_program(monitor).as_deref(), Some("crisp-monitor"));
        let shim = b"/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\x004bf6\0";
        assert_eq!(keeper_program(shim).as_deref(), Some("containerd-shim-runc-v2"));
        assert_eq!(keeper_program(b"/bin/sleep\x004bf6\0"), None);
        assert_eq!(keeper_program(b""), None);
    }

    #[tokio::test]
    async fn keepers_are_found_by_pod_id() {
        // `sleep` named as crisp's monitor, its command line naming a "pod" that is a duration
        // too: a program that forks no child sharing its command line.
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("crisp-monitor");
        std::fs::copy("/bin/sleep", &program).unwrap();
        let pod = "0.4242424242";
        let mut child = std::process::Command::new(&program).args(["30", pod]).spawn().unwrap();
        let found = keepers(vec![pod.into(), "pod-other".into()]).await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[pod], Keeper { pid: child.id(), program: "crisp-monitor".into() });
    }

    #[test]
    fn rss() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t     912 kB\nThreads: 1\n"), Some(912));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn cpu_from_stat() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0 100 1000 10";
        assert_eq!(cpu_seconds(stat, 100), Some(CpuSeconds { own: 3.0, children: 0.5 }));
        assert_eq!(cpu_seconds("42 (x) S 1", 100), None);
        let now = CpuSeconds::read(std::process::id()).unwrap();
        assert!(now.own >= 0.0 && now.children >= 0.0);
        let delta = CpuSeconds { own: 2.5, children: 1.0 }.since(CpuSeconds { own: 1.0, children: 0.5 });
        assert_eq!(delta, CpuSeconds { own: 1.5, children: 0.5 });
    }

    #[tokio::test]
    async fn daemon_pid_of_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let endpoint = Endpoint::parse(path.to_str().unwrap()).unwrap();
        assert_eq!(daemon_pid(&endpoint).await, Some(std::process::id()));
    }
}
