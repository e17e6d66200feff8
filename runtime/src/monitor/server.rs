//! The monitor process itself: `crisp-monitor DIR`.
//!
//! One thread, one loop: poll(2) on the listening socket, a signalfd for SIGCHLD, the clients,
//! the containers' stdout/stderr pipes (or pty masters) and the execs' output pipes. Nothing in
//! it blocks: pipes are non-blocking, and what waits (a create, an exec, an exit whose output
//! is still draining) is state the loop comes back to. Children are reaped only by
//! `waitpid(-1, WNOHANG)` in that loop: runtimes it runs, container inits that reparent to it
//! (it is their subreaper), and whatever orphans they leave. A per-child wait anywhere would
//! race that and lose exit statuses.
//!
//! Every descriptor the monitor makes is close-on-exec; a runtime it runs inherits only the
//! stdio it is given, which a container's init keeps as its own (and nothing else).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid};

use super::log::{self, LineSplitter, Stream};
use super::protocol::{CreateOp, FailureKind, MAX_LINE, PROTOCOL, Request, Response};
use super::{
    ContainerStdio, CreateOptions, CreateRequest, EXEC_DRAIN, ExecRequest, ExecResult, ExitRecord, LOG,
    PID_FILE, SOCKET, oom, socket_path,
};
use crate::ContainerId;
use crate::oci::{PATH_ENV, failure_message, global_args};

mod stream;
use stream::{StdinSink, StreamExec, Streaming};

/// How long the exit of a pid nobody claimed is kept: a container init can be reaped before
/// the runtime that created it has exited and its pid file been read.
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);
/// A client that does not take its answer within this is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an exit record waits for the container's output to end: processes the init
/// left behind (in a pod's shared PID namespace) may hold its pipes for good.
const LOG_DRAIN: Duration = Duration::from_secs(2);
/// How long a runtime that connected to a console socket may take to send the master.
const CONSOLE_WAIT: Duration = Duration::from_secs(2);
/// The most one read takes from a pipe.
const READ_CHUNK: usize = 32 * 1024;

/// The `crisp-monitor` binary's main.
pub fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: crisp-monitor DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        report(&format!("error: {} is not an absolute path", dir.display()));
        return ExitCode::from(2);
    }
    close_inherited_fds();

    // SAFETY: nothing but the main thread runs yet, so the child may do anything.
    match unsafe { fork() } {
        Err(e) => {
            report(&format!("error: fork: {e}"));
            return ExitCode::FAILURE;
        }
        // The spawner's child: gone as soon as the monitor is detached, reaping the
        // intermediate so that nothing is left for init.
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None);
            return ExitCode::SUCCESS;
        }
        Ok(ForkResult::Child) => {}
    }
    // The intermediate leads a new session (no controlling terminal, no signals from the
    // daemon's process group) and forks the monitor, which is then no session leader and so
    // can never acquire a terminal, and has no parent left in the daemon's tree.
    if let Err(e) = setsid() {
        report(&format!("error: setsid: {e}"));
        // SAFETY: _exit is always safe; nothing of this process needs flushing.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            report(&format!("error: fork: {e}"));
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
        // SAFETY: as above.
        Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(ForkResult::Child) => {}
    }
    match Server::start(dir) {
        Ok(server) => {
            server.run();
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// A line for the spawner, on the stdout pipe it is waiting on.
fn report(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The daemon's descriptors must not live on in the monitor (and so in every container):
/// keep only stdio.
fn close_inherited_fds() {
    // SAFETY: no Rust object owns a descriptor above 2 yet.
    if unsafe { libc::close_range(3, libc::c_uint::MAX, 0) } == 0 {
        return;
    }
    // close_range(2) is Linux 5.9+; older kernels get the slow way.
    let Ok(entries) = fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&fd| fd > 2).collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor is closed already and fails harmlessly.
        unsafe { libc::close(fd) };
    }
}

#[derive(Debug)]
struct StartError(String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn start_error(what: impl fmt::Display, e: impl fmt::Display) -> StartError {
    StartError(format!("{what}: {e}"))
}

/// A client connection. Requests on one connection are answered in order: while a create or
/// an exec is running for it, its next lines wait in `buf`. After an attach or a streaming
/// exec it carries frames (`buf` then holds frames not yet whole).
struct Client {
    token: u64,
    stream: UnixStream,
    buf: Vec<u8>,
    busy: bool,
    streaming: Option<Streaming>,
    /// Frames waiting for the (then non-blocking) socket.
    out: Vec<u8>,
    /// Its process has ended: the client is let go once `out` is written.
    closing: bool,
}

/// A `runtime create` the monitor is running, keyed by the runtime's pid.
struct Creating {
    client: u64,
    request: CreateRequest,
    options: CreateOptions,
    /// The container's stdio in `Server::io`, already being read.
    io: Option<u64>,
    console: Option<ConsoleSocket>,
    pid_file: PathBuf,
    log_file: PathBuf,
    deadline: Instant,
    killed: bool,
}

/// Where the runtime hands over a tty container's pty master (`--console-socket`).
struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
    /// `path`, or where the runtime reaches it when `path` is too long for a socket address.
    runtime_path: PathBuf,
    /// Keeps the path the runtime was given valid, when it goes through this directory.
    _dir: Option<File>,
}

/// A container init the monitor waits for, keyed by its pid.
struct Running {
    id: ContainerId,
    exit_file: PathBuf,
    cgroups_path: Option<String>,
    systemd_cgroup: bool,
    io: Option<u64>,
}

/// An init that has exited, whose record waits until its output is read to the end (or
/// `deadline`: processes it left behind may hold its pipes), so that a reader who sees the
/// record finds the whole log.
struct Exiting {
    pid: Pid,
    running: Running,
    exit: ExitRecord,
    deadline: Instant,
}

/// A container's stdio as the monitor holds it, from its create until its output ends.
struct ContainerIo {
    id: ContainerId,
    log_path: Option<PathBuf>,
    log: Option<File>,
    /// stdout and stderr pipes, or the pty master; `None` once at EOF.
    streams: Vec<OutputStream>,
    /// The write end of the container's stdin pipe (or the pty master's duplicate), held so
    /// that it does not see EOF until attach says so.
    stdin: StdinSink,
    stdin_once: bool,
    tty: bool,
    /// Its init's exit is recorded: what is left is reading its output to the end.
    exited: bool,
    /// A failing log is noted once, not per line.
    log_failed: bool,
}

struct OutputStream {
    fd: Option<OwnedFd>,
    stream: Stream,
    splitter: LineSplitter,
}

impl ContainerIo {
    fn open(&self) -> bool {
        self.streams.iter().any(|s| s.fd.is_some())
    }
}

/// A `runtime exec` the monitor is running, keyed by a token of its own: the runtime's pid is
/// no key once reaped, while its output may still be draining.
struct Exec {
    client: u64,
    request: ExecRequest,
    /// Until reaped.
    runtime_pid: Option<Pid>,
    stdout: ExecOutput,
    stderr: ExecOutput,
    pid_file: PathBuf,
    log_file: PathBuf,
    deadline: Option<Instant>,
    timed_out: bool,
    /// How the runtime ended, and until when its output is still read.
    ended: Option<(WaitStatus, Instant)>,
}

/// One of an exec's output files, capped.
struct ExecOutput {
    pipe: Option<OwnedFd>,
    file: File,
    written: u64,
    truncated: bool,
}

impl ExecOutput {
    /// Keeps what fits under `cap`; the rest is only counted as truncation.
    fn write(&mut self, data: &[u8], cap: u64) -> io::Result<()> {
        let room = cap.saturating_sub(self.written);
        let keep = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if keep < data.len() {
            self.truncated = true;
        }
        self.written += keep as u64;
        self.file.write_all(&data[..keep])
    }
}

/// What a descriptor the loop polls belongs to.
#[derive(Clone, Copy)]
enum Source {
    Listener,
    Signals,
    /// A client, and whether it hung up (or failed).
    Client(u64, bool),
    Log(u64, usize),
    ExecOut(u64, Stream),
    /// A container's stdin that can take what waits for it.
    Stdin(u64),
    StreamExecOut(u64, usize),
    StreamExecStdin(u64),
    StreamExecConsole(u64),
}

/// An exit reaped before anyone claimed the pid.
struct Unclaimed {
    exit: ExitRecord,
    reaped: Instant,
}

struct Server {
    dir: PathBuf,
    log: File,
    listener: UnixListener,
    signals: SignalFd,
    clients: Vec<Client>,
    /// Tokens for clients, container stdio and execs.
    next_token: u64,
    creating: HashMap<Pid, Creating>,
    running: HashMap<Pid, Running>,
    exiting: Vec<Exiting>,
    io: HashMap<u64, ContainerIo>,
    execs: HashMap<u64, Exec>,
    stream_execs: HashMap<u64, StreamExec>,
    unclaimed: HashMap<Pid, Unclaimed>,
    shutting_down: bool,
    /// One log record being assembled, reused.
    record: Vec<u8>,
}

impl Server {
    fn start(dir: PathBuf) -> Result<Server, StartError> {
        chdir("/").map_err(|e| start_error("chdir /", e))?;
        // Files the monitor and its runtimes create get predictable modes whatever the
        // daemon's umask; the socket is made private below.
        umask(Mode::from_bits_truncate(0o022));
        let log_path = dir.join(LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| start_error(log_path.display(), e))?;
        let null =
            OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| start_error("/dev/null", e))?;
        dup2_stdin(&null).and_then(|()| dup2_stderr(&null)).map_err(|e| start_error("stdio", e))?;
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| start_error("PR_SET_CHILD_SUBREAPER", e))?;

        // An ignored SIGCHLD (inherited through exec) would make the kernel reap children
        // itself and lose their statuses.
        // SAFETY: SIG_DFL installs no handler.
        unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map_err(|e| start_error("SIGCHLD", e))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(|e| start_error("blocking SIGCHLD", e))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| start_error("signalfd", e))?;

        let socket = dir.join(SOCKET);
        if super::socket_path::with_socket_path(&socket, |p| UnixStream::connect(p)).is_ok() {
            return Err(StartError(format!("another monitor serves {}", dir.display())));
        }
        let listener = bind_private(&socket).map_err(|e| start_error(socket.display(), e))?;
        let pid = std::process::id();
        let pid_path = dir.join(PID_FILE);
        crate::persist::write(&pid_path, format!("{pid}\n").as_bytes(), 0o644)
            .map_err(|e| start_error(pid_path.display(), e))?;

        let server = Server {
            dir,
            log,
            listener,
            signals,
            clients: Vec::new(),
            next_token: 0,
            creating: HashMap::new(),
            running: HashMap::new(),
            exiting: Vec::new(),
            io: HashMap::new(),
            execs: HashMap::new(),
            stream_execs: HashMap::new(),
            unclaimed: HashMap::new(),
            shutting_down: false,
            record: Vec::new(),
        };
        server.note(format_args!("serving {} as pid {pid}", server.dir.display()));
        report(&format!("ready {pid}"));
        dup2_stdout(&null).map_err(|e| start_error("stdout", e))?;
        Ok(server)
    }

    fn run(mut self) {
        let mut chunk = vec![0u8; READ_CHUNK];
        while !(self.shutting_down
            && self.running.is_empty()
            && self.creating.is_empty()
            && self.exiting.is_empty()
            && self.execs.is_empty()
            && self.stream_execs.is_empty())
        {
            let ready = match self.wait() {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.note(format_args!("poll: {e}; exiting"));
                    break;
                }
            };
            for source in ready {
                match source {
                    Source::Signals => {
                        while let Ok(Some(_)) = self.signals.read_signal() {}
                        self.reap();
                    }
                    Source::Listener => self.accept(),
                    Source::Client(token, hung_up) => {
                        self.read_client(token);
                        if hung_up {
                            // A framed client held back (its stdin full, its buffer at the cap)
                            // is not read to its EOF: its hang-up alone says it is gone, and
                            // would otherwise wake the loop forever.
                            self.drop_streaming_client(token);
                        }
                    }
                    Source::Log(key, index) => self.read_log(key, index, &mut chunk),
                    Source::ExecOut(key, stream) => self.read_exec(key, stream, &mut chunk),
                    Source::Stdin(key) => {
                        if let Some(io) = self.io.get_mut(&key) {
                            io.stdin.flush();
                        }
                        self.resume_stdin_writers();
                    }
                    Source::StreamExecOut(key, index) => self.read_stream_exec(key, index, &mut chunk),
                    Source::StreamExecStdin(key) => {
                        if let Some(exec) = self.stream_execs.get_mut(&key) {
                            exec.stdin.flush();
                        }
                        self.resume_stdin_writers();
                    }
                    Source::StreamExecConsole(key) => self.exec_console(key),
                }
            }
            self.enforce_deadlines();
        }
        let _ = fs::remove_file(self.dir.join(SOCKET));
        let _ = fs::remove_file(self.dir.join(PID_FILE));
        self.note(format_args!("exiting"));
    }

    /// Polls every descriptor the monitor serves; what is ready, in the order handled.
    fn wait(&self) -> Result<Vec<Source>, Errno> {
        let mut sources = vec![Source::Signals, Source::Listener];
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
        ];
        for client in &self.clients {
            // A client waiting for its answer is watched only for hanging up (POLLHUP needs no
            // asking): the monitor then ends what it asked for. A framed client is not read
            // while the stdin it writes to is full, nor once its process ended.
            let mut events = if client.busy || client.closing || self.input_held(client.token) {
                PollFlags::empty()
            } else {
                PollFlags::POLLIN
            };
            if !client.out.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            sources.push(Source::Client(client.token, false));
            fds.push(PollFd::new(client.stream.as_fd(), events));
        }
        for (&key, io) in &self.io {
            for (index, stream) in io.streams.iter().enumerate() {
                if let Some(fd) = &stream.fd {
                    sources.push(Source::Log(key, index));
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
            }
            if io.stdin.waiting() {
                sources.push(Source::Stdin(key));
                fds.push(PollFd::new(io.stdin.fd.as_ref().expect("waiting").as_fd(), PollFlags::POLLOUT));
            }
        }
        for (&key, exec) in &self.stream_execs {
            if self.exec_output_wanted(exec) {
                for (index, (fd, _)) in exec.outputs.iter().enumerate() {
                    if let Some(fd) = fd {
                        sources.push(Source::StreamExecOut(key, index));
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    }
                }
            }
            if exec.stdin.waiting() {
                sources.push(Source::StreamExecStdin(key));
                fds.push(PollFd::new(exec.stdin.fd.as_ref().expect("waiting").as_fd(), PollFlags::POLLOUT));
            }
            if let Some(console) = &exec.console {
                sources.push(Source::StreamExecConsole(key));
                fds.push(PollFd::new(console.listener.as_fd(), PollFlags::POLLIN));
            }
        }
        for (&key, exec) in &self.execs {
            for (stream, output) in [(Stream::Stdout, &exec.stdout), (Stream::Stderr, &exec.stderr)] {
                if let Some(pipe) = &output.pipe {
                    sources.push(Source::ExecOut(key, stream));
                    fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                }
            }
        }
        poll(&mut fds, self.poll_timeout())?;
        // Hang-ups and errors count as ready: the read that follows sees them.
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let hung_up = |fd: &PollFd| fd.revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
        Ok(sources
            .into_iter()
            .zip(&fds)
            .filter(|(_, fd)| ready(fd))
            .map(|(source, fd)| match source {
                Source::Client(token, _) => Source::Client(token, hung_up(fd)),
                other => other,
            })
            .collect())
    }

    /// Until the earliest deadline of a create, an exec, or an exit waiting for its output;
    /// forever when none is pending.
    fn poll_timeout(&self) -> PollTimeout {
        let creates = self.creating.values().filter(|c| !c.killed).map(|c| c.deadline);
        let execs = self.execs.values().filter_map(|e| match e.ended {
            Some((_, drain)) => Some(drain),
            None if e.timed_out => None,
            None => e.deadline,
        });
        let exits = self.exiting.iter().map(|e| e.deadline);
        let streams = self.stream_execs.values().filter_map(|e| e.ended.as_ref().map(|(_, drain)| *drain));
        let Some(next) = creates.chain(execs).chain(exits).chain(streams).min() else { return PollTimeout::NONE };
        // Rounded up so the loop does not spin for the last sub-millisecond.
        let left = next.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.note(format_args!("waitpid: {e}"));
                    break;
                }
                Ok(status) => status,
            };
            let Some((pid, exit_code)) = exit_code(status) else { continue };
            let exit = ExitRecord { exit_code, finished_at_ns: now_ns(), oom_killed: false };
            if let Some(creating) = self.creating.remove(&pid) {
                self.finish_create(creating, status);
            } else if let Some(running) = self.running.remove(&pid) {
                self.init_exited(pid, running, exit);
            } else if let Some((&key, exec)) = self.execs.iter_mut().find(|(_, e)| e.runtime_pid == Some(pid)) {
                exec.runtime_pid = None;
                exec.ended = Some((status, Instant::now() + EXEC_DRAIN));
                self.finish_exec(key);
            } else if !self.stream_exec_reaped(pid, status) {
                self.unclaimed.insert(pid, Unclaimed { exit, reaped: Instant::now() });
            }
        }
        self.unclaimed.retain(|_, u| u.reaped.elapsed() < UNCLAIMED_TTL);
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Accepted sockets block: reads happen only after poll said so, and
                    // answers are short, but a client that stops reading must not wedge us.
                    if let Err(e) = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)) {
                        self.note(format_args!("client socket: {e}"));
                        continue;
                    }
                    let token = self.token();
                    let client = Client {
                        token,
                        stream,
                        buf: Vec::new(),
                        busy: false,
                        streaming: None,
                        out: Vec::new(),
                        closing: false,
                    };
                    self.clients.push(client);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.note(format_args!("accept: {e}"));
                    break;
                }
            }
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn client(&mut self, token: u64) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.token == token)
    }

    fn drop_client(&mut self, token: u64) {
        let Some(index) = self.clients.iter().position(|c| c.token == token) else { return };
        let client = self.clients.swap_remove(index);
        if client.streaming.is_some() {
            return self.client_gone(client.streaming);
        }
        // Nobody waits for these any more: they end as if their time had run out.
        let now = Instant::now();
        let mut abandoned = 0;
        for exec in self.execs.values_mut().filter(|e| e.client == token) {
            exec.deadline = Some(now);
            abandoned += 1;
        }
        if abandoned > 0 {
            self.note(format_args!("client {token} went away: ending its {abandoned} exec(s)"));
        }
    }

    fn read_client(&mut self, token: u64) {
        let Some(client) = self.client(token) else { return };
        if client.streaming.is_some() {
            return self.serve_stream(token);
        }
        let mut chunk = [0u8; 4096];
        match client.stream.read(&mut chunk) {
            Ok(0) => return self.drop_client(token),
            Ok(n) => client.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => return,
            Err(_) => return self.drop_client(token),
        }
        self.serve_lines(token);
    }

    /// Answers the complete request lines a client has sent, until one has to wait.
    fn serve_lines(&mut self, token: u64) {
        loop {
            let Some(client) = self.client(token) else { return };
            if client.busy {
                return;
            }
            let Some(end) = client.buf.iter().position(|&b| b == b'\n') else {
                if client.buf.len() > MAX_LINE {
                    let message = format!("request line longer than {MAX_LINE} bytes");
                    self.reply(token, Response::Failed { kind: FailureKind::BadRequest, message });
                    self.drop_client(token);
                }
                return;
            };
            let line: Vec<u8> = client.buf.drain(..=end).collect();
            self.handle(token, &line[..end]);
        }
    }

    /// A client's answer is coming later (create, exec): hold its next requests until then.
    fn hold(&mut self, token: u64) {
        if let Some(client) = self.client(token) {
            client.busy = true;
        }
    }

    /// The late answer, and then the requests that waited for it.
    fn reply_late(&mut self, token: u64, response: Response) {
        self.reply(token, response);
        if let Some(client) = self.client(token) {
            client.busy = false;
        }
        self.serve_lines(token);
    }

    fn handle(&mut self, token: u64, line: &[u8]) {
        let request = match serde_json::from_slice::<Request>(line) {
            Ok(request) => request,
            Err(e) => {
                let message = format!("cannot read request: {e}");
                return self.reply(token, Response::Failed { kind: FailureKind::BadRequest, message });
            }
        };
        match request {
            Request::Hello => self.reply(token, Response::Hello { protocol: PROTOCOL, pid: std::process::id() }),
            Request::Shutdown => {
                self.shutting_down = true;
                let running = self.running.len() + self.creating.len() + self.exiting.len();
                self.note(format_args!("shutdown asked; {running} containers left"));
                self.reply(token, Response::ShuttingDown { running });
            }
            Request::Create(CreateOp { request, options }) => self.create(token, request, options),
            Request::ReopenLog { id } => {
                let response = self.reopen_log(&id);
                self.reply(token, response);
            }
            Request::Exec(request) => self.exec(token, request),
            Request::Attach(request) => self.attach(token, request),
            Request::ExecStream(request) => self.exec_stream(token, request),
        }
    }

    fn create(&mut self, token: u64, request: CreateRequest, options: CreateOptions) {
        if self.shutting_down {
            let message = "the monitor is shutting down".to_owned();
            return self.reply(token, Response::Failed { kind: FailureKind::ShuttingDown, message });
        }
        let taken = self.creating.values().any(|c| c.request.id == request.id)
            || self.running.values().any(|r| r.id == request.id)
            || self.exiting.iter().any(|e| e.running.id == request.id);
        if taken {
            let message = format!("container {} is already here", request.id);
            return self.reply(token, Response::Failed { kind: FailureKind::BadRequest, message });
        }
        let pid_file = self.dir.join(format!("{}.pid", request.id));
        let log_file = self.dir.join(format!("{}.create.log", request.id));
        let console_path = self.dir.join(format!("{}.console", request.id));
        for stale in [&pid_file, &log_file, &console_path] {
            let _ = fs::remove_file(stale);
        }
        let mut args: Vec<OsString> = global_args(&request.runtime_root, request.systemd_cgroup, &log_file);
        args.extend(["create".into(), "--bundle".into(), request.bundle.clone().into(), "--pid-file".into()]);
        args.push(pid_file.clone().into());

        // The runtime's stdio becomes the container's: /dev/null for the pause, pipes the
        // monitor reads for a container, or a pty it receives.
        let mut stdio = ChildStdio::null();
        let mut console = None;
        let mut io = None;
        if let Some(wanted) = &options.stdio {
            let prepared = self.prepare_stdio(&request.id, wanted, &console_path);
            let (child, container_io, console_socket) = match prepared {
                Ok(prepared) => prepared,
                Err(e) => {
                    let _ = fs::remove_file(&console_path);
                    let message = format!("stdio for {}: {e}", request.id);
                    self.note(format_args!("create {}: {message}", request.id));
                    return self.reply(token, Response::Failed { kind: FailureKind::Internal, message });
                }
            };
            if let Some(console) = &console_socket {
                args.extend(["--console-socket".into(), console.runtime_path.clone().into()]);
            }
            stdio = child;
            console = console_socket;
            let key = self.token();
            self.io.insert(key, container_io);
            io = Some(key);
        }
        args.push(request.id.as_str().into());
        let spawned = Command::new(&request.runtime)
            .args(&args)
            .env_clear()
            .env("PATH", PATH_ENV)
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr)
            .spawn();
        // The Command is gone with this statement, and with it the monitor's copies of the
        // container's pipe ends: only the runtime (then the init) holds them, so EOF comes
        // when the container's last process closes them.
        let pid = match spawned {
            // The Child handle is dropped unwaited: the loop's waitpid(-1) reaps it.
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => {
                let message = format!("cannot run {}: {e}", request.runtime.display());
                self.note(format_args!("create {}: {message}", request.id));
                self.discard_stdio(io, console);
                return self.reply(token, Response::Failed { kind: FailureKind::Runtime, message });
            }
        };
        self.note(format_args!(
            "create {}: {} runs as pid {pid}; stdio {:?}",
            request.id,
            request.runtime.display(),
            options.stdio
        ));
        self.hold(token);
        let deadline = Instant::now() + request.timeout();
        let creating =
            Creating { client: token, request, options, io, console, pid_file, log_file, deadline, killed: false };
        self.creating.insert(pid, creating);
    }

    /// The runtime's stdio for a container, what the monitor keeps of it, and for a tty the
    /// console socket.
    fn prepare_stdio(
        &self,
        id: &ContainerId,
        wanted: &ContainerStdio,
        console_path: &Path,
    ) -> io::Result<(ChildStdio, ContainerIo, Option<ConsoleSocket>)> {
        let log = wanted.log_path.as_deref().map(log::open).transpose()?;
        let mut io = ContainerIo {
            id: id.clone(),
            log_path: wanted.log_path.clone(),
            log,
            streams: Vec::new(),
            stdin: StdinSink::default(),
            stdin_once: wanted.stdin_once,
            tty: wanted.tty,
            exited: false,
            log_failed: false,
        };
        let mut child = ChildStdio::null();
        if wanted.tty {
            let listener = bind_private(console_path)?;
            let (runtime_path, dir) = socket_path::reachable_path(console_path)?;
            let console = ConsoleSocket { listener, path: console_path.to_owned(), runtime_path, _dir: dir };
            return Ok((child, io, Some(console)));
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (read, write) = pipe()?;
            fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            io.streams.push(OutputStream { fd: Some(read), stream, splitter: LineSplitter::default() });
            match stream {
                Stream::Stdout => child.stdout = write.into(),
                Stream::Stderr => child.stderr = write.into(),
            }
        }
        if wanted.stdin {
            let (read, write) = pipe()?;
            child.stdin = read.into();
            io.stdin = StdinSink::new(write)?;
        }
        Ok((child, io, None))
    }

    fn discard_stdio(&mut self, io: Option<u64>, console: Option<ConsoleSocket>) {
        if let Some(key) = io {
            self.io.remove(&key);
        }
        if let Some(console) = console {
            let _ = fs::remove_file(&console.path);
        }
    }

    /// The runtime has exited: answer its client with the init pid or the runtime's error.
    fn finish_create(&mut self, creating: Creating, status: WaitStatus) {
        let Creating { client, request, options, io, console, pid_file, log_file, killed, .. } = creating;
        let log = fs::read(&log_file).unwrap_or_default();
        let pid_text = fs::read_to_string(&pid_file);
        for done in [&pid_file, &log_file] {
            let _ = fs::remove_file(done);
        }
        let init = match status {
            _ if killed => Err(Response::Failed {
                kind: FailureKind::Timeout,
                message: format!("no answer within {:?}, killed", request.timeout()),
            }),
            WaitStatus::Exited(_, 0) => match pid_text.map(|t| t.trim().parse::<i32>()) {
                Ok(Ok(init)) if init > 0 => Ok(Pid::from_raw(init)),
                Ok(_) => Err(Response::Failed {
                    kind: FailureKind::Internal,
                    message: format!("{} holds no pid", pid_file.display()),
                }),
                Err(e) => Err(Response::Failed {
                    kind: FailureKind::Internal,
                    message: format!("runtime exited 0 but {}: {e}", pid_file.display()),
                }),
            },
            _ => Err(Response::Failed {
                kind: FailureKind::Runtime,
                message: failure_message(&log, b"", Described(status)),
            }),
        };
        let response = match init {
            Ok(init) => {
                // The runtime sent the pty master before it exited: it waits in the socket.
                let received = console.as_ref().map(|c| receive_console(&c.listener));
                let response = match (received, io) {
                    (Some(Ok(master)), Some(key)) => {
                        if let Some(io) = self.io.get_mut(&key) {
                            if options.stdio.as_ref().is_some_and(|s| s.stdin) {
                                match master.try_clone().and_then(StdinSink::new) {
                                    Ok(sink) => io.stdin = sink,
                                    Err(e) => self.note(format_args!("create {}: terminal input: {e}", request.id)),
                                }
                            }
                            let Some(io) = self.io.get_mut(&key) else { unreachable!("looked up above") };
                            let splitter = LineSplitter::default();
                            io.streams.push(OutputStream { fd: Some(master), stream: Stream::Stdout, splitter });
                        }
                        Response::Created { pid: init.as_raw() as u32 }
                    }
                    (Some(Err(e)), _) => Response::Failed {
                        kind: FailureKind::Runtime,
                        message: format!("the runtime sent no terminal on its console socket: {e}"),
                    },
                    _ => Response::Created { pid: init.as_raw() as u32 },
                };
                // Its exit is recorded even when the create failed here: it is our child now.
                self.adopt(init, &request, &options, io);
                response
            }
            Err(response) => {
                self.discard_stdio(io, None);
                response
            }
        };
        if let Some(console) = console {
            let _ = fs::remove_file(&console.path);
        }
        match &response {
            Response::Created { pid } => self.note(format_args!("create {}: init pid {pid}", request.id)),
            Response::Failed { message, .. } => self.note(format_args!("create {}: failed: {message}", request.id)),
            _ => {}
        }
        self.reply_late(client, response);
    }

    /// Starts waiting for a new container's init, or records its exit at once if it has
    /// already been reaped.
    fn adopt(&mut self, init: Pid, request: &CreateRequest, options: &CreateOptions, io: Option<u64>) {
        let running = Running {
            id: request.id.clone(),
            exit_file: request.exit_file.clone(),
            cgroups_path: options.cgroups_path.clone(),
            systemd_cgroup: request.systemd_cgroup,
            io,
        };
        // A reaped pid of the same number is this init only if no child of ours has that pid
        // now; otherwise the number was reused and the init is alive (or not yet reaped).
        let unclaimed = self.unclaimed.remove(&init);
        match unclaimed {
            Some(unclaimed) if !is_our_child(init) => self.init_exited(init, running, unclaimed.exit),
            _ => {
                self.running.insert(init, running);
            }
        }
    }

    /// An init was reaped: checks for an OOM kill while its cgroup is still there, then
    /// records the exit, once its output has been read to the end.
    fn init_exited(&mut self, pid: Pid, running: Running, mut exit: ExitRecord) {
        if exit.exit_code == 128 + libc::SIGKILL {
            if let Some(path) = &running.cgroups_path {
                exit.oom_killed = oom::oom_killed(path, running.systemd_cgroup);
            }
        }
        let draining = running.io.and_then(|key| self.io.get(&key)).is_some_and(ContainerIo::open);
        if draining {
            self.exiting.push(Exiting { pid, running, exit, deadline: Instant::now() + LOG_DRAIN });
        } else {
            self.finish_exit(pid, running, exit);
        }
    }

    fn finish_exit(&mut self, pid: Pid, running: Running, exit: ExitRecord) {
        self.record_exit(pid, &running, exit);
        let Some(key) = running.io else { return };
        self.attached_exit(key, exit.exit_code);
        let Some(io) = self.io.get_mut(&key) else { return };
        io.exited = true;
        io.stdin = StdinSink::default();
        if !io.open() {
            self.io.remove(&key);
        }
    }

    fn record_exit(&mut self, pid: Pid, running: &Running, exit: ExitRecord) {
        let bytes = serde_json::to_vec(&exit).expect("exit records serialize");
        let oom = if exit.oom_killed { " (OOM killed)" } else { "" };
        match crate::persist::write(&running.exit_file, &bytes, 0o644) {
            Ok(()) => self.note(format_args!("container {} (pid {pid}) exited: {}{oom}", running.id, exit.exit_code)),
            Err(e) => self.note(format_args!(
                "container {} (pid {pid}) exited: {}{oom}, but {}: {e}",
                running.id,
                exit.exit_code,
                running.exit_file.display()
            )),
        }
    }

    /// Reads what one of a container's streams has and appends it to its log.
    fn read_log(&mut self, key: u64, index: usize, chunk: &mut [u8]) {
        let Some(io) = self.io.get_mut(&key) else { return };
        let Some(stream) = io.streams.get_mut(index) else { return };
        let Some(fd) = &stream.fd else { return };
        let n = match nix::unistd::read(fd, chunk) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            // EIO is a pty whose every slave is closed: the end, as EOF is for a pipe.
            Err(_) => 0,
        };
        let stamp = log::timestamp(SystemTime::now());
        let mut failure = None;
        let (log, record, kind) = (&mut io.log, &mut self.record, stream.stream);
        let mut emit = |tag, text: &[u8]| {
            if let Some(file) = log.as_mut() {
                if let Err(e) = log::write_record(file, record, &stamp, kind, tag, text) {
                    failure = Some(e);
                }
            }
        };
        if n == 0 {
            stream.splitter.finish(&mut emit);
            stream.fd = None;
        } else {
            stream.splitter.feed(&chunk[..n], &mut emit);
        }
        if let Some(e) = failure.filter(|_| !io.log_failed) {
            io.log_failed = true;
            let (id, path) = (io.id.clone(), io.log_path.clone().unwrap_or_default());
            self.note(format_args!("container {id}: log {}: {e}; its output is dropped", path.display()));
        }
        if n == 0 {
            self.stream_closed(key);
        } else {
            self.fan_out(key, kind, &chunk[..n]);
        }
    }

    /// A stream has ended: an exit waiting for it may be recorded, finished stdio dropped.
    fn stream_closed(&mut self, key: u64) {
        let Some(io) = self.io.get(&key) else { return };
        if io.open() {
            return;
        }
        if io.exited {
            self.io.remove(&key);
            return;
        }
        if let Some(index) = self.exiting.iter().position(|e| e.running.io == Some(key)) {
            let Exiting { pid, running, exit, .. } = self.exiting.swap_remove(index);
            self.finish_exit(pid, running, exit);
        }
    }

    fn reopen_log(&mut self, id: &ContainerId) -> Response {
        let Some(io) = self.io.values_mut().find(|io| &io.id == id && !io.exited) else {
            let message = format!("no container {id} with stdio here");
            return Response::Failed { kind: FailureKind::NotFound, message };
        };
        let Some(path) = io.log_path.clone() else {
            let message = format!("container {id} has no log");
            return Response::Failed { kind: FailureKind::BadRequest, message };
        };
        match log::open(&path) {
            Ok(file) => {
                io.log = Some(file);
                io.log_failed = false;
                self.note(format_args!("container {id}: log {} reopened", path.display()));
                Response::LogReopened
            }
            Err(e) => {
                // The old file stays in use: output is not lost for a failed reopen.
                let message = format!("reopening {}: {e}", path.display());
                Response::Failed { kind: FailureKind::Internal, message }
            }
        }
    }

    fn exec(&mut self, token: u64, request: ExecRequest) {
        if self.shutting_down {
            let message = "the monitor is shutting down".to_owned();
            return self.reply(token, Response::Failed { kind: FailureKind::ShuttingDown, message });
        }
        let key = self.token();
        let pid_file = self.dir.join(format!("exec-{key}.pid"));
        let log_file = self.dir.join(format!("exec-{key}.log"));
        let prepared = (|| -> io::Result<_> {
            DirBuilder::new().recursive(true).mode(0o700).create(&request.output_dir)?;
            let (stdout, stdout_child) = exec_output(&request.output_dir.join("stdout"))?;
            let (stderr, stderr_child) = exec_output(&request.output_dir.join("stderr"))?;
            Ok((stdout, stderr, stdout_child, stderr_child))
        })();
        let (stdout, stderr, stdout_child, stderr_child) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                let message = format!("exec output in {}: {e}", request.output_dir.display());
                return self.reply(token, Response::Failed { kind: FailureKind::Internal, message });
            }
        };
        let mut args: Vec<OsString> = global_args(&request.runtime_root, request.systemd_cgroup, &log_file);
        args.extend(["exec".into(), "--process".into(), request.process.clone().into(), "--pid-file".into()]);
        args.extend([pid_file.clone().into(), request.id.as_str().into()]);
        let spawned = Command::new(&request.runtime)
            .args(&args)
            .env_clear()
            .env("PATH", PATH_ENV)
            .stdin(Stdio::null())
            .stdout(stdout_child)
            .stderr(stderr_child)
            // Its own group, so that a timeout kills the runtime and whatever helpers it has.
            .process_group(0)
            .spawn();
        let pid = match spawned {
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => {
                let message = format!("cannot run {}: {e}", request.runtime.display());
                return self.reply(token, Response::Failed { kind: FailureKind::Runtime, message });
            }
        };
        self.note(format_args!("exec {key} in {}: {} runs as pid {pid}", request.id, request.runtime.display()));
        self.hold(token);
        let deadline = request.timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        let exec = Exec {
            client: token,
            request,
            runtime_pid: Some(pid),
            stdout,
            stderr,
            pid_file,
            log_file,
            deadline,
            timed_out: false,
            ended: None,
        };
        self.execs.insert(key, exec);
    }

    fn read_exec(&mut self, key: u64, stream: Stream, chunk: &mut [u8]) {
        let Some(exec) = self.execs.get_mut(&key) else { return };
        let cap = exec.request.cap_bytes;
        let output = if stream == Stream::Stdout { &mut exec.stdout } else { &mut exec.stderr };
        let Some(pipe) = &output.pipe else { return };
        let n = match nix::unistd::read(pipe, chunk) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            Err(_) => 0,
        };
        if n == 0 {
            output.pipe = None;
            return self.finish_exec(key);
        }
        match output.write(&chunk[..n], cap) {
            Ok(()) if output.truncated => {
                // Output past the cap is never answered with, and a command that goes on
                // writing (`yes`) would run until its timeout, or for ever without one.
                // With its pipe closed, the next write ends it (SIGPIPE) if it is not killed
                // here first: its runtime, left alone, cleans up after it and exits.
                output.pipe = None;
                let process = fs::read_to_string(&exec.pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
                // The runtime, the process's parent, is not reaped: the pid is still the process's.
                if let Some(process) = process.filter(|&p| p > 0 && exec.runtime_pid.is_some()) {
                    let _ = kill(Pid::from_raw(process), Signal::SIGKILL);
                }
                self.note(format_args!("exec {key}: its {stream:?} passed {cap} bytes, killed"));
            }
            Ok(()) => {}
            Err(e) => {
                // The caller finds a short file; the process is not held up for it.
                output.truncated = true;
                output.written = cap;
                self.note(format_args!("exec {key}: writing its {stream:?}: {e}"));
            }
        }
    }

    /// Answers for an exec once the runtime has exited and its output ended (or stopped
    /// being waited for).
    fn finish_exec(&mut self, key: u64) {
        let Some(exec) = self.execs.get(&key) else { return };
        let Some((status, drain)) = exec.ended else { return };
        let drained = exec.stdout.pipe.is_none() && exec.stderr.pipe.is_none();
        if !drained && Instant::now() < drain {
            return;
        }
        let exec = self.execs.remove(&key).expect("looked up above");
        let started = exec.pid_file.exists();
        let log = fs::read(&exec.log_file).unwrap_or_default();
        for done in [&exec.pid_file, &exec.log_file] {
            let _ = fs::remove_file(done);
        }
        let exit_code = exit_code(status).map_or(-1, |(_, code)| code);
        let truncated = exec.stdout.truncated || exec.stderr.truncated;
        // Output means the process ran, though its runtime may have been killed for it before
        // writing the pid file.
        let response = if started || exec.timed_out || truncated {
            Response::Exec(ExecResult { exit_code, timed_out: exec.timed_out, truncated })
        } else {
            Response::Failed { kind: FailureKind::Runtime, message: failure_message(&log, b"", Described(status)) }
        };
        self.note(format_args!("exec {key} in {}: {response:?}", exec.request.id));
        self.reply_late(exec.client, response);
    }

    /// Kills runtimes and execs that overran (answered for when reaped), and records exits
    /// whose output took too long to end.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let mut overdue = Vec::new();
        for (pid, creating) in &mut self.creating {
            if !creating.killed && creating.deadline <= now {
                creating.killed = true;
                overdue.push((*pid, creating.request.id.clone()));
            }
        }
        for (pid, id) in overdue {
            // Not reaped yet, so the pid is still that runtime's.
            let _ = kill(pid, Signal::SIGKILL);
            self.note(format_args!("create {id}: runtime pid {pid} overran, killed"));
        }

        let mut timed_out = Vec::new();
        for (&key, exec) in &mut self.execs {
            let Some(runtime) = exec.runtime_pid else { continue };
            if !exec.timed_out && exec.deadline.is_some_and(|d| d <= now) {
                exec.timed_out = true;
                timed_out.push((key, runtime, exec.pid_file.clone()));
            }
        }
        for (key, runtime, pid_file) in timed_out {
            // The runtime, the process's parent, has not been reaped: the pid it wrote is
            // still the process's.
            stream::kill_exec(&pid_file, runtime);
            self.note(format_args!("exec {key}: overran its timeout, killed"));
        }
        let drained: Vec<u64> =
            self.execs.iter().filter(|(_, e)| e.ended.is_some_and(|(_, d)| d <= now)).map(|(&k, _)| k).collect();
        for key in drained {
            self.finish_exec(key);
        }

        let drained: Vec<u64> = self
            .stream_execs
            .iter()
            .filter(|(_, e)| e.ended.as_ref().is_some_and(|(_, d)| *d <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in drained {
            self.drain_or_finish_stream_exec(key);
        }

        while let Some(index) = self.exiting.iter().position(|e| e.deadline <= now) {
            let Exiting { pid, running, exit, .. } = self.exiting.swap_remove(index);
            self.note(format_args!("container {}: output still open after its exit", running.id));
            self.finish_exit(pid, running, exit);
        }
    }

    fn reply(&mut self, token: u64, response: Response) {
        let Some(client) = self.client(token) else { return };
        let mut line = serde_json::to_vec(&response).expect("responses serialize");
        line.push(b'\n');
        if let Err(e) = client.stream.write_all(&line) {
            self.note(format_args!("client gone before its answer {response:?}: {e}"));
            self.drop_client(token);
        }
    }

    fn note(&self, message: fmt::Arguments<'_>) {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let _ = writeln!(&self.log, "{}.{:03} {message}", since.as_secs(), since.subsec_millis());
    }
}

/// The stdio a runtime is started with.
struct ChildStdio {
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
}

impl ChildStdio {
    fn null() -> ChildStdio {
        ChildStdio { stdin: Stdio::null(), stdout: Stdio::null(), stderr: Stdio::null() }
    }
}

/// A pipe whose both ends close on exec: only what is handed to a child as its stdio is
/// inherited (the child's copy, made by dup2, does not carry the flag).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(pipe2(OFlag::O_CLOEXEC)?)
}

/// An exec's output file, truncated, and the pipe end its runtime writes to.
fn exec_output(path: &Path) -> io::Result<(ExecOutput, Stdio)> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    let (read, write) = pipe()?;
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((ExecOutput { pipe: Some(read), file, written: 0, truncated: false }, write.into()))
}

/// A listening socket only root can connect to, in place of whatever was at `path`.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Private from its creation: the monitor is single-threaded, so the umask is ours to change.
    let umask_before = umask(Mode::from_bits_truncate(0o177));
    let bound = socket_path::with_socket_path(path, |p| UnixListener::bind(p));
    umask(umask_before);
    let listener = bound?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The pty master a runtime sent over the console socket (with `SCM_RIGHTS`, as runc's
/// `--console-socket` does), once it has connected: it sends right after connecting, and the
/// wait for that is bounded.
fn receive_console(listener: &UnixListener) -> io::Result<OwnedFd> {
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CONSOLE_WAIT))?;
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let mut master = None;
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                // The first one is the master; any other is dropped (closed) here.
                if master.is_none() {
                    master = Some(fd);
                }
            }
        }
    }
    let master = master.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no descriptor in the message"))?;
    fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(master)
}

/// The pid and exit code (128 + signal for a signal) of an ended child.
fn exit_code(status: WaitStatus) -> Option<(Pid, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, code)),
        WaitStatus::Signaled(pid, signal, _) => Some((pid, 128 + signal as i32)),
        // Stops and continues are not asked for.
        _ => None,
    }
}

/// `exit status 1`, `signal SIGKILL`: for errors when a runtime left no message.
struct Described(WaitStatus);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WaitStatus::Exited(_, code) => write!(f, "exit status {code}"),
            WaitStatus::Signaled(_, signal, _) => write!(f, "signal {signal}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Whether `pid` is a live (or unreaped) child of this process.
fn is_our_child(pid: Pid) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The command name may hold spaces and parentheses; the fields after its last ')' do not.
    let Some((_, rest)) = stat.rsplit_once(')') else { return false };
    rest.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(std::process::id())
}

fn now_ns() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_children_are_told_apart() {
        let mut child = Command::new("/bin/sleep").arg("10").spawn().unwrap();
        assert!(is_our_child(Pid::from_raw(child.id() as i32)));
        assert!(!is_our_child(Pid::from_raw(1)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
