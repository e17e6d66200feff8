//! The monitor's container stdio, logs, OOM records and execs, against the real runc on this
//! host, as root.
//!
//! Each test works in its own temp dir (monitor dir, runc --root, bundles, logs, exit files)
//! with fresh container ids and cgroups under `/crisp-test-io/<id>`; its `Lab` guard
//! force-deletes its containers, kills its monitors and removes the cgroups when it ends, also
//! by a panic.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{fd_targets, wait_exit, wait_until};
use crisp_runtime::monitor::frame::Frame;
use crisp_runtime::monitor::{
    AttachRequest, ContainerStdio, CreateOptions, ExecRequest, ExecResult, ExecStreamRequest, Monitor, MonitorError,
    read_exit,
};
use crisp_runtime::oci::OciRuntime;
use crisp_runtime::{CgroupManager, ContainerId, Handler, HandlerName, spec};
use oci_spec::runtime::{LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxResources, Spec};

const MONITOR: &str = env!("CARGO_BIN_EXE_crisp-monitor");
const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
const CGROUP_PARENT: &str = "crisp-test-io";
const APPLETS: [&str; 9] = ["sh", "sleep", "head", "tr", "yes", "tty", "cat", "kill", "stty"];

struct Lab {
    dir: tempfile::TempDir,
    runtime: OciRuntime,
    containers: Mutex<Vec<ContainerId>>,
    monitors: Mutex<Vec<u32>>,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let handler = Handler::new(HandlerName::new("runc").unwrap(), RUNC.into());
        let runtime = OciRuntime::new(handler, dir.path().join("runtime-root"), CgroupManager::Cgroupfs);
        Lab { dir, runtime, containers: Mutex::default(), monitors: Mutex::default() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_monitor(&self, dir: &Path) -> Monitor {
        let monitor = Monitor::spawn(Path::new(MONITOR), dir).unwrap();
        self.monitors.lock().unwrap().push(monitor.pid());
        monitor
    }

    fn cgroups_path(id: &ContainerId) -> String {
        format!("/{CGROUP_PARENT}/{id}")
    }

    /// A bundle running `args` (busybox applets in /bin) in its own mount, pid, ipc and uts
    /// namespaces and cgroup; `adjust` changes the spec further.
    fn bundle(&self, id: &ContainerId, args: &[&str], adjust: impl FnOnce(&mut Spec)) -> PathBuf {
        self.containers.lock().unwrap().push(id.clone());
        let bundle = self.path(&format!("bundle-{id}"));
        let bin = bundle.join("rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let mut spec = spec::base(&bundle.join("rootfs"));
        let process = spec.process_mut().as_mut().unwrap();
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        process.set_env(Some(vec!["PATH=/bin".to_owned()]));
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
        linux.set_cgroups_path(Some(Lab::cgroups_path(id).into()));
        adjust(&mut spec);
        spec.save(bundle.join("config.json")).unwrap();
        bundle
    }

    fn exit_file(&self, id: &ContainerId) -> PathBuf {
        self.path(&format!("exit-{id}.json"))
    }

    fn log_path(&self, id: &ContainerId) -> PathBuf {
        self.path(&format!("{id}.log"))
    }

    fn stdio(&self, id: &ContainerId) -> CreateOptions {
        let stdio = ContainerStdio { log_path: Some(self.log_path(id)), ..ContainerStdio::default() };
        CreateOptions { stdio: Some(stdio), cgroups_path: Some(Lab::cgroups_path(id)) }
    }

    /// Creates (with `options`) and starts a container through `monitor`; returns its init pid.
    async fn run(
        &self,
        monitor: &Monitor,
        id: &ContainerId,
        args: &[&str],
        options: &CreateOptions,
        adjust: impl FnOnce(&mut Spec),
    ) -> u32 {
        let request = self.runtime.create_request(id.clone(), self.bundle(id, args, adjust), self.exit_file(id));
        let pid = monitor.create_container(&request, options).unwrap();
        self.runtime.start(id).await.unwrap();
        pid
    }

    fn exec_request(&self, id: &ContainerId, name: &str, args: &[&str]) -> ExecRequest {
        let process = serde_json::json!({
            "args": args, "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "terminal": false,
        });
        let path = self.path(&format!("process-{name}.json"));
        fs::write(&path, process.to_string()).unwrap();
        ExecRequest {
            id: id.clone(),
            runtime: RUNC.into(),
            runtime_root: self.runtime.root().to_owned(),
            systemd_cgroup: false,
            process: path,
            timeout_ms: Some(10_000),
            output_dir: self.path(&format!("exec-{name}")),
            cap_bytes: 1 << 20,
        }
    }
}

impl Lab {
    fn stream_request(&self, id: &ContainerId, name: &str, args: &[&str], tty: bool, stdin: bool) -> ExecStreamRequest {
        let exec = self.exec_request(id, name, args);
        let mut process: serde_json::Value = serde_json::from_slice(&fs::read(&exec.process).unwrap()).unwrap();
        process["terminal"] = tty.into();
        fs::write(&exec.process, process.to_string()).unwrap();
        ExecStreamRequest {
            id: id.clone(),
            runtime: exec.runtime,
            runtime_root: exec.runtime_root,
            systemd_cgroup: false,
            process: exec.process,
            tty,
            stdin,
        }
    }
}

/// A framed connection from the client's side.
struct Frames {
    stream: UnixStream,
    buf: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Frames {
    fn new(stream: UnixStream) -> Frames {
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Frames { stream, buf: Vec::new(), stdout: Vec::new(), stderr: Vec::new() }
    }

    fn send(&mut self, frame: Frame) {
        let mut out = Vec::new();
        frame.encode(&mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// The next frame that is not output (collected on the way), or None at the end.
    fn next_event(&mut self) -> Option<Frame> {
        loop {
            while let Some((frame, used)) = Frame::decode(&self.buf).unwrap() {
                self.buf.drain(..used);
                match frame {
                    Frame::Stdout(data) => self.stdout.extend(data),
                    Frame::Stderr(data) => self.stderr.extend(data),
                    other => return Some(other),
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("the monitor answers within 15s");
            if n == 0 {
                assert!(self.buf.is_empty(), "a partial frame at the end");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until `stdout` holds `text`.
    fn wait_stdout(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        self.stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        while !String::from_utf8_lossy(&self.stdout).contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} in {:?}", String::from_utf8_lossy(&self.stdout));
            while let Some((frame, used)) = Frame::decode(&self.buf).unwrap() {
                self.buf.drain(..used);
                match frame {
                    Frame::Stdout(data) => self.stdout.extend(data),
                    Frame::Stderr(data) => self.stderr.extend(data),
                    other => panic!("{other:?} before {text:?}"),
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("closed before {text:?}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        self.stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for id in self.containers.lock().unwrap().iter() {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(self.runtime.root())
                .args(["delete", "--force", id.as_str()])
                .stderr(std::process::Stdio::null())
                .status();
            let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else { continue };
            for hierarchy in hierarchies.flatten() {
                let parent = hierarchy.path().join(CGROUP_PARENT);
                let _ = fs::remove_dir(parent.join(id.as_str()));
                let _ = fs::remove_dir(parent);
            }
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

/// A log's records as (stream, tag, text), checking each one's timestamp on the way.
fn records(path: &Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "a record is cut: {text:?}");
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(4, ' ');
            let (stamp, stream, tag) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
            let text = fields.next().unwrap_or_else(|| panic!("no text field in {line:?}"));
            // 2026-11-23T19:01:24.652997376Z
            let b = stamp.as_bytes();
            assert!(b.len() == 30 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[29] == b'Z', "{stamp}");
            (stream.to_owned(), tag.to_owned(), text.to_owned())
        })
        .collect()
}

fn of_stream(records: &[(String, String, String)], stream: &str) -> Vec<(String, String)> {
    records.iter().filter(|r| r.0 == stream).map(|r| (r.1.clone(), r.2.clone())).collect()
}

/// Waits until the init has become `comm` (runc's init closes its own descriptors as it goes).
fn wait_comm(pid: u32, comm: &str) {
    wait_until("the init runs its program", || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
    });
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn output_is_logged_in_cri_format_with_partial_lines() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let script =
        r#"echo out; echo err >&2; head -c 40960 /dev/zero | tr '\0' x; echo; echo 'a  b '; printf 'no newline'"#;
    lab.run(&monitor, &id, &["sh", "-c", script], &lab.stdio(&id), |_| {}).await;
    let exit = wait_exit(&lab.exit_file(&id));
    assert_eq!((exit.exit_code, exit.oom_killed), (0, false));

    // The exit is recorded once the output has been read to its end: all of it is there.
    let records = records(&lab.log_path(&id));
    let x = |n: usize| "x".repeat(n);
    let full = |text: &str| ("F".to_owned(), text.to_owned());
    let stdout = [
        full("out"),
        ("P".to_owned(), x(16384)),
        ("P".to_owned(), x(16384)),
        full(&x(40960 - 2 * 16384)),
        full("a  b "),
        full("no newline"),
    ];
    assert_eq!(of_stream(&records, "stdout"), stdout);
    assert_eq!(of_stream(&records, "stderr"), [full("err")]);
    assert_eq!(records.len(), 7);
    let mode = fs::metadata(lab.log_path(&id)).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o640);
}

#[tokio::test]
async fn the_log_is_reopened_after_rotation() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let script = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.02; done";
    lab.run(&monitor, &id, &["sh", "-c", script], &lab.stdio(&id), |_| {}).await;
    let log = lab.log_path(&id);
    wait_until("the log has lines", || records(&log).len() >= 3);
    let rotated = lab.path("rotated.log");
    fs::rename(&log, &rotated).unwrap();
    monitor.reopen_log(&id).unwrap();
    wait_until("the new log has lines", || log.exists() && records(&log).len() >= 3);
    lab.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    assert_eq!(wait_exit(&lab.exit_file(&id)).exit_code, 137);

    // Nothing lost or doubled across the rotation: the count goes on from one file to the next.
    let numbers = |path: &Path| -> Vec<u64> { records(path).iter().map(|r| r.2.parse().unwrap()).collect() };
    let all: Vec<u64> = [numbers(&rotated), numbers(&log)].concat();
    assert_eq!(all, (0..all.len() as u64).collect::<Vec<_>>());

    match monitor.reopen_log(&ContainerId::random()) {
        Err(MonitorError::NoSuchContainer { .. }) => {}
        other => panic!("reopen of an unknown container: {other:?}"),
    }
    // Its stdio is gone with it.
    assert!(matches!(monitor.reopen_log(&id), Err(MonitorError::NoSuchContainer { .. })));
}

#[tokio::test]
async fn a_tty_containers_output_is_logged_from_the_pty() {
    let lab = Lab::new();
    // Deep enough that the console socket's path is beyond sun_path: the runtime reaches it
    // through the monitor's /proc/<pid>/fd.
    let dir = lab.path(&format!("{}/monitor", "d".repeat(60)));
    let monitor = lab.spawn_monitor(&dir);
    let id = ContainerId::random();
    let mut options = lab.stdio(&id);
    options.stdio.as_mut().unwrap().tty = true;
    let terminal = |spec: &mut Spec| {
        spec.process_mut().as_mut().unwrap().set_terminal(Some(true));
    };
    let pid =
        lab.run(&monitor, &id, &["sh", "-c", "echo hello from a tty; tty; exec sleep 1000"], &options, terminal).await;
    wait_until("the tty's output is logged", || records(&lab.log_path(&id)).len() >= 2);
    // The init has the pty's slave as its stdio, nothing else.
    wait_comm(pid, "sleep");
    let fds = fd_targets(pid);
    assert_eq!(fds.len(), 3, "{fds:?}");
    assert!(fds.iter().all(|t| t.starts_with("/dev/pts/")), "{fds:?}");
    lab.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    wait_exit(&lab.exit_file(&id));
    let records = records(&lab.log_path(&id));
    assert_eq!(records[0], ("stdout".to_owned(), "F".to_owned(), "hello from a tty".to_owned()));
    assert_eq!(records[1].0, "stdout");
    assert!(records[1].2.starts_with("/dev/pts/"), "{records:?}");
    // No console socket left behind.
    let names: Vec<_> = fs::read_dir(monitor.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().ends_with(".console")), "{names:?}");
}

#[tokio::test]
async fn an_oom_kill_is_recorded() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let limit = |spec: &mut Spec| {
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(8 << 20));
        let mut resources = LinuxResources::default();
        resources.set_memory(Some(memory));
        spec.linux_mut().as_mut().unwrap().set_resources(Some(resources));
    };
    // The shell's own string doubles until the cgroup's limit stops it.
    let script = "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done";
    lab.run(&monitor, &id, &["sh", "-c", script], &lab.stdio(&id), limit).await;
    let exit = wait_exit(&lab.exit_file(&id));
    assert_eq!((exit.exit_code, exit.oom_killed), (137, true), "{exit:?}");

    // A SIGKILL that is not the OOM killer's is not an OOM kill.
    let other = ContainerId::random();
    lab.run(&monitor, &other, &["sleep", "1000"], &lab.stdio(&other), |_| {}).await;
    lab.runtime.kill(&other, libc::SIGKILL, false).await.unwrap();
    let exit = wait_exit(&lab.exit_file(&other));
    assert_eq!((exit.exit_code, exit.oom_killed), (137, false), "{exit:?}");
}

#[tokio::test]
async fn a_containers_init_holds_only_its_stdio_and_the_monitor_only_cloexec_fds() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let mut options = lab.stdio(&id);
    options.stdio.as_mut().unwrap().stdin = true;
    let pid = lab.run(&monitor, &id, &["sleep", "1000"], &options, |_| {}).await;
    wait_comm(pid, "sleep");
    let fds = fd_targets(pid);
    assert_eq!(fds.len(), 3, "{fds:?}");
    assert!(fds.iter().all(|t| t.starts_with("pipe:")), "{fds:?}");
    assert!(fds[0] != fds[1] && fds[1] != fds[2], "three pipes of their own: {fds:?}");
    // stdin stays open: the sleep does not see EOF (a `cat` would) and the monitor holds it.
    let cat = ContainerId::random();
    let mut options = lab.stdio(&cat);
    options.stdio.as_mut().unwrap().stdin = true;
    lab.run(&monitor, &cat, &["cat"], &options, |_| {}).await;
    sleep(Duration::from_millis(300));
    assert_eq!(read_exit(&lab.exit_file(&cat)).unwrap(), None, "cat saw its stdin end");

    // Every descriptor the monitor opened itself is close-on-exec.
    for entry in fs::read_dir(format!("/proc/{}/fdinfo", monitor.pid())).unwrap() {
        let entry = entry.unwrap();
        let fd: u32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let info = fs::read_to_string(entry.path()).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        let flags = u32::from_str_radix(flags, 8).unwrap();
        if fd > 2 {
            assert!(flags & libc::O_CLOEXEC as u32 != 0, "monitor fd {fd} is inherited: {info}");
        }
    }
}

#[tokio::test]
async fn execs_run_with_output_exit_codes_timeouts_and_caps_concurrently() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let idle_rss = vm_rss_kib(monitor.pid());
    let id = ContainerId::random();
    lab.run(&monitor, &id, &["sleep", "1000"], &lab.stdio(&id), |_| {}).await;

    let request = lab.exec_request(&id, "plain", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let result = monitor.exec(&request).unwrap();
    assert_eq!(result, ExecResult { exit_code: 3, timed_out: false, truncated: false });
    assert_eq!(fs::read_to_string(request.output_dir.join("stdout")).unwrap(), "out\n");
    assert_eq!(fs::read_to_string(request.output_dir.join("stderr")).unwrap(), "err\n");

    // More than the cap: what fits is kept, and the command is killed, as one that goes on
    // writing might never end.
    let mut capped = lab.exec_request(&id, "capped", &["sh", "-c", "echo err >&2; yes"]);
    capped.cap_bytes = 1000;
    let result = monitor.exec(&capped).unwrap();
    // Killed, or ended by its closed pipe if it wrote before its pid was known.
    assert!(matches!(result.exit_code, 137 | 141) && !result.timed_out && result.truncated, "{result:?}");
    assert_eq!(fs::read(capped.output_dir.join("stdout")).unwrap(), "y\n".repeat(500).as_bytes());
    assert_eq!(fs::read(capped.output_dir.join("stderr")).unwrap(), b"err\n");

    // An endless `yes` without a timeout ends all the same.
    let mut endless = lab.exec_request(&id, "endless", &["yes"]);
    (endless.timeout_ms, endless.cap_bytes) = (None, 4096);
    let result = monitor.exec(&endless).unwrap();
    assert!(matches!(result.exit_code, 137 | 141) && !result.timed_out && result.truncated, "{result:?}");
    assert_eq!(fs::metadata(endless.output_dir.join("stdout")).unwrap().len(), 4096);

    // A silent one under a timeout: killed, answered.
    let mut slow = lab.exec_request(&id, "slow", &["sleep", "100"]);
    slow.timeout_ms = Some(300);
    let result = monitor.exec(&slow).unwrap();
    assert_eq!(result, ExecResult { exit_code: 137, timed_out: true, truncated: false });

    // Several at once, while the monitor goes on answering: none waits for another.
    let started = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let request = lab.exec_request(&id, &format!("parallel-{n}"), &["sh", "-c", &format!("sleep 2; echo {n}")]);
            let monitor = monitor.clone();
            std::thread::spawn(move || (monitor.exec(&request).unwrap(), request.output_dir))
        })
        .collect();
    sleep(Duration::from_millis(300));
    let asked = Instant::now();
    assert_eq!(Monitor::attach(monitor.dir()).unwrap().unwrap().pid(), monitor.pid());
    assert!(asked.elapsed() < Duration::from_secs(1), "the loop was held up: {:?}", asked.elapsed());
    let busy_rss = vm_rss_kib(monitor.pid());
    for (n, handle) in handles.into_iter().enumerate() {
        let (result, output_dir) = handle.join().unwrap();
        assert_eq!(result.exit_code, 0);
        assert_eq!(fs::read_to_string(output_dir.join("stdout")).unwrap(), format!("{n}\n"));
    }
    // One by one they would take 8 s.
    assert!(started.elapsed() < Duration::from_secs(5), "the execs ran one by one: {:?}", started.elapsed());

    // The runtime's own failure comes back as such.
    let err = monitor.exec(&lab.exec_request(&ContainerId::random(), "absent", &["true"])).unwrap_err();
    match &err {
        MonitorError::Exec { message, .. } => assert!(message.contains("does not exist"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Only the monitor's files are left in its dir: no exec pid files or runtime logs.
    let mut names: Vec<_> = fs::read_dir(monitor.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["monitor.log", "monitor.pid", "monitor.sock"]);
    // The container's log got nothing of the execs.
    assert!(records(&lab.log_path(&id)).is_empty());
    println!(
        "crisp-monitor VmRSS: {idle_rss} KiB idle, {busy_rss} KiB with a container and 4 execs, {} KiB after",
        vm_rss_kib(monitor.pid())
    );
}

#[tokio::test]
async fn attach_streams_a_containers_stdio_both_ways_and_stdin_once_ends_its_input() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let mut options = lab.stdio(&id);
    let stdio = options.stdio.as_mut().unwrap();
    (stdio.stdin, stdio.stdin_once) = (true, true);
    let script = r#"while read l; do echo "got $l"; echo "err $l" >&2; done; echo done; exit 3"#;
    lab.run(&monitor, &id, &["sh", "-c", script], &options, |_| {}).await;

    let request = AttachRequest { id: id.clone(), stdin: true, stdout: true, stderr: true };
    let (stream, tty) = monitor.attach_stdio(&request).unwrap();
    assert!(!tty);
    let mut first = Frames::new(stream);
    // A second client, output only, sees the same output.
    let watcher = AttachRequest { id: id.clone(), stdin: false, stdout: true, stderr: false };
    let mut second = Frames::new(monitor.attach_stdio(&watcher).unwrap().0);
    first.send(Frame::Stdin(b"one\n".to_vec()));
    first.wait_stdout("got one\n");
    second.wait_stdout("got one\n");
    // A second line through a second frame; the log has all of it too.
    first.send(Frame::Stdin(b"two\n".to_vec()));
    first.wait_stdout("got two\n");
    // stdin_once: the end of the first attach's input is the container's.
    first.send(Frame::CloseStdin);
    assert_eq!(first.next_event(), Some(Frame::Exit(3)));
    assert_eq!(first.next_event(), None);
    assert_eq!(String::from_utf8_lossy(&first.stdout), "got one\ngot two\ndone\n");
    assert_eq!(String::from_utf8_lossy(&first.stderr), "err one\nerr two\n");
    assert_eq!(second.next_event(), Some(Frame::Exit(3)));
    assert_eq!(String::from_utf8_lossy(&second.stdout), "got one\ngot two\ndone\n");
    assert!(second.stderr.is_empty(), "stderr was not asked for");
    assert_eq!(wait_exit(&lab.exit_file(&id)).exit_code, 3);
    let logged: Vec<_> = records(&lab.log_path(&id)).into_iter().map(|(s, _, t)| format!("{s} {t}")).collect();
    for line in ["stdout got one", "stderr err one", "stdout got two", "stdout done"] {
        assert!(logged.iter().any(|l| l == line), "{line} not in {logged:?}");
    }
    // An exited container has no stdio to attach to.
    assert!(matches!(monitor.attach_stdio(&request), Err(MonitorError::NoSuchContainer { .. })));
}

#[tokio::test]
async fn attach_to_a_tty_container_resizes_its_terminal() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let mut options = lab.stdio(&id);
    let stdio = options.stdio.as_mut().unwrap();
    (stdio.tty, stdio.stdin) = (true, true);
    let terminal = |spec: &mut Spec| {
        spec.process_mut().as_mut().unwrap().set_terminal(Some(true));
    };
    let script = "while read l; do echo \"size $(stty size) for $l\"; done";
    lab.run(&monitor, &id, &["sh", "-c", script], &options, terminal).await;
    let request = AttachRequest { id: id.clone(), stdin: true, stdout: true, stderr: true };
    let (stream, tty) = monitor.attach_stdio(&request).unwrap();
    assert!(tty);
    let mut client = Frames::new(stream);
    client.send(Frame::Resize { width: 100, height: 30 });
    client.send(Frame::Stdin(b"a\n".to_vec()));
    client.wait_stdout("size 30 100 for a");
    client.send(Frame::Resize { width: 81, height: 25 });
    client.send(Frame::Stdin(b"b\n".to_vec()));
    client.wait_stdout("size 25 81 for b");
    // A client's leaving is no end of input without stdin_once: a new one goes on.
    drop(client);
    let mut again = Frames::new(monitor.attach_stdio(&request).unwrap().0);
    again.send(Frame::Stdin(b"c\n".to_vec()));
    again.wait_stdout("size 25 81 for c");
    lab.runtime.kill(&id, libc::SIGKILL, false).await.unwrap();
    assert_eq!(again.next_event(), Some(Frame::Exit(137)));
}

#[tokio::test]
async fn streaming_execs_carry_stdin_output_exit_codes_and_a_terminal() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    lab.run(&monitor, &id, &["sleep", "1000"], &lab.stdio(&id), |_| {}).await;

    // Without a tty: stdin until its end, stdout and stderr apart, the exit code.
    let request = lab.stream_request(&id, "pipes", &["sh", "-c", "cat; echo err >&2; exit 7"], false, true);
    let mut exec = Frames::new(monitor.exec_stream(&request).unwrap());
    exec.send(Frame::Stdin(b"hello ".to_vec()));
    exec.send(Frame::Stdin(b"world\n".to_vec()));
    exec.wait_stdout("hello world\n");
    exec.send(Frame::CloseStdin);
    assert_eq!(exec.next_event(), Some(Frame::Exit(7)));
    assert_eq!(exec.next_event(), None);
    assert_eq!((exec.stdout.as_slice(), exec.stderr.as_slice()), (&b"hello world\n"[..], &b"err\n"[..]));

    // With a tty: the terminal's size follows resizes, input echoes through it.
    let script = r#"read l; echo "got $l in $(stty size)"; exit 2"#;
    let request = lab.stream_request(&id, "tty", &["sh", "-c", script], true, true);
    let mut exec = Frames::new(monitor.exec_stream(&request).unwrap());
    exec.send(Frame::Resize { width: 90, height: 20 });
    exec.send(Frame::Stdin(b"x\n".to_vec()));
    assert_eq!(exec.next_event(), Some(Frame::Exit(2)));
    let out = String::from_utf8_lossy(&exec.stdout).into_owned();
    assert!(out.contains("got x in 20 90\r\n"), "{out:?}");
    assert!(exec.stderr.is_empty());

    // A command the container does not have: the runtime's error, no exit code.
    let request = lab.stream_request(&id, "missing", &["/bin/no-such-thing"], false, false);
    let mut exec = Frames::new(monitor.exec_stream(&request).unwrap());
    match exec.next_event() {
        Some(Frame::Error(message)) => assert!(message.contains("no-such-thing"), "{message}"),
        other => panic!("{other:?}"),
    }

    // A client that goes away takes its process with it.
    let request = lab.stream_request(&id, "gone", &["sh", "-c", "echo started; exec sleep 4243"], false, true);
    let mut exec = Frames::new(monitor.exec_stream(&request).unwrap());
    exec.wait_stdout("started");
    let sleeping = || {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x004243\x00"))
    };
    assert!(sleeping());
    drop(exec);
    wait_until("the exec is killed", || !sleeping());
    // Only the monitor's own files are left.
    wait_until("the exec's files are removed", || fs::read_dir(monitor.dir()).unwrap().count() == 3);
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn a_client_that_leaves_with_stdin_backed_up_is_let_go() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    let mut options = lab.stdio(&id);
    options.stdio.as_mut().unwrap().stdin = true;
    // It never reads its stdin.
    lab.run(&monitor, &id, &["sleep", "1000"], &options, |_| {}).await;
    let request = AttachRequest { id: id.clone(), stdin: true, stdout: true, stderr: true };
    let mut client = Frames::new(monitor.attach_stdio(&request).unwrap().0);
    client.stream.set_nonblocking(true).unwrap();
    // More than the pipe and the monitor's stdin backlog take: the rest stays in the socket.
    for _ in 0..64 {
        let mut out = Vec::new();
        Frame::Stdin(vec![b'x'; 60_000]).encode(&mut out);
        let mut sent = 0;
        while sent < out.len() {
            match client.stream.write(&out[sent..]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        if sent < out.len() {
            break;
        }
    }
    drop(client);
    sleep(Duration::from_millis(300));
    let before = cpu_ticks(monitor.pid());
    sleep(Duration::from_secs(2));
    let spent = cpu_ticks(monitor.pid()) - before;
    assert!(spent < 50, "the monitor spent {spent} ticks in 2 s with nothing to do");
    // It still serves.
    let watcher = AttachRequest { id: id.clone(), stdin: false, stdout: true, stderr: false };
    monitor.attach_stdio(&watcher).unwrap();
}

#[tokio::test]
async fn a_slow_exec_client_gets_all_of_the_output() {
    let lab = Lab::new();
    let monitor = lab.spawn_monitor(&lab.path("monitor"));
    let id = ContainerId::random();
    lab.run(&monitor, &id, &["sleep", "1000"], &lab.stdio(&id), |_| {}).await;
    // Sizes around what the socket buffers, the monitor's backlog and the pipe hold together:
    // the process ends with its last output still in the pipe while the client reads nothing.
    let sizes = [400_000, 440_000, 480_000, 520_000, 560_000, 600_000, 2_000_000];
    let mut execs: Vec<(usize, Frames)> = sizes
        .iter()
        .map(|&size| {
            let cmd = format!("yes | head -c {size}");
            let request = lab.stream_request(&id, &format!("slow-{size}"), &["sh", "-c", &cmd], false, false);
            (size, Frames::new(monitor.exec_stream(&request).unwrap()))
        })
        .collect();
    sleep(Duration::from_secs(3));
    for (size, exec) in &mut execs {
        assert_eq!(exec.next_event(), Some(Frame::Exit(0)), "{size}");
        assert_eq!(exec.stdout.len(), *size);
    }
}
