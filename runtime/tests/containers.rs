//! Container lifecycle on a real monitor and runc, as root: create (idempotent by pod, name and
//! attempt), start, stop with a grace period, exit codes, remove, and a new daemon instance
//! finding running containers. The rootfs is busybox, bind-mounted where the daemon would
//! mount the image.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crisp_runtime::ContainerId;
use crisp_runtime::container::{
    ContainerDirs, ContainerError, ContainerKey, ContainerState, Containers, ContainersConfig, NewContainer, Prepare,
    Prepared,
};
use crisp_runtime::events::{ContainerEvent, ContainerEvents, EventKind};
use crisp_runtime::monitor::Monitor;
use crisp_runtime::oci::OciRuntime;
use crisp_runtime::{CgroupManager, Handler, HandlerName, spec};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

const MONITOR: &str = env!("CARGO_BIN_EXE_crisp-monitor");

struct Lab {
    dir: tempfile::TempDir,
    runtime: Arc<OciRuntime>,
    monitor: Monitor,
    events: Arc<Recorder>,
}

/// Keeps the events the containers report.
#[derive(Default)]
struct Recorder(Mutex<Vec<ContainerEvent>>);

impl ContainerEvents for Recorder {
    fn container(&self, event: ContainerEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn of(&self, id: &ContainerId) -> Vec<EventKind> {
        self.0.lock().unwrap().iter().filter(|e| e.id == *id).map(|e| e.kind).collect()
    }
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let handler = Handler::new(HandlerName::new("runc").unwrap(), "/usr/sbin/runc".into());
        let runtime = Arc::new(OciRuntime::new(handler, dir.path().join("runtime"), CgroupManager::Cgroupfs));
        let image = dir.path().join("image");
        fs::create_dir_all(image.join("bin")).unwrap();
        fs::copy("/bin/busybox", image.join("bin/busybox")).unwrap();
        for d in ["proc", "dev", "sys", "etc"] {
            fs::create_dir_all(image.join(d)).unwrap();
        }
        let monitor = Monitor::spawn(Path::new(MONITOR), &dir.path().join("monitor")).unwrap();
        Lab { dir, runtime, monitor, events: Arc::default() }
    }

    fn config(&self) -> ContainersConfig {
        ContainersConfig {
            root: self.dir.path().join("root"),
            state: self.dir.path().join("state"),
            cgroup_manager: CgroupManager::Cgroupfs,
            events: self.events.clone(),
        }
    }

    fn new_container(&self, name: &str, fingerprint: &str) -> NewContainer {
        NewContainer {
            key: ContainerKey { sandbox_id: "p".repeat(64), name: name.into(), attempt: 0 },
            fingerprint: fingerprint.into(),
            image: "busybox".into(),
            image_id: "sha256:busybox".into(),
            image_ref: "busybox@sha256:busybox".into(),
            labels: BTreeMap::from([("app".into(), name.into())]),
            annotations: BTreeMap::new(),
            log_path: None,
            mounts: vec![],
            stop_signal: libc::SIGTERM,
            stdio: Default::default(),
            runtime: self.runtime.clone(),
            monitor_dir: self.monitor.dir().to_owned(),
        }
    }

    /// Binds the busybox tree as the rootfs and runs `args` in namespaces of its own.
    fn prepare(&self, args: &[&str]) -> Prepare {
        let image = self.dir.path().join("image");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Box::new(move |dirs: ContainerDirs| {
            Box::pin(async move {
                nix::mount::mount(Some(&image), &dirs.rootfs, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
                    .unwrap();
                let mut spec = spec::base(&dirs.rootfs);
                spec.process_mut().as_mut().unwrap().set_args(Some(args));
                let linux = spec.linux_mut().as_mut().unwrap();
                let kinds = [LinuxNamespaceType::Mount, LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc];
                linux.set_namespaces(Some(
                    kinds
                        .into_iter()
                        .map(|typ| {
                            let mut ns = LinuxNamespace::default();
                            ns.set_typ(typ);
                            ns
                        })
                        .collect(),
                ));
                linux.set_cgroups_path(Some(format!("/crisp-test/{}", dirs.id).into()));
                Ok::<_, ContainerError>(Prepared { spec, user: None })
            })
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let root = self.runtime.root().to_owned();
        let out = Command::new("/usr/sbin/runc").arg("--root").arg(&root).args(["list", "-q"]).output();
        for id in out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default().lines() {
            let _ = Command::new("/usr/sbin/runc").arg("--root").arg(&root).args(["delete", "--force", id]).output();
        }
        unsafe { libc::kill(self.monitor.pid() as i32, libc::SIGKILL) };
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)) {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn mounted(path: &Path) -> bool {
    let text = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(text.as_str()))
}

#[tokio::test]
async fn create_start_stop_remove() {
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();

    let id = containers
        .create(lab.new_container("sleeper", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    let view = containers.status(id.as_str()).unwrap();
    assert_eq!(view.state, ContainerState::Created);
    assert!(mounted(&view.record.rootfs));

    // A retry gets the same container; another config under the same name is refused.
    let again = containers.create(lab.new_container("sleeper", "a"), lab.prepare(&["unused"])).await.unwrap();
    assert_eq!(again, id);
    let err = containers.create(lab.new_container("sleeper", "b"), lab.prepare(&["unused"])).await.unwrap_err();
    assert!(matches!(*err, ContainerError::AlreadyExists(_)), "{err}");

    containers.start(&id.as_str()[..12]).await.unwrap();
    assert_eq!(containers.status(id.as_str()).unwrap().state, ContainerState::Running);
    let err = containers.start(id.as_str()).await.unwrap_err();
    assert!(matches!(err, ContainerError::NotCreated { state: "running", .. }), "{err}");

    // PID 1 ignores SIGTERM without a handler: the grace period ends in SIGKILL.
    containers.stop(id.as_str(), Duration::from_millis(300)).await.unwrap();
    let view = containers.status(id.as_str()).unwrap();
    assert_eq!(view.state, ContainerState::Exited);
    assert_eq!(view.exit.unwrap().code, 137);
    containers.stop(id.as_str(), Duration::from_secs(1)).await.unwrap();

    containers.remove(id.as_str()).await.unwrap();
    assert!(matches!(containers.status(id.as_str()), Err(ContainerError::NotFound(_))));
    assert!(!mounted(&view.record.rootfs));
    assert!(!lab.config().root.join(id.as_str()).exists());
    assert!(!lab.config().state.join(id.as_str()).exists());
    containers.remove(id.as_str()).await.unwrap();
}

#[tokio::test]
async fn exit_codes_and_a_new_instance_finding_running_containers() {
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();
    let quick = containers
        .create(lab.new_container("quick", "a"), lab.prepare(&["/bin/busybox", "sh", "-c", "exit 3"]))
        .await
        .unwrap();
    let slow = containers
        .create(lab.new_container("slow", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    containers.start(quick.as_str()).await.unwrap();
    containers.start(slow.as_str()).await.unwrap();
    for _ in 0..200 {
        if containers.status(quick.as_str()).unwrap().state == ContainerState::Exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(containers.status(quick.as_str()).unwrap().exit.unwrap().code, 3);
    drop(containers);

    let containers = Containers::open(lab.config()).await.unwrap();
    assert_eq!(containers.list().len(), 2);
    assert_eq!(containers.status(slow.as_str()).unwrap().state, ContainerState::Running);
    assert_eq!(containers.status(quick.as_str()).unwrap().exit.unwrap().code, 3);
    for id in [&quick, &slow] {
        containers.remove(id.as_str()).await.unwrap();
    }
    assert!(containers.list().is_empty());
}

#[tokio::test]
async fn logs_and_exec_sync() {
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();
    let log = lab.dir.path().join("logs/talker.log");
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut new = lab.new_container("talker", "a");
    new.stdio.log_path = Some(log.clone());
    let script = "echo out; echo err >&2; exec /bin/busybox sleep 1000";
    let id = containers.create(new, lab.prepare(&["/bin/busybox", "sh", "-c", script])).await.unwrap();
    containers.start(id.as_str()).await.unwrap();

    let process = |args: &[&str]| {
        let mut process = spec::base(Path::new("/")).process().clone().unwrap();
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        process
    };
    let out = containers
        .exec_sync(id.as_str(), process(&["/bin/busybox", "sh", "-c", "echo hi; echo oops >&2; exit 4"]), None, 1 << 20)
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()), (4, &b"hi\n"[..], &b"oops\n"[..]));
    let out = containers
        .exec_sync(id.as_str(), process(&["/bin/busybox", "sleep", "100"]), Some(Duration::from_millis(300)), 1 << 20)
        .await
        .unwrap();
    assert!(out.timed_out);
    let out = containers
        .exec_sync(id.as_str(), process(&["/bin/busybox", "yes"]), Some(Duration::from_secs(1)), 4096)
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 4096, "output is capped");

    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The two streams are two pipes: their lines may come in either order.
    let mut seen: Vec<Vec<&str>> = lines.iter().map(|l| l.splitn(4, ' ').collect()).collect();
    assert!(seen.iter().all(|parts| parts[0].ends_with('Z') && parts[0].contains('T')), "{text}");
    seen.sort_by_key(|parts| parts[1]);
    assert_eq!(seen.iter().map(|p| &p[1..]).collect::<Vec<_>>(), [["stderr", "F", "err"], ["stdout", "F", "out"]]);
    fs::rename(&log, log.with_extension("1")).unwrap();
    containers.reopen_log(id.as_str()).await.unwrap();
    containers.remove(id.as_str()).await.unwrap();
}

#[tokio::test]
async fn resources_are_updated_in_place() {
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();
    let id = containers
        .create(lab.new_container("limited", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    containers.start(id.as_str()).await.unwrap();
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_value(serde_json::json!({"memory": {"limit": 64 << 20}, "cpu": {"shares": 512}})).unwrap();
    containers.update_resources(id.as_str(), resources).await.unwrap();
    let read = |controller: &str, file: &str| {
        fs::read_to_string(format!("/sys/fs/cgroup/{controller}/crisp-test/{id}/{file}")).unwrap().trim().to_owned()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(read("cpu", "cpu.shares"), "512");
    containers.remove(id.as_str()).await.unwrap();
    let err = containers.update_resources(id.as_str(), Default::default()).await.unwrap_err();
    assert!(matches!(err, ContainerError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn a_forced_stop_does_not_wait_for_a_graceful_one() {
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();
    let id = containers
        .create(lab.new_container("stubborn", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    containers.start(id.as_str()).await.unwrap();
    let graceful = {
        let (containers, id) = (containers.clone(), id.clone());
        tokio::spawn(async move { containers.stop(id.as_str(), Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    containers.stop(id.as_str(), Duration::ZERO).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the forced stop waited {:?}", started.elapsed());
    graceful.await.unwrap().unwrap();
    assert_eq!(containers.status(id.as_str()).unwrap().exit.unwrap().code, 137);
    containers.remove(id.as_str()).await.unwrap();
}

#[tokio::test]
async fn a_creation_that_cannot_be_undone_shows_as_failed_not_as_created() {
    use crisp_runtime::container::{ContainerStore, Stage};
    let lab = Lab::new();
    let config = lab.config();
    // What a crash mid-creation leaves.
    let (store, _) = ContainerStore::open(&config.root).unwrap();
    let new = lab.new_container("stuck", "a");
    let record = crisp_runtime::container::ContainerRecord {
        id: crisp_runtime::ContainerId::random(),
        key: new.key.clone(),
        fingerprint: "a".into(),
        image: "busybox".into(),
        image_id: "sha256:busybox".into(),
        image_ref: String::new(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        log_path: None,
        mounts: vec![],
        stop_signal: libc::SIGTERM,
        created_at_ns: 1,
        started_at_ns: None,
        stage: Stage::Creating,
        pid: None,
        pid_start_time: None,
        user: None,
        resources: None,
        handler: "gone".into(),
        runtime_path: "/nonexistent/runc".into(),
        runtime_root: lab.dir.path().join("gone-root"),
        monitor_dir: lab.monitor.dir().to_owned(),
        rootfs: config.state.join("x/rootfs"),
        exit_file: config.state.join("x/exit.json"),
    };
    let id = record.id.clone();
    drop(store.insert(record).unwrap());
    drop(store);
    // Its state dir cannot be removed: a file where a directory should be.
    fs::create_dir_all(&config.state).unwrap();
    fs::write(config.state.join(id.as_str()), "in the way").unwrap();

    let containers = Containers::open(lab.config()).await.unwrap();
    let view = containers.status(id.as_str()).unwrap();
    assert_eq!(view.record.stage, Stage::Failed);
    assert_eq!(view.state, ContainerState::Exited);
    let err = containers.create(lab.new_container("stuck", "a"), lab.prepare(&["unused"])).await.unwrap_err();
    assert!(matches!(*err, ContainerError::AlreadyExists(_)), "{err}");
}

#[tokio::test]
async fn an_exec_whose_caller_gives_up_is_ended() {
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();
    let id = containers
        .create(lab.new_container("host", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    containers.start(id.as_str()).await.unwrap();
    let mut process = spec::base(Path::new("/")).process().clone().unwrap();
    process.set_args(Some(vec!["/bin/busybox".into(), "sleep".into(), "7777".into()]));
    let running = |pattern: &str| {
        fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(pattern))
        })
    };
    // No timeout: only the caller going away can end it. This caller waits 500 ms.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(500), containers.exec_sync(id.as_str(), process, None, 1 << 20))
            .await;
    assert!(gave_up.is_err(), "the exec ended on its own: {gave_up:?}");
    let mut gone = false;
    for _ in 0..300 {
        if !running("sleep 7777") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        gone,
        "the exec outlived its caller; monitor log:\n{}",
        fs::read_to_string(lab.monitor.dir().join("monitor.log")).unwrap_or_default()
    );
    containers.remove(id.as_str()).await.unwrap();
}

/// Each change is reported once, in order: an exit by itself (noticed by the scan), a stop, and a
/// removal; a container that ended while no instance ran is no news to the next one.
#[tokio::test]
async fn events_once_per_change_and_none_for_past_exits() {
    use EventKind::{Created, Deleted, Started, Stopped};
    let lab = Lab::new();
    let containers = Containers::open(lab.config()).await.unwrap();
    let quick = containers
        .create(lab.new_container("quick", "a"), lab.prepare(&["/bin/busybox", "sh", "-c", "exit 3"]))
        .await
        .unwrap();
    let slow = containers
        .create(lab.new_container("slow", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    containers.start(quick.as_str()).await.unwrap();
    containers.start(slow.as_str()).await.unwrap();
    for _ in 0..100 {
        if lab.events.of(&quick).len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lab.events.of(&quick), [Created, Started, Stopped]);
    containers.stop(slow.as_str(), Duration::ZERO).await.unwrap();
    containers.stop(slow.as_str(), Duration::ZERO).await.unwrap();
    assert_eq!(lab.events.of(&slow), [Created, Started, Stopped]);

    let ended = containers
        .create(lab.new_container("ended", "a"), lab.prepare(&["/bin/busybox", "sleep", "1000"]))
        .await
        .unwrap();
    containers.start(ended.as_str()).await.unwrap();
    drop(containers);
    let mut kill = Command::new("/usr/sbin/runc");
    kill.arg("--root").arg(lab.runtime.root()).args(["kill", ended.as_str(), "KILL"]);
    assert!(kill.status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let containers = Containers::open(lab.config()).await.unwrap();
    assert_eq!(containers.status(ended.as_str()).unwrap().state, ContainerState::Exited);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lab.events.of(&ended), [Created, Started], "an exit from before the start is reported");
    for id in [&quick, &slow, &ended] {
        containers.remove(id.as_str()).await.unwrap();
    }
    assert_eq!(lab.events.of(&quick), [Created, Started, Stopped, Deleted]);
    assert_eq!(lab.events.of(&ended), [Created, Started, Deleted]);
}
