//! The monitor and the runtime driver against the real runc (and crun) on this host, as root.
//!
//! Each test works in its own temp dir (monitor dir, runc --root, bundles, exit files) with
//! fresh container ids and cgroups under `/crisp-test/<id>`; its `Lab` guard force-deletes
//! its containers, kills its monitors and removes the cgroups when it ends, also by a panic.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::Duration;

use common::{fd_targets, wait_exit, wait_until};
use crisp_runtime::monitor::{FailureKind, Monitor, MonitorError, read_exit};
use crisp_runtime::oci::{OciErrorKind, OciOp, OciRuntime, OciState, OciStatus};
use crisp_runtime::{CgroupManager, ContainerId, Handler, HandlerName, spec};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

const MONITOR: &str = env!("CARGO_BIN_EXE_crisp-monitor");
const RUNC: &str = "/usr/sbin/runc";
const CRUN: &str = "/usr/bin/crun";
const BUSYBOX: &str = "/bin/busybox";
const CGROUP_PARENT: &str = "crisp-test";

struct Lab {
    dir: tempfile::TempDir,
    runtime: OciRuntime,
    containers: Mutex<Vec<ContainerId>>,
    monitors: Mutex<Vec<u32>>,
}

impl Lab {
    fn new(handler: &str, binary: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let handler = Handler::new(HandlerName::new(handler).unwrap(), binary.into());
        let runtime = OciRuntime::new(handler, dir.path().join("runtime-root"), CgroupManager::Cgroupfs);
        Lab { dir, runtime, containers: Mutex::default(), monitors: Mutex::default() }
    }

    fn runc() -> Lab {
        Lab::new("runc", RUNC)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_monitor(&self, name: &str) -> Monitor {
        let monitor = Monitor::spawn(Path::new(MONITOR), &self.path(name)).unwrap();
        self.monitors.lock().unwrap().push(monitor.pid());
        monitor
    }

    /// A bundle running `args` with busybox as its whole rootfs, in its own mount, pid, ipc
    /// and uts namespaces and cgroup.
    fn bundle(&self, id: &ContainerId, args: &[&str]) -> PathBuf {
        self.containers.lock().unwrap().push(id.clone());
        let bundle = self.path(&format!("bundle-{id}"));
        let rootfs = bundle.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        let mut spec = spec::base(&rootfs);
        spec.process_mut().as_mut().unwrap().set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        let linux = spec.linux_mut().as_mut().unwrap();
        let namespaces =
            [LinuxNamespaceType::Mount, LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts];
        linux.set_namespaces(Some(
            namespaces
                .into_iter()
                .map(|typ| {
                    let mut ns = LinuxNamespace::default();
                    ns.set_typ(typ);
                    ns
                })
                .collect(),
        ));
        linux.set_cgroups_path(Some(format!("/{CGROUP_PARENT}/{id}").into()));
        spec.save(bundle.join("config.json")).unwrap();
        bundle
    }

    fn exit_file(&self, id: &ContainerId) -> PathBuf {
        self.path(&format!("exit-{id}.json"))
    }

    /// Creates and starts a container through `monitor`; returns its init pid.
    async fn run(&self, monitor: &Monitor, id: &ContainerId, args: &[&str]) -> u32 {
        let request = self.runtime.create_request(id.clone(), self.bundle(id, args), self.exit_file(id));
        let pid = monitor.create(&request).unwrap();
        self.runtime.start(id).await.unwrap();
        pid
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let root = self.runtime.root();
        for id in self.containers.lock().unwrap().iter() {
            let _ = Command::new(&self.runtime.handler().path)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", id.as_str()])
                .stderr(std::process::Stdio::null())
                .status();
            remove_cgroups(id);
        }
        for &pid in self.monitors.lock().unwrap().iter() {
            // Only a monitor: its pid may be another process's by now.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("crisp-monitor") {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// runc delete removes a container's cgroups; this covers a runc that failed half-way, and
/// the shared parent once no test uses it.
fn remove_cgroups(id: &ContainerId) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else { return };
    for hierarchy in hierarchies.flatten() {
        let parent = hierarchy.path().join(CGROUP_PARENT);
        let _ = fs::remove_dir(parent.join(id.as_str()));
        let _ = fs::remove_dir(parent);
    }
}

fn cgroup_exists(id: &ContainerId) -> bool {
    Path::new("/sys/fs/cgroup/memory").join(CGROUP_PARENT).join(id.as_str()).exists()
}

/// Gone, or a zombie nobody reaps (pid 1 here does not reap orphans).
fn exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn parent_of(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn session_of(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_container_runs_is_killed_and_deleted() {
    let lab = Lab::runc();
    let monitor = lab.spawn_monitor("monitor");
    let id = ContainerId::random();
    let request =
        lab.runtime.create_request(id.clone(), lab.bundle(&id, &["/bin/busybox", "sleep", "1000"]), lab.exit_file(&id));

    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let pid = monitor.create(&request).unwrap();
    assert_eq!(lab.runtime.state(&id).await.unwrap(), Some(OciState { status: OciStatus::Created, pid: Some(pid) }));
    // The init was runc's child; with runc gone it is the monitor's, its subreaper.
    assert_eq!(parent_of(pid), monitor.pid());
    assert!(cgroup_exists(&id));

    lab.runtime.start(&id).await.unwrap();
    assert_eq!(lab.runtime.state(&id).await.unwrap(), Some(OciState { status: OciStatus::Running, pid: Some(pid) }));
    // Nothing of the monitor leaks into the container: no descriptors, no blocked SIGCHLD.
    assert_eq!(fd_targets(pid), ["/dev/null", "/dev/null", "/dev/null"]);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "SigBlk:\t0000000000000000"), "{status}");
    // And the monitor holds only what it serves with.
    for target in fd_targets(monitor.pid()) {
        let known = ["/dev/null", "socket:", "anon_inode:[signalfd]"].iter().any(|k| target.starts_with(k))
            || target.ends_with("/monitor.log");
        assert!(known, "the monitor holds {target}");
    }
    assert_eq!(read_exit(&request.exit_file).unwrap(), None);

    let err = lab.runtime.delete(&id, false).await.unwrap_err();
    assert_eq!((err.op, err.handler.as_str()), (OciOp::Delete, "runc"));
    assert!(matches!(&err.kind, OciErrorKind::Failed(m) if m.contains("not stopped")), "{err}");

    lab.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    let exit = wait_exit(&request.exit_file);
    assert_eq!(exit.exit_code, 128 + libc::SIGKILL);
    assert!(exit.finished_at_ns > before, "{exit:?}");
    assert_eq!(lab.runtime.state(&id).await.unwrap(), Some(OciState { status: OciStatus::Stopped, pid: None }));
    // Killing what has stopped, deleting what is gone: nothing left to do, no error.
    lab.runtime.kill(&id, libc::SIGTERM, false).await.unwrap();
    lab.runtime.kill(&id, libc::SIGTERM, true).await.unwrap();
    lab.runtime.delete(&id, false).await.unwrap();
    assert_eq!(lab.runtime.state(&id).await.unwrap(), None);
    assert!(!cgroup_exists(&id));
    lab.runtime.delete(&id, true).await.unwrap();
    lab.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();

    // Only the monitor's own files are left in its dir: no pid files or runtime logs.
    let mut names: Vec<_> = fs::read_dir(monitor.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["monitor.log", "monitor.pid", "monitor.sock"]);
    let runtime_root: Vec<_> = fs::read_dir(lab.runtime.root()).unwrap().collect();
    assert!(runtime_root.is_empty(), "{runtime_root:?}");
}

#[tokio::test]
async fn an_exit_code_is_recorded() {
    let lab = Lab::runc();
    let monitor = lab.spawn_monitor("monitor");
    let id = ContainerId::random();
    lab.run(&monitor, &id, &["/bin/busybox", "sh", "-c", "exit 3"]).await;
    assert_eq!(wait_exit(&lab.exit_file(&id)).exit_code, 3);
    // Reaped, so runc finds it stopped.
    assert_eq!(lab.runtime.state(&id).await.unwrap().map(|s| s.status), Some(OciStatus::Stopped));
    lab.runtime.delete(&id, false).await.unwrap();
}

#[tokio::test]
async fn the_monitor_lives_apart_is_found_again_and_shuts_down_when_its_containers_end() {
    let lab = Lab::runc();
    let monitor = lab.spawn_monitor("monitor");
    let pid = monitor.pid();
    assert_ne!(parent_of(pid), std::process::id());
    assert_ne!(session_of(pid), session_of(std::process::id()));
    assert_eq!(fs::read_to_string(monitor.dir().join("monitor.pid")).unwrap().trim(), pid.to_string());
    let mode = fs::metadata(monitor.dir().join("monitor.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let found = Monitor::attach(monitor.dir()).unwrap().expect("the monitor is found");
    assert_eq!(found.pid(), pid);

    let id = ContainerId::random();
    lab.run(&monitor, &id, &["/bin/busybox", "sleep", "1000"]).await;
    found.shutdown().unwrap();
    let other = ContainerId::random();
    let request =
        lab.runtime.create_request(other.clone(), lab.bundle(&other, &["/bin/busybox", "true"]), lab.exit_file(&other));
    match monitor.create(&request) {
        Err(MonitorError::Refused { kind: FailureKind::ShuttingDown, .. }) => {}
        other => panic!("create after shutdown: {other:?}"),
    }
    sleep(Duration::from_millis(200));
    assert!(!exited(pid), "the monitor left while its container runs");

    lab.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    wait_exit(&lab.exit_file(&id));
    wait_until("the monitor exits", || exited(pid));
    assert!(Monitor::attach(monitor.dir()).unwrap().is_none());
    assert!(!monitor.dir().join("monitor.sock").exists());
    lab.runtime.delete(&id, false).await.unwrap();

    // With nothing running, shutdown ends it at once.
    let idle = lab.spawn_monitor("idle");
    idle.shutdown().unwrap();
    wait_until("the idle monitor exits", || exited(idle.pid()));
}

#[tokio::test]
async fn runtime_errors_come_back_with_the_runtimes_message() {
    let lab = Lab::runc();
    let monitor = lab.spawn_monitor("monitor");

    let id = ContainerId::random();
    let empty = lab.path("empty-bundle");
    fs::create_dir(&empty).unwrap();
    let err = monitor.create(&lab.runtime.create_request(id.clone(), empty, lab.exit_file(&id))).unwrap_err();
    match &err {
        MonitorError::Runtime { id: failed, runtime, message, .. } => {
            assert_eq!((failed, runtime.as_path()), (&id, Path::new(RUNC)));
            assert!(message.contains("config.json"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let mut request = lab.runtime.create_request(id.clone(), lab.path("no-bundle"), lab.exit_file(&id));
    request.runtime = lab.path("no-such-runtime");
    let err = monitor.create(&request).unwrap_err().to_string();
    assert!(err.contains("no-such-runtime") && err.contains("No such file"), "{err}");

    let err = lab.runtime.start(&id).await.unwrap_err();
    assert_eq!(err.op, OciOp::Start);
    assert!(matches!(&err.kind, OciErrorKind::Failed(m) if m == "container does not exist"), "{err}");
    assert!(err.to_string().starts_with("runtime handler runc: start "), "{err}");

    // The monitor is unharmed and serves on.
    assert_eq!(Monitor::attach(monitor.dir()).unwrap().unwrap().pid(), monitor.pid());
}

#[tokio::test]
async fn crun_on_this_host_fails_clearly() {
    let lab = Lab::new("crun", CRUN);
    let monitor = lab.spawn_monitor("monitor");
    let id = ContainerId::random();
    let request =
        lab.runtime.create_request(id.clone(), lab.bundle(&id, &["/bin/busybox", "sleep", "1000"]), lab.exit_file(&id));
    let result = monitor.create(&request);
    // crun 1.8 refuses cgroup v1 hierarchies mounted beside a v2 one, as on this host.
    if Path::new("/sys/fs/cgroup/unified").exists() {
        match result {
            Err(MonitorError::Runtime { message, .. }) => assert!(message.contains("cgroup"), "{message}"),
            other => panic!("crun on a hybrid cgroup host: {other:?}"),
        }
        assert_eq!(lab.runtime.state(&id).await.unwrap(), None);
    } else {
        result.unwrap();
    }
}

/// The init can exit and be reaped before the runtime that created it has exited: a fake
/// runtime leaves an orphan (the monitor is its subreaper) that exits soon, and writes its pid
/// and exits itself only later. (The orphan outlives the shell that forked it: a shell may
/// reap children of its own that exit first.)
#[test]
fn an_init_reaped_before_its_pid_file_is_read_is_still_recorded() {
    let lab = Lab::runc();
    let fake = lab.path("fake-runtime");
    fs::write(
        &fake,
        r#"#!/bin/sh
while [ $# -gt 0 ]; do
    [ "$1" = --pid-file ] && pidfile=$2
    shift
done
sh -c '(sleep 0.2; exit 7) & echo $! > "$1.early"' sh "$pidfile"
sleep 1
mv "$pidfile.early" "$pidfile"
"#,
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let monitor = lab.spawn_monitor("monitor");
    let id = ContainerId::random();
    let mut request = lab.runtime.create_request(id.clone(), lab.path("unused"), lab.exit_file(&id));
    request.runtime = fake;
    let pid = monitor.create(&request).unwrap();
    assert!(exited(pid));
    // Recorded before the answer: the exit was known already.
    assert_eq!(read_exit(&request.exit_file).unwrap().map(|e| e.exit_code), Some(7));
}

#[test]
fn a_monitor_that_cannot_serve_says_why() {
    let lab = Lab::runc();
    let monitor = lab.spawn_monitor("monitor");
    match Monitor::spawn(Path::new(MONITOR), monitor.dir()) {
        Err(MonitorError::Start { reason, .. }) => assert!(reason.contains("another monitor serves"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match Monitor::spawn(&lab.path("no-such-binary"), &lab.path("other")) {
        Err(MonitorError::Spawn { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    // The first one still serves.
    assert!(Monitor::attach(monitor.dir()).unwrap().is_some());
}
