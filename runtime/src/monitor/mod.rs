//! One monitor per pod: a small process (bin `crisp-monitor`, no async runtime) that outlives
//! the daemon, is the subreaper of its containers, runs `runc create` for them, writes their
//! output to CRI log files, runs their execs, and records their exits (and OOM kills).
//!
//! The daemon talks to it over `dir/monitor.sock` (see [`protocol`]); it finds it again after
//! its own restart through that socket and `dir/monitor.pid`. What the monitor learns that
//! must survive both of them, a container's exit, it writes to a file the daemon named.

pub mod frame;
mod log;
mod oom;
mod protocol;
mod server;
mod socket_path;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};

pub use protocol::FailureKind;
use protocol::{CreateOp, PROTOCOL_CONTAINERS, PROTOCOL_STREAMS, Request, Response};
pub use server::main as server_main;

use crate::ContainerId;

const SOCKET: &str = "monitor.sock";
const PID_FILE: &str = "monitor.pid";
const LOG: &str = "monitor.log";

/// How long a new monitor may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the monitor lets `runtime create` run before killing it.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Answers to everything but create come from the monitor's own loop, at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the monitor's log an error quotes.
const LOG_TAIL: usize = 4096;
/// How long the monitor keeps reading an exec's output after the runtime exited, in case a
/// process it left behind holds the pipes.
const EXEC_DRAIN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("monitor {}: cannot run {}: {source}", dir.display(), binary.display())]
    Spawn { dir: PathBuf, binary: PathBuf, source: io::Error },
    #[error("monitor {}: did not start: {reason}; its log: {log}", dir.display())]
    Start { dir: PathBuf, reason: String, log: String },
    #[error("monitor {}: {what}: {source}", dir.display())]
    Io { dir: PathBuf, what: &'static str, source: io::Error },
    #[error("monitor {}: unexpected answer: {answer}", dir.display())]
    Protocol { dir: PathBuf, answer: String },
    /// The OCI runtime refused to create the container; `message` is its own.
    #[error("monitor {}: create {id} with {}: {message}", dir.display(), runtime.display())]
    Runtime { dir: PathBuf, id: ContainerId, runtime: PathBuf, message: String },
    /// The OCI runtime did not finish creating the container in time and was killed.
    #[error("monitor {}: create {id} with {}: {message}", dir.display(), runtime.display())]
    CreateTimeout { dir: PathBuf, id: ContainerId, runtime: PathBuf, message: String },
    #[error("monitor {}: refused ({kind:?}): {message}", dir.display())]
    Refused { dir: PathBuf, kind: FailureKind, message: String },
    /// The monitor does not hold that container (never created here, or its output ended).
    #[error("monitor {}: no container {id}", dir.display())]
    NoSuchContainer { dir: PathBuf, id: ContainerId },
    /// The OCI runtime could not start the exec's process; `message` is its own.
    #[error("monitor {}: exec in {id} with {}: {message}", dir.display(), runtime.display())]
    Exec { dir: PathBuf, id: ContainerId, runtime: PathBuf, message: String },
    /// The monitor predates what was asked of it (it was started by an older crisp).
    #[error("monitor {}: speaks protocol {protocol}, {needed} needed for {what}", dir.display())]
    TooOld { dir: PathBuf, protocol: u32, needed: u32, what: &'static str },
    #[error("exit file {}: {source}", path.display())]
    ExitFile { path: PathBuf, source: io::Error },
    #[error("exit file {}: {source}", path.display())]
    BadExitFile { path: PathBuf, source: serde_json::Error },
}

/// What the monitor needs to run `<runtime> --root R [--systemd-cgroup] create --bundle B
/// --pid-file P <id>`; [`crate::oci::OciRuntime::create_request`] fills it for a handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: ContainerId,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub systemd_cgroup: bool,
    pub bundle: PathBuf,
    /// Where the monitor writes the [`ExitRecord`] when the container's init exits.
    pub exit_file: PathBuf,
    /// How long `create` may run before the monitor kills it; none (older daemons): 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl CreateRequest {
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout_ms.map_or(CREATE_TIMEOUT, Duration::from_millis)
    }
}

/// What a container has beyond the pause: [`Monitor::create_container`]. The default is the
/// pause's: /dev/null stdio, no OOM check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<ContainerStdio>,
    /// The OCI spec's `cgroupsPath` (cgroupfs form, or systemd's `slice:prefix:name`), where
    /// the monitor looks for an OOM kill when the init dies of SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
}

/// A container's stdio as the monitor serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStdio {
    /// The CRI log file stdout and stderr go to (created if absent, appended to); none: the
    /// output is read and dropped.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// A terminal (the spec's `process.terminal` must say so too): the runtime hands the
    /// monitor the pty master and its output is logged as stdout.
    #[serde(default)]
    pub tty: bool,
    /// A stdin pipe the monitor holds open (without a tty); else stdin is /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Stdin closes (the container reads EOF) when the first attach with stdin ends.
    #[serde(default)]
    pub stdin_once: bool,
}

/// `<runtime> --root R [--systemd-cgroup] exec --process P <id>`, run by the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub id: ContainerId,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub systemd_cgroup: bool,
    /// An OCI process JSON file the caller wrote.
    pub process: PathBuf,
    /// Killed after this; none: runs until it ends.
    pub timeout_ms: Option<u64>,
    /// Where the monitor writes `stdout` and `stderr` (made if absent).
    pub output_dir: PathBuf,
    /// The most each of `stdout` and `stderr` keeps; the rest is read and dropped.
    pub cap_bytes: u64,
}

/// A connection to a running container's stdio: [`Monitor::attach_stdio`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub id: ContainerId,
    /// Frames of stdin go to the container (it must have been created with stdin).
    pub stdin: bool,
    pub stdout: bool,
    /// Ignored for a tty, whose output is one stream.
    pub stderr: bool,
}

/// `<runtime> exec --process P [--console-socket S] <id>` whose stdio streams over the
/// connection: [`Monitor::exec_stream`]. The process JSON's `terminal` must match `tty`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStreamRequest {
    pub id: ContainerId,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub systemd_cgroup: bool,
    pub process: PathBuf,
    pub tty: bool,
    /// Without it the process's stdin is /dev/null.
    pub stdin: bool,
}

/// How an exec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The process's exit status, or 128 + the signal that ended it.
    pub exit_code: i32,
    /// It overran its timeout and was killed.
    pub timed_out: bool,
    /// stdout or stderr had more than `cap_bytes`.
    pub truncated: bool,
}

/// Written atomically by the monitor when a container's init exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal that ended it.
    pub exit_code: i32,
    /// When the monitor reaped it, in ns since the Unix epoch.
    pub finished_at_ns: i64,
    /// It died of SIGKILL (or exited 137) and its memory cgroup counts an OOM kill. Absent in
    /// records of protocol 1 monitors.
    #[serde(default)]
    pub oom_killed: bool,
}

/// The exit a monitor recorded at `path`; `None` while the container has not exited.
pub fn read_exit(path: &Path) -> Result<Option<ExitRecord>, MonitorError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MonitorError::ExitFile { path: path.to_owned(), source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| MonitorError::BadExitFile { path: path.to_owned(), source })
}

/// A monitor serving `dir`. Every call is blocking: run them off async workers.
#[derive(Debug, Clone)]
pub struct Monitor {
    dir: PathBuf,
    pid: u32,
    /// What its `hello` said: a monitor outlives upgrades of the daemon.
    protocol: u32,
}

impl Monitor {
    /// Spawns `binary` for `dir` (its socket, pid file, log, under dir) and waits until it serves.
    ///
    /// The monitor double-forks away: the process spawned here exits at once (and is reaped
    /// here); the monitor reports on the inherited stdout pipe that it serves, or why not,
    /// then lets go of it.
    pub fn spawn(binary: &Path, dir: &Path) -> Result<Monitor, MonitorError> {
        let dir = std::path::absolute(dir).map_err(|source| io_error(dir, "directory", source))?;
        fs::create_dir_all(&dir).map_err(|source| io_error(&dir, "directory", source))?;
        let mut child = Command::new(binary)
            .arg(&dir)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| MonitorError::Spawn { dir: dir.clone(), binary: binary.to_owned(), source })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let report = read_report(stdout, START_TIMEOUT);
        if matches!(report, Err(ReportError::Timeout)) {
            // The first process only forks and waits for its child, which forks and exits:
            // if it is still there, it is stuck, and waiting for it would be too.
            let _ = child.kill();
        }
        // The daemon's own child; the monitor itself is not.
        let _ = child.wait();
        let reason = match report {
            Ok(line) => match line.strip_prefix("ready ").map(str::parse::<u32>) {
                Some(Ok(pid)) => return Monitor::serving(&dir, pid),
                _ => line,
            },
            Err(ReportError::Timeout) => format!("no word within {}s", START_TIMEOUT.as_secs()),
            Err(ReportError::Closed) => "exited without a word".to_owned(),
            Err(ReportError::Io(e)) => format!("reading its report: {e}"),
        };
        Err(MonitorError::Start { log: log_tail(&dir), dir, reason })
    }

    /// Checks that the monitor that said it serves does answer.
    fn serving(dir: &Path, pid: u32) -> Result<Monitor, MonitorError> {
        let monitor = Monitor { dir: dir.to_owned(), pid, protocol: 0 };
        match monitor.request(&Request::Hello, Some(REQUEST_TIMEOUT)) {
            Ok(Response::Hello { pid: answered, protocol }) if answered == pid => Ok(Monitor { protocol, ..monitor }),
            Ok(other) => Err(monitor.unexpected(other)),
            Err(e) => Err(MonitorError::Start { dir: dir.to_owned(), reason: e.to_string(), log: log_tail(dir) }),
        }
    }

    /// The monitor already serving `dir` after a daemon restart; None if it is gone.
    pub fn attach(dir: &Path) -> Result<Option<Monitor>, MonitorError> {
        let recorded = match fs::read_to_string(dir.join(PID_FILE)) {
            Ok(text) => text.trim().parse::<u32>().map_err(|_| MonitorError::Protocol {
                dir: dir.to_owned(),
                answer: format!("pid file holds {text:?}"),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error(dir, "pid file", source)),
        };
        let probe = Monitor { dir: dir.to_owned(), pid: recorded, protocol: 0 };
        match probe.request(&Request::Hello, Some(REQUEST_TIMEOUT)) {
            Ok(Response::Hello { pid, protocol }) if pid == recorded => Ok(Some(Monitor { protocol, ..probe })),
            Ok(other) => Err(probe.unexpected(other)),
            // A socket file nobody listens on is what a monitor that was killed leaves.
            Err(MonitorError::Io { source, .. })
                if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `<runtime> --root R [--systemd-cgroup] create --bundle B --pid-file P <id>` as its
    /// child with stdio /dev/null (the pause) and returns the container's init pid, or the
    /// runtime's error message.
    pub fn create(&self, request: &CreateRequest) -> Result<u32, MonitorError> {
        self.create_container(request, &CreateOptions::default())
    }

    /// [`Monitor::create`] for a container: its stdio goes to its CRI log (or a tty), and an
    /// init killed by SIGKILL is checked for an OOM kill in `options.cgroups_path`.
    pub fn create_container(&self, request: &CreateRequest, options: &CreateOptions) -> Result<u32, MonitorError> {
        if *options != CreateOptions::default() {
            self.require(PROTOCOL_CONTAINERS, "container stdio and OOM checks")?;
        }
        let op = Request::Create(CreateOp { request: request.clone(), options: options.clone() });
        // The monitor answers once it has killed a runtime that overran; allow for that.
        match self.request(&op, Some(request.timeout() + REQUEST_TIMEOUT))? {
            Response::Created { pid } => Ok(pid),
            Response::Failed { kind: FailureKind::Timeout, message } => Err(MonitorError::CreateTimeout {
                dir: self.dir.clone(),
                id: request.id.clone(),
                runtime: request.runtime.clone(),
                message,
            }),
            Response::Failed { kind: FailureKind::Runtime, message } => Err(MonitorError::Runtime {
                dir: self.dir.clone(),
                id: request.id.clone(),
                runtime: request.runtime.clone(),
                message,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    /// Reopens the container's log file at its path (the kubelet has rotated it).
    pub fn reopen_log(&self, id: &ContainerId) -> Result<(), MonitorError> {
        self.require(PROTOCOL_CONTAINERS, "reopen_log")?;
        match self.request(&Request::ReopenLog { id: id.clone() }, Some(REQUEST_TIMEOUT))? {
            Response::LogReopened => Ok(()),
            Response::Failed { kind: FailureKind::NotFound, .. } => {
                Err(MonitorError::NoSuchContainer { dir: self.dir.clone(), id: id.clone() })
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Runs a process in the container and waits for it (and its output) to end, or for its
    /// timeout to kill it. Its output is in `request.output_dir`'s `stdout` and `stderr`.
    pub fn exec(&self, request: &ExecRequest) -> Result<ExecResult, MonitorError> {
        self.exec_cancellable(request, &ExecCancel::default())
    }

    /// [`Monitor::exec`] that `cancel` can end from another thread: the monitor kills the
    /// process when the connection closes, as when the daemon's caller gives up.
    pub fn exec_cancellable(&self, request: &ExecRequest, cancel: &ExecCancel) -> Result<ExecResult, MonitorError> {
        self.require(PROTOCOL_CONTAINERS, "exec")?;
        let wait = request.timeout_ms.map(|ms| Duration::from_millis(ms) + EXEC_DRAIN + REQUEST_TIMEOUT);
        match self.request_with(&Request::Exec(request.clone()), wait, Some(cancel))? {
            Response::Exec(result) => Ok(result),
            Response::Failed { kind: FailureKind::Runtime, message } => Err(MonitorError::Exec {
                dir: self.dir.clone(),
                id: request.id.clone(),
                runtime: request.runtime.clone(),
                message,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    /// Connects to a running container's stdio: the returned connection carries
    /// [`frame::Frame`]s (stdin, resize from the caller; output and the exit code from the
    /// monitor), and whether the container has a tty.
    pub fn attach_stdio(&self, request: &AttachRequest) -> Result<(UnixStream, bool), MonitorError> {
        self.require(PROTOCOL_STREAMS, "attach")?;
        match self.open_stream(&Request::Attach(request.clone()))? {
            (stream, Response::Attached { tty }) => Ok((stream, tty)),
            (_, Response::Failed { kind: FailureKind::NotFound, .. }) => {
                Err(MonitorError::NoSuchContainer { dir: self.dir.clone(), id: request.id.clone() })
            }
            (_, other) => Err(self.unexpected(other)),
        }
    }

    /// Runs a process in the container whose stdio streams over the returned connection as
    /// [`frame::Frame`]s, ending with its exit code (or why it could not run). Closing the
    /// connection kills the process.
    pub fn exec_stream(&self, request: &ExecStreamRequest) -> Result<UnixStream, MonitorError> {
        self.require(PROTOCOL_STREAMS, "streaming exec")?;
        match self.open_stream(&Request::ExecStream(request.clone()))? {
            (stream, Response::ExecStarted) => Ok(stream),
            (_, Response::Failed { kind: FailureKind::Runtime, message }) => Err(MonitorError::Exec {
                dir: self.dir.clone(),
                id: request.id.clone(),
                runtime: request.runtime.clone(),
                message,
            }),
            (_, other) => Err(self.unexpected(other)),
        }
    }

    /// A request whose answer is followed by frames: the answer line is read byte by byte so
    /// that no frame is read with it. The connection is returned blocking, without timeouts.
    fn open_stream(&self, request: &Request) -> Result<(UnixStream, Response), MonitorError> {
        let io = |what, source| io_error(&self.dir, what, source);
        let mut stream = socket_path::with_socket_path(&self.dir.join(SOCKET), |p| UnixStream::connect(p))
            .map_err(|e| io("connect", e))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| io("socket", e))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| io("socket", e))?;
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        stream.write_all(&line).map_err(|e| io("send", e))?;
        let mut answer = Vec::new();
        let mut byte = [0u8];
        while answer.len() < protocol::MAX_LINE {
            match stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => answer.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io("receive", e)),
            }
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let response =
            serde_json::from_str(&answer).map_err(|_| MonitorError::Protocol { dir: self.dir.clone(), answer })?;
        stream.set_read_timeout(None).and_then(|()| stream.set_write_timeout(None)).map_err(|e| io("socket", e))?;
        Ok((stream, response))
    }

    /// Asks the monitor to exit once none of its containers runs (at once if none does); it
    /// takes no new containers or execs after this.
    pub fn shutdown(&self) -> Result<(), MonitorError> {
        match self.request(&Request::Shutdown, Some(REQUEST_TIMEOUT))? {
            Response::ShuttingDown { .. } => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    fn require(&self, needed: u32, what: &'static str) -> Result<(), MonitorError> {
        if self.protocol >= needed {
            return Ok(());
        }
        Err(MonitorError::TooOld { dir: self.dir.clone(), protocol: self.protocol, needed, what })
    }

    /// One request on a connection of its own; `timeout` bounds the wait for the answer (none:
    /// an exec without a timeout, which answers when it ends).
    fn request(&self, request: &Request, timeout: Option<Duration>) -> Result<Response, MonitorError> {
        self.request_with(request, timeout, None)
    }

    /// A request whose connection `cancel` can close from another thread: the monitor then
    /// ends what the request started.
    fn request_with(
        &self,
        request: &Request,
        timeout: Option<Duration>,
        cancel: Option<&ExecCancel>,
    ) -> Result<Response, MonitorError> {
        let io = |what, source| io_error(&self.dir, what, source);
        let mut stream = socket_path::with_socket_path(&self.dir.join(SOCKET), |p| UnixStream::connect(p))
            .map_err(|e| io("connect", e))?;
        if let Some(cancel) = cancel {
            cancel.register(&stream).map_err(|e| io("connect", e))?;
        }
        stream.set_read_timeout(timeout).map_err(|e| io("socket", e))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| io("socket", e))?;
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        stream.write_all(&line).map_err(|e| io("send", e))?;
        let mut answer = String::new();
        BufReader::new(stream.take(protocol::MAX_LINE as u64)).read_line(&mut answer).map_err(|e| io("receive", e))?;
        if answer.is_empty() {
            let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "closed without an answer");
            return Err(io("receive", closed));
        }
        serde_json::from_str(&answer).map_err(|_| MonitorError::Protocol { dir: self.dir.clone(), answer })
    }

    fn unexpected(&self, response: Response) -> MonitorError {
        match response {
            Response::Failed { kind, message } => MonitorError::Refused { dir: self.dir.clone(), kind, message },
            other => MonitorError::Protocol { dir: self.dir.clone(), answer: format!("{other:?}") },
        }
    }
}

/// Whether the monitor whose pid file is in `dir` runs: that pid, alive and not a zombie,
/// running crisp-monitor. Reads /proc only; no request is sent.
pub fn runs(dir: &Path) -> bool {
    let pid = fs::read_to_string(dir.join(PID_FILE)).ok().and_then(|p| p.trim().parse::<u32>().ok());
    pid.is_some_and(|pid| {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat.rfind(')').is_some_and(|i| stat[i + 2..].starts_with(|c| c != 'Z'));
        alive
            && fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().contains("crisp-monitor"))
    })
}

/// Closes an exec's connection to the monitor from another thread.
#[derive(Debug, Clone, Default)]
pub struct ExecCancel(std::sync::Arc<std::sync::Mutex<CancelState>>);

#[derive(Debug, Default)]
struct CancelState {
    stream: Option<UnixStream>,
    cancelled: bool,
}

impl ExecCancel {
    fn register(&self, stream: &UnixStream) -> io::Result<()> {
        let mut state = self.0.lock().expect("exec cancel lock");
        if state.cancelled {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled before it began"));
        }
        state.stream = Some(stream.try_clone()?);
        Ok(())
    }

    /// Ends the exec: its connection is shut down, or it never begins.
    pub fn cancel(&self) {
        let mut state = self.0.lock().expect("exec cancel lock");
        state.cancelled = true;
        if let Some(stream) = state.stream.take() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn io_error(dir: &Path, what: &'static str, source: io::Error) -> MonitorError {
    MonitorError::Io { dir: dir.to_owned(), what, source }
}

enum ReportError {
    Timeout,
    Closed,
    Io(io::Error),
}

/// The first line the monitor writes on its stdout, waiting at most `timeout` for it.
fn read_report(mut pipe: impl Read + AsFd, timeout: Duration) -> Result<String, ReportError> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut chunk = [0u8; 256];
    while !line.contains(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, left) {
            Ok(0) => return Err(ReportError::Timeout),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ReportError::Io(e.into())),
        }
        match pipe.read(&mut chunk) {
            Ok(0) if line.is_empty() => return Err(ReportError::Closed),
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReportError::Io(e)),
        }
        if line.len() > LOG_TAIL {
            break;
        }
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The end of the monitor's log, for errors about it.
fn log_tail(dir: &Path) -> String {
    match fs::read(dir.join(LOG)) {
        Ok(bytes) => {
            let tail = &bytes[bytes.len().saturating_sub(LOG_TAIL)..];
            let text = String::from_utf8_lossy(tail).trim().to_owned();
            if text.is_empty() { "(empty)".to_owned() } else { text }
        }
        Err(e) => format!("({}: {e})", dir.join(LOG).display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_exit_tells_absent_from_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert_eq!(read_exit(&path).unwrap(), None);
        fs::write(&path, r#"{"exit_code":137,"finished_at_ns":5}"#).unwrap();
        let protocol_1 = ExitRecord { exit_code: 137, finished_at_ns: 5, oom_killed: false };
        assert_eq!(read_exit(&path).unwrap(), Some(protocol_1));
        fs::write(&path, r#"{"exit_code":137,"finished_at_ns":5,"oom_killed":true}"#).unwrap();
        assert!(read_exit(&path).unwrap().unwrap().oom_killed);
        fs::write(&path, "{").unwrap();
        assert!(matches!(read_exit(&path), Err(MonitorError::BadExitFile { .. })));
    }

    #[test]
    fn attach_finds_nothing_where_no_monitor_is() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Monitor::attach(dir.path()).unwrap().is_none());
        // What a killed monitor leaves: its pid file and a socket nobody listens on.
        fs::write(dir.path().join(PID_FILE), "999999\n").unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET)).unwrap());
        assert!(Monitor::attach(dir.path()).unwrap().is_none());
    }
}
