//! The monitor process itself: `crisp-monitor DIR`.
//!
//! One thread, one loop: poll(2) on the listening socket, a signalfd for SIGCHLD and the
//! clients. Children are reaped only by `waitpid(-1, WNOHANG)` in that loop: runtimes it runs,
//! container inits that reparent to it (it is their subreaper), and whatever orphans they
//! leave. A per-child wait anywhere would race that and lose exit statuses.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid};

use super::protocol::{FailureKind, MAX_LINE, PROTOCOL, Request, Response};
use super::{CREATE_TIMEOUT, CreateRequest, ExitRecord, LOG, PID_FILE, SOCKET};
use crate::ContainerId;
use crate::oci::{PATH_ENV, failure_message, global_args};

/// How long the exit of a pid nobody claimed is kept: a container init can be reaped before
/// the runtime that created it has exited and its pid file been read.
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);
/// A client that does not take its answer within this is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A client connection. Requests on one connection are answered in order: while a create is
/// running for it, its next lines wait in `buf`.
struct Client {
    token: u64,
    stream: UnixStream,
    buf: Vec<u8>,
    busy: bool,
}

/// A `runtime create` the monitor is running, keyed by the runtime's pid.
struct Creating {
    client: u64,
    request: CreateRequest,
    pid_file: PathBuf,
    log_file: PathBuf,
    deadline: Instant,
    killed: bool,
}

/// A container init the monitor waits for, keyed by its pid.
struct Running {
    id: ContainerId,
    exit_file: PathBuf,
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
    next_token: u64,
    creating: HashMap<Pid, Creating>,
    running: HashMap<Pid, Running>,
    unclaimed: HashMap<Pid, Unclaimed>,
    shutting_down: bool,
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
        match fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(start_error(socket.display(), e)),
        }
        let listener = super::socket_path::with_socket_path(&socket, |p| UnixListener::bind(p))
            .map_err(|e| start_error(socket.display(), e))?;
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
            .map_err(|e| start_error(socket.display(), e))?;
        listener.set_nonblocking(true).map_err(|e| start_error(socket.display(), e))?;
        let pid = std::process::id();
        let pid_path = dir.join(PID_FILE);
        write_atomic(&pid_path, format!("{pid}\n").as_bytes()).map_err(|e| start_error(pid_path.display(), e))?;

        let server = Server {
            dir,
            log,
            listener,
            signals,
            clients: Vec::new(),
            next_token: 0,
            creating: HashMap::new(),
            running: HashMap::new(),
            unclaimed: HashMap::new(),
            shutting_down: false,
        };
        server.note(format_args!("serving {} as pid {pid}", server.dir.display()));
        report(&format!("ready {pid}"));
        dup2_stdout(&null).map_err(|e| start_error("stdout", e))?;
        Ok(server)
    }

    fn run(mut self) {
        while !(self.shutting_down && self.running.is_empty() && self.creating.is_empty()) {
            let waiting: Vec<u64> = self.clients.iter().filter(|c| !c.busy).map(|c| c.token).collect();
            let (listener_ready, signals_ready, readable) = {
                let mut fds = vec![
                    PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                ];
                let clients = self.clients.iter().filter(|c| !c.busy);
                fds.extend(clients.map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)));
                match poll(&mut fds, self.poll_timeout()) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        self.note(format_args!("poll: {e}; exiting"));
                        break;
                    }
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                let readable: Vec<u64> =
                    waiting.iter().zip(&fds[2..]).filter(|(_, fd)| ready(fd)).map(|(&t, _)| t).collect();
                (ready(&fds[0]), ready(&fds[1]), readable)
            };
            if signals_ready {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                self.reap();
            }
            if listener_ready {
                self.accept();
            }
            for token in readable {
                self.read_client(token);
            }
            self.enforce_deadlines();
        }
        let _ = fs::remove_file(self.dir.join(SOCKET));
        let _ = fs::remove_file(self.dir.join(PID_FILE));
        self.note(format_args!("exiting"));
    }

    /// Until the earliest create deadline; forever when none is pending.
    fn poll_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let next =
            self.creating.values().filter(|c| !c.killed).map(|c| c.deadline.saturating_duration_since(now)).min();
        // Rounded up so the loop does not spin for the last sub-millisecond.
        next.map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
        })
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
            let (pid, exit_code) = match status {
                WaitStatus::Exited(pid, code) => (pid, code),
                WaitStatus::Signaled(pid, signal, _) => (pid, 128 + signal as i32),
                // Stops and continues are not asked for.
                _ => continue,
            };
            let exit = ExitRecord { exit_code, finished_at_ns: now_ns() };
            if let Some(creating) = self.creating.remove(&pid) {
                self.finish_create(creating, status);
            } else if let Some(running) = self.running.remove(&pid) {
                self.record_exit(pid, &running, exit);
            } else {
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
                    self.next_token += 1;
                    self.clients.push(Client { token: self.next_token, stream, buf: Vec::new(), busy: false });
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

    fn client(&mut self, token: u64) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.token == token)
    }

    fn drop_client(&mut self, token: u64) {
        self.clients.retain(|c| c.token != token);
    }

    fn read_client(&mut self, token: u64) {
        let Some(client) = self.client(token) else { return };
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
                let running = self.running.len() + self.creating.len();
                self.note(format_args!("shutdown asked; {running} containers left"));
                self.reply(token, Response::ShuttingDown { running });
            }
            Request::Create(request) => self.create(token, request),
        }
    }

    fn create(&mut self, token: u64, request: CreateRequest) {
        if self.shutting_down {
            let message = "the monitor is shutting down".to_owned();
            return self.reply(token, Response::Failed { kind: FailureKind::ShuttingDown, message });
        }
        let taken = self.creating.values().any(|c| c.request.id == request.id)
            || self.running.values().any(|r| r.id == request.id);
        if taken {
            let message = format!("container {} is already here", request.id);
            return self.reply(token, Response::Failed { kind: FailureKind::BadRequest, message });
        }
        let pid_file = self.dir.join(format!("{}.pid", request.id));
        let log_file = self.dir.join(format!("{}.create.log", request.id));
        for stale in [&pid_file, &log_file] {
            let _ = fs::remove_file(stale);
        }
        let mut args: Vec<OsString> = global_args(&request.runtime_root, request.systemd_cgroup, &log_file);
        args.extend(["create".into(), "--bundle".into(), request.bundle.clone().into(), "--pid-file".into()]);
        args.extend([pid_file.clone().into(), request.id.as_str().into()]);
        // The runtime's stdio becomes the container's: /dev/null until containers get logs.
        let spawned = Command::new(&request.runtime)
            .args(&args)
            .env_clear()
            .env("PATH", PATH_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        // The Child handle is dropped unwaited: the loop's waitpid(-1) reaps it.
        let pid = match spawned {
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => {
                let message = format!("cannot run {}: {e}", request.runtime.display());
                self.note(format_args!("create {}: {message}", request.id));
                return self.reply(token, Response::Failed { kind: FailureKind::Runtime, message });
            }
        };
        self.note(format_args!("create {}: {} runs as pid {pid}", request.id, request.runtime.display()));
        if let Some(client) = self.client(token) {
            client.busy = true;
        }
        let deadline = Instant::now() + CREATE_TIMEOUT;
        self.creating.insert(pid, Creating { client: token, request, pid_file, log_file, deadline, killed: false });
    }

    /// The runtime has exited: answer its client with the init pid or the runtime's error.
    fn finish_create(&mut self, creating: Creating, status: WaitStatus) {
        let Creating { client, request, pid_file, log_file, killed, .. } = creating;
        let log = fs::read(&log_file).unwrap_or_default();
        let pid_text = fs::read_to_string(&pid_file);
        for done in [&pid_file, &log_file] {
            let _ = fs::remove_file(done);
        }
        let response = match status {
            _ if killed => Response::Failed {
                kind: FailureKind::Runtime,
                message: format!("no answer within {}s, killed", CREATE_TIMEOUT.as_secs()),
            },
            WaitStatus::Exited(_, 0) => match pid_text.map(|t| t.trim().parse::<i32>()) {
                Ok(Ok(init)) if init > 0 => {
                    self.adopt(Pid::from_raw(init), &request);
                    Response::Created { pid: init as u32 }
                }
                Ok(_) => Response::Failed {
                    kind: FailureKind::Internal,
                    message: format!("{} holds no pid", pid_file.display()),
                },
                Err(e) => Response::Failed {
                    kind: FailureKind::Internal,
                    message: format!("runtime exited 0 but {}: {e}", pid_file.display()),
                },
            },
            _ => {
                Response::Failed { kind: FailureKind::Runtime, message: failure_message(&log, b"", Described(status)) }
            }
        };
        match &response {
            Response::Created { pid } => self.note(format_args!("create {}: init pid {pid}", request.id)),
            Response::Failed { message, .. } => self.note(format_args!("create {}: failed: {message}", request.id)),
            _ => {}
        }
        self.reply(client, response);
        if let Some(c) = self.client(client) {
            c.busy = false;
        }
        self.serve_lines(client);
    }

    /// Starts waiting for a new container's init, or records its exit at once if it has
    /// already been reaped.
    fn adopt(&mut self, init: Pid, request: &CreateRequest) {
        let running = Running { id: request.id.clone(), exit_file: request.exit_file.clone() };
        // A reaped pid of the same number is this init only if no child of ours has that pid
        // now; otherwise the number was reused and the init is alive (or not yet reaped).
        let unclaimed = self.unclaimed.remove(&init);
        match unclaimed {
            Some(unclaimed) if !is_our_child(init) => self.record_exit(init, &running, unclaimed.exit),
            _ => {
                self.running.insert(init, running);
            }
        }
    }

    fn record_exit(&mut self, pid: Pid, running: &Running, exit: ExitRecord) {
        let bytes = serde_json::to_vec(&exit).expect("exit records serialize");
        match write_atomic(&running.exit_file, &bytes) {
            Ok(()) => self.note(format_args!("container {} (pid {pid}) exited: {}", running.id, exit.exit_code)),
            Err(e) => self.note(format_args!(
                "container {} (pid {pid}) exited: {}, but {}: {e}",
                running.id,
                exit.exit_code,
                running.exit_file.display()
            )),
        }
    }

    /// Kills runtimes that overran; they are answered for when reaped.
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

/// Writes a file so that readers see the old content or all the new, also after a crash:
/// temp file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
        assert!(write_atomic(&dir.path().join("absent/exit.json"), b"x").is_err());
    }

    #[test]
    fn our_children_are_told_apart() {
        let mut child = Command::new("/bin/sleep").arg("10").spawn().unwrap();
        assert!(is_our_child(Pid::from_raw(child.id() as i32)));
        assert!(!is_our_child(Pid::from_raw(1)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
