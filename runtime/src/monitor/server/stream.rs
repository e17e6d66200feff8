//! Connections that carry a process's stdio as frames ([`super::super::frame`]): an attach to
//! a container's stdio, or an exec whose stdio streams (kubectl exec, crictl exec -it).
//!
//! Everything here is non-blocking and buffered, as the rest of the loop: output for a client
//! waits in its buffer until its socket takes it, stdin waits until the pipe or pty does. A
//! slow attach client is dropped (the container's output must go on to its log); a slow exec
//! client holds its exec's output back instead, as nothing else reads it.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::{ConsoleSocket, Server, bind_private, exit_code, pipe, receive_console};
use crate::ContainerId;
use crate::monitor::frame::{Frame, MAX_PAYLOAD};
use crate::monitor::log::Stream;
use crate::monitor::protocol::{AttachRequest, ExecStreamRequest, FailureKind, Response};
use crate::monitor::{EXEC_DRAIN, socket_path};
use crate::oci::{PATH_ENV, failure_message, global_args};

/// An attach client with more output than this waiting is dropped.
const ATTACH_BACKLOG: usize = 4 << 20;
/// An exec's output is not read while its client has this much waiting.
const EXEC_BACKLOG: usize = 256 << 10;
/// A client's stdin is not read while this much waits for the process to take it.
const STDIN_BACKLOG: usize = 256 << 10;

/// What a framed connection is attached to.
pub(super) enum Streaming {
    Attach(Attachment),
    Exec(u64),
}

pub(super) struct Attachment {
    /// The container's stdio in `Server::io`.
    pub(super) io: u64,
    pub(super) stdin: bool,
    pub(super) stdout: bool,
    pub(super) stderr: bool,
}

/// Bytes for a process's stdin (a pipe's write end, or a pty master's duplicate) that wait
/// until it takes them.
#[derive(Default)]
pub(super) struct StdinSink {
    pub(super) fd: Option<OwnedFd>,
    pending: Vec<u8>,
    close_when_flushed: bool,
}

impl StdinSink {
    pub(super) fn new(fd: OwnedFd) -> io::Result<StdinSink> {
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(StdinSink { fd: Some(fd), ..StdinSink::default() })
    }

    pub(super) fn full(&self) -> bool {
        self.pending.len() >= STDIN_BACKLOG
    }

    pub(super) fn waiting(&self) -> bool {
        self.fd.is_some() && !self.pending.is_empty()
    }

    fn push(&mut self, data: &[u8]) {
        if self.fd.is_some() {
            self.pending.extend_from_slice(data);
            self.flush();
        }
    }

    /// Writes what the process takes now; a process that closed its stdin takes nothing more.
    pub(super) fn flush(&mut self) {
        let Some(fd) = &self.fd else { return };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.pending.clear();
                    self.fd = None;
                    return;
                }
            }
        }
        if self.close_when_flushed {
            self.fd = None;
        }
    }

    /// The process sees EOF once what is pending has been written.
    pub(super) fn close(&mut self) {
        self.close_when_flushed = true;
        self.flush();
    }
}

/// An exec whose stdio is a client's connection, keyed by a token of its own.
pub(super) struct StreamExec {
    pub(super) client: u64,
    id: ContainerId,
    /// Until reaped.
    pub(super) runtime_pid: Option<Pid>,
    /// A tty exec's process, which the runtime leaves behind (it runs detached): the
    /// monitor, its subreaper, reaps it.
    process_pid: Option<Pid>,
    /// stdout and stderr pipes, or the pty master once the runtime sent it.
    pub(super) outputs: Vec<(Option<OwnedFd>, Stream)>,
    pub(super) stdin: StdinSink,
    /// For a tty, until the runtime has sent the master.
    pub(super) console: Option<ConsoleSocket>,
    tty: bool,
    wants_stdin: bool,
    pid_file: PathBuf,
    log_file: PathBuf,
    /// How it ended, and until when its output is still read.
    pub(super) ended: Option<(Ending, Instant)>,
}

#[derive(Debug, Clone)]
pub(super) enum Ending {
    Exited(i32),
    /// The process never ran; the runtime's message.
    Failed(String),
}

impl StreamExec {
    pub(super) fn drained(&self) -> bool {
        self.console.is_none() && self.outputs.iter().all(|(fd, _)| fd.is_none())
    }

    pub(super) fn master(&self) -> Option<&OwnedFd> {
        self.outputs.first().filter(|_| self.tty).and_then(|(fd, _)| fd.as_ref())
    }
}

impl Server {
    pub(super) fn attach(&mut self, token: u64, request: AttachRequest) {
        let found = self.io.iter().find(|(_, io)| io.id == request.id && !io.exited).map(|(&key, io)| (key, io.tty));
        let Some((key, tty)) = found else {
            let message = format!("no running container {} with stdio here", request.id);
            return self.reply(token, Response::Failed { kind: FailureKind::NotFound, message });
        };
        self.reply(token, Response::Attached { tty });
        let attachment = Attachment {
            io: key,
            stdin: request.stdin,
            stdout: request.stdout,
            // A terminal has one output stream, logged and attached as stdout.
            stderr: request.stderr && !tty,
        };
        self.note(format_args!(
            "attach to {}: stdin {} stdout {} stderr {}",
            request.id, attachment.stdin, attachment.stdout, attachment.stderr
        ));
        self.stream_mode(token, Streaming::Attach(attachment));
    }

    pub(super) fn exec_stream(&mut self, token: u64, request: ExecStreamRequest) {
        if self.shutting_down {
            let message = "the monitor is shutting down".to_owned();
            return self.reply(token, Response::Failed { kind: FailureKind::ShuttingDown, message });
        }
        let key = self.token();
        let pid_file = self.dir.join(format!("exec-{key}.pid"));
        let log_file = self.dir.join(format!("exec-{key}.log"));
        let console_path = self.dir.join(format!("exec-{key}.console"));
        let prepared = (|| -> io::Result<_> {
            let mut outputs = Vec::new();
            let mut stdin = StdinSink::default();
            let (mut child_in, mut child_out, mut child_err) = (Stdio::null(), Stdio::null(), Stdio::null());
            let mut console = None;
            if request.tty {
                let listener = bind_private(&console_path)?;
                let (runtime_path, dir) = socket_path::reachable_path(&console_path)?;
                console = Some(ConsoleSocket { listener, path: console_path.clone(), runtime_path, _dir: dir });
            } else {
                for stream in [Stream::Stdout, Stream::Stderr] {
                    let (read, write) = pipe()?;
                    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
                    outputs.push((Some(read), stream));
                    match stream {
                        Stream::Stdout => child_out = write.into(),
                        Stream::Stderr => child_err = write.into(),
                    }
                }
                if request.stdin {
                    let (read, write) = pipe()?;
                    child_in = read.into();
                    stdin = StdinSink::new(write)?;
                }
            }
            Ok((outputs, stdin, console, [child_in, child_out, child_err]))
        })();
        let (outputs, stdin, console, [child_in, child_out, child_err]) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                let _ = fs::remove_file(&console_path);
                let message = format!("stdio for an exec in {}: {e}", request.id);
                return self.reply(token, Response::Failed { kind: FailureKind::Internal, message });
            }
        };
        let mut args: Vec<OsString> = global_args(&request.runtime_root, request.systemd_cgroup, &log_file);
        args.extend(["exec".into(), "--process".into(), request.process.clone().into()]);
        if let Some(console) = &console {
            // A runtime that stays would proxy the terminal to its own stdio: it detaches
            // instead, and the monitor holds the master and reaps the process.
            args.extend(["--detach".into(), "--tty".into(), "--console-socket".into()]);
            args.push(console.runtime_path.clone().into());
        }
        args.extend(["--pid-file".into(), pid_file.clone().into(), request.id.as_str().into()]);
        let spawned = Command::new(&request.runtime)
            .args(&args)
            .env_clear()
            .env("PATH", PATH_ENV)
            .stdin(child_in)
            .stdout(child_out)
            .stderr(child_err)
            .process_group(0)
            .spawn();
        let pid = match spawned {
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => {
                let _ = fs::remove_file(&console_path);
                let message = format!("cannot run {}: {e}", request.runtime.display());
                return self.reply(token, Response::Failed { kind: FailureKind::Runtime, message });
            }
        };
        self.note(format_args!(
            "exec {key} in {} (streaming, tty {}, stdin {}): {} runs as pid {pid}",
            request.id,
            request.tty,
            request.stdin,
            request.runtime.display()
        ));
        self.reply(token, Response::ExecStarted);
        let exec = StreamExec {
            client: token,
            id: request.id,
            runtime_pid: Some(pid),
            process_pid: None,
            outputs,
            stdin,
            console,
            tty: request.tty,
            wants_stdin: request.stdin,
            pid_file,
            log_file,
            ended: None,
        };
        self.stream_execs.insert(key, exec);
        self.stream_mode(token, Streaming::Exec(key));
    }

    /// Switches a client's connection to frames; what it sent after its request line is
    /// already its first frames.
    fn stream_mode(&mut self, token: u64, streaming: Streaming) {
        let Some(client) = self.client(token) else { return self.client_gone(Some(streaming)) };
        if let Err(e) = client.stream.set_nonblocking(true) {
            self.note(format_args!("client {token}: {e}"));
            return self.drop_client(token);
        }
        client.streaming = Some(streaming);
        self.read_frames(token);
    }

    /// Reads and acts on what a framed client sent, and writes what waits for it.
    pub(super) fn serve_stream(&mut self, token: u64) {
        self.flush_client(token);
        let Some(client) = self.client(token) else { return };
        if client.closing {
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Some(client) = self.client(token) else { return };
            if client.buf.len() > 2 * MAX_PAYLOAD {
                break;
            }
            match client.stream.read(&mut chunk) {
                Ok(0) => return self.drop_client(token),
                Ok(n) => client.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return self.drop_client(token),
            }
        }
        self.read_frames(token);
    }

    fn read_frames(&mut self, token: u64) {
        loop {
            if self.input_held(token) {
                return;
            }
            let Some(client) = self.client(token) else { return };
            let (frame, used) = match Frame::decode(&client.buf) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(e) => {
                    self.note(format_args!("client {token}: {e}; dropped"));
                    return self.drop_client(token);
                }
            };
            client.buf.drain(..used);
            self.client_frame(token, frame);
        }
    }

    /// Stdin took what waited: clients held back for it go on with the frames they sent.
    pub(super) fn resume_stdin_writers(&mut self) {
        let held: Vec<u64> =
            self.clients.iter().filter(|c| c.streaming.is_some() && !c.buf.is_empty()).map(|c| c.token).collect();
        for token in held {
            self.read_frames(token);
        }
    }

    /// Whether a client's input waits: the stdin it writes to has all it may hold, or its
    /// exec's terminal has not come yet. The client is then not read.
    pub(super) fn input_held(&self, token: u64) -> bool {
        let Some(client) = self.clients.iter().find(|c| c.token == token) else { return false };
        match &client.streaming {
            Some(Streaming::Attach(a)) => self.io.get(&a.io).is_some_and(|io| io.stdin.full()),
            Some(Streaming::Exec(key)) => {
                self.stream_execs.get(key).is_some_and(|e| e.stdin.full() || e.console.is_some())
            }
            None => false,
        }
    }

    fn client_frame(&mut self, token: u64, frame: Frame) {
        let Some(client) = self.clients.iter_mut().find(|c| c.token == token) else { return };
        match (&mut client.streaming, frame) {
            (Some(Streaming::Attach(a)), Frame::Stdin(data)) if a.stdin => {
                if let Some(io) = self.io.get_mut(&a.io) {
                    io.stdin.push(&data);
                }
            }
            (Some(Streaming::Attach(a)), Frame::CloseStdin) if a.stdin => {
                a.stdin = false;
                let key = a.io;
                self.attach_stdin_ended(key);
            }
            (Some(Streaming::Attach(a)), Frame::Resize { width, height }) => {
                let master = self.io.get(&a.io).filter(|io| io.tty).and_then(|io| io.streams.first());
                if let Some(fd) = master.and_then(|s| s.fd.as_ref()) {
                    resize(fd, width, height);
                }
            }
            (Some(Streaming::Exec(key)), Frame::Stdin(data)) => {
                if let Some(exec) = self.stream_execs.get_mut(key) {
                    exec.stdin.push(&data);
                }
            }
            (Some(Streaming::Exec(key)), Frame::CloseStdin) => {
                if let Some(exec) = self.stream_execs.get_mut(key) {
                    if exec.tty {
                        // A terminal has no end of input but the ^D its line discipline knows.
                        exec.stdin.push(&[4]);
                    } else {
                        exec.stdin.close();
                    }
                }
            }
            (Some(Streaming::Exec(key)), Frame::Resize { width, height }) => {
                if let Some(fd) = self.stream_execs.get(key).and_then(StreamExec::master) {
                    resize(fd, width, height);
                }
            }
            // Stdin of a client that did not ask for it, or frames only the monitor sends.
            (_, frame) => self.note(format_args!("client {token}: ignored {:?}", kind_of(&frame))),
        }
    }

    /// An attach with stdin has ended its input: a container with `stdin_once` sees EOF.
    fn attach_stdin_ended(&mut self, key: u64) {
        if let Some(io) = self.io.get_mut(&key).filter(|io| io.stdin_once && !io.tty) {
            io.stdin.close();
            let id = io.id.clone();
            self.note(format_args!("container {id}: stdin closed after its first attach (stdin_once)"));
        }
    }

    /// What a framed client leaves behind when it goes: an exec it ran is killed.
    pub(super) fn client_gone(&mut self, streaming: Option<Streaming>) {
        match streaming {
            Some(Streaming::Attach(a)) if a.stdin => self.attach_stdin_ended(a.io),
            Some(Streaming::Exec(key)) => {
                let Some(exec) = self.stream_execs.get(&key) else { return };
                if let Some(process) = exec.process_pid {
                    let _ = kill(process, Signal::SIGKILL);
                } else if let Some(runtime) = exec.runtime_pid {
                    kill_exec(&exec.pid_file, runtime);
                } else {
                    return;
                }
                self.note(format_args!("exec {key} in {}: its client went away, killed", exec.id));
            }
            _ => {}
        }
    }

    /// Drops a framed client that is still here (after its last read).
    pub(super) fn drop_streaming_client(&mut self, token: u64) {
        if self.clients.iter().any(|c| c.token == token && c.streaming.is_some()) {
            self.drop_client(token);
        }
    }

    /// An exec's drain time is up: it ends, unless its output was held back for a slow
    /// client meanwhile: then its output is not done, and it gets another drain period once
    /// the client has caught up, so that nothing of it is lost.
    pub(super) fn drain_or_finish_stream_exec(&mut self, key: u64) {
        let Some(exec) = self.stream_execs.get(&key) else { return };
        if !exec.drained() && !self.exec_output_wanted(exec) {
            if let Some(exec) = self.stream_execs.get_mut(&key) {
                if let Some((_, drain)) = exec.ended.as_mut() {
                    *drain = Instant::now() + EXEC_DRAIN;
                }
            }
            return;
        }
        self.finish_stream_exec(key);
    }

    /// Writes what waits for a framed client; one whose process has ended is let go once all
    /// is written.
    pub(super) fn flush_client(&mut self, token: u64) {
        let Some(client) = self.client(token) else { return };
        while !client.out.is_empty() {
            match client.stream.write(&client.out) {
                Ok(0) => return self.drop_client(token),
                Ok(n) => drop(client.out.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.drop_client(token),
            }
        }
        if client.closing {
            self.clients.retain(|c| c.token != token);
        }
    }

    /// Queues frames for a client and writes what its socket takes now.
    fn send(&mut self, token: u64, frames: impl FnOnce(&mut Vec<u8>)) {
        let Some(client) = self.client(token) else { return };
        frames(&mut client.out);
        self.flush_client(token);
    }

    /// A container's output, for the clients attached to its stdio that want that stream.
    pub(super) fn fan_out(&mut self, key: u64, stream: Stream, data: &[u8]) {
        let wanted = |a: &Attachment| a.io == key && if stream == Stream::Stdout { a.stdout } else { a.stderr };
        let tokens: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| !c.closing && matches!(&c.streaming, Some(Streaming::Attach(a)) if wanted(a)))
            .map(|c| c.token)
            .collect();
        let make = if stream == Stream::Stdout { Frame::Stdout } else { Frame::Stderr };
        for token in tokens {
            self.send(token, |out| Frame::data(data, make, out));
            if self.client(token).is_some_and(|c| c.out.len() > ATTACH_BACKLOG) {
                self.note(format_args!("attach client {token} takes no output; dropped"));
                self.drop_client(token);
            }
        }
    }

    /// A container's output has ended with its exit: its attach clients get the exit code
    /// and are let go.
    pub(super) fn attached_exit(&mut self, key: u64, exit_code: i32) {
        let tokens: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| matches!(&c.streaming, Some(Streaming::Attach(a)) if a.io == key))
            .map(|c| c.token)
            .collect();
        for token in tokens {
            if let Some(client) = self.client(token) {
                client.closing = true;
            }
            self.send(token, |out| Frame::Exit(exit_code).encode(out));
        }
    }

    /// Whether an exec's output is read now: not while its client has too much waiting.
    pub(super) fn exec_output_wanted(&self, exec: &StreamExec) -> bool {
        self.clients.iter().find(|c| c.token == exec.client).is_none_or(|c| c.out.len() < EXEC_BACKLOG)
    }

    pub(super) fn read_stream_exec(&mut self, key: u64, index: usize, chunk: &mut [u8]) {
        let Some(exec) = self.stream_execs.get_mut(&key) else { return };
        let Some((Some(fd), stream)) = exec.outputs.get(index) else { return };
        let stream = *stream;
        let n = match nix::unistd::read(fd, chunk) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            // EIO: the pty's every slave is closed.
            Err(_) => 0,
        };
        if n == 0 {
            exec.outputs[index].0 = None;
            if exec.tty {
                exec.stdin.fd = None;
            }
            return self.finish_stream_exec(key);
        }
        let client = exec.client;
        let make = if stream == Stream::Stdout { Frame::Stdout } else { Frame::Stderr };
        self.send(client, |out| Frame::data(&chunk[..n], make, out));
    }

    /// The runtime connected to an exec's console socket: its pty master is the exec's stdio.
    pub(super) fn exec_console(&mut self, key: u64) {
        let Some(exec) = self.stream_execs.get_mut(&key) else { return };
        let Some(console) = exec.console.take() else { return };
        let _ = fs::remove_file(&console.path);
        match receive_console(&console.listener) {
            Ok(master) => {
                if exec.wants_stdin {
                    match master.try_clone().and_then(StdinSink::new) {
                        Ok(sink) => exec.stdin = sink,
                        Err(e) => {
                            let id = exec.id.clone();
                            self.note(format_args!("exec {key} in {id}: its terminal's input: {e}"));
                        }
                    }
                }
                let Some(exec) = self.stream_execs.get_mut(&key) else { return };
                exec.outputs.push((Some(master), Stream::Stdout));
                // What its client sent meanwhile (a resize, input) applies now.
                let client = exec.client;
                self.read_frames(client);
            }
            Err(e) => {
                let id = exec.id.clone();
                self.note(format_args!("exec {key} in {id}: no terminal from the runtime: {e}"));
            }
        }
    }

    /// A streaming exec's runtime, or a tty exec's process, was reaped.
    pub(super) fn stream_exec_reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        let owner = self.stream_execs.iter().find(|(_, e)| e.runtime_pid == Some(pid) || e.process_pid == Some(pid));
        let Some((&key, exec)) = owner else { return false };
        let code = exit_code(status).map_or(-1, |(_, code)| code);
        if exec.process_pid == Some(pid) {
            self.stream_exec_ended(key, Ending::Exited(code));
            return true;
        }
        let (tty, pid_file, log_file) = (exec.tty, exec.pid_file.clone(), exec.log_file.clone());
        let started = pid_file.exists();
        let failed =
            || Ending::Failed(failure_message(&fs::read(&log_file).unwrap_or_default(), b"", super::Described(status)));
        let exec = self.stream_execs.get_mut(&key).expect("found above");
        exec.runtime_pid = None;
        if !tty {
            // It ran the process to its end and exited with its status.
            let ending = if started { Ending::Exited(code) } else { failed() };
            self.stream_exec_ended(key, ending);
            return true;
        }
        let process = fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()).filter(|&p| p > 0);
        match process {
            Some(process) if code == 0 => {
                // The master came before the runtime exited.
                self.exec_console(key);
                let process = Pid::from_raw(process);
                let unclaimed = self.unclaimed.remove(&process);
                match unclaimed {
                    Some(u) if !super::is_our_child(process) => {
                        self.stream_exec_ended(key, Ending::Exited(u.exit.exit_code));
                    }
                    _ => {
                        let Some(exec) = self.stream_execs.get_mut(&key) else { return true };
                        exec.process_pid = Some(process);
                        // Its client may have gone while the runtime ran.
                        let client = exec.client;
                        if !self.clients.iter().any(|c| c.token == client) {
                            let _ = kill(process, Signal::SIGKILL);
                        }
                    }
                }
            }
            _ => {
                if let Some(console) = self.stream_execs.get_mut(&key).and_then(|e| e.console.take()) {
                    let _ = fs::remove_file(&console.path);
                }
                self.stream_exec_ended(key, failed());
            }
        }
        true
    }

    fn stream_exec_ended(&mut self, key: u64, ending: Ending) {
        if let Some(exec) = self.stream_execs.get_mut(&key) {
            exec.process_pid = None;
            exec.ended = Some((ending, Instant::now() + EXEC_DRAIN));
        }
        self.finish_stream_exec(key);
    }

    /// Sends the exit code (or why the process could not run) once the runtime has exited and
    /// the output ended or stopped being waited for.
    pub(super) fn finish_stream_exec(&mut self, key: u64) {
        let Some(exec) = self.stream_execs.get(&key) else { return };
        let Some((_, drain)) = &exec.ended else { return };
        if !exec.drained() && Instant::now() < *drain {
            return;
        }
        let exec = self.stream_execs.remove(&key).expect("looked up above");
        for done in [&exec.pid_file, &exec.log_file] {
            let _ = fs::remove_file(done);
        }
        let frame = match exec.ended.expect("ended").0 {
            Ending::Exited(code) => Frame::Exit(code),
            Ending::Failed(message) => Frame::Error(message),
        };
        self.note(format_args!("exec {key} in {}: {frame:?}", exec.id));
        if let Some(client) = self.client(exec.client) {
            client.closing = true;
        }
        self.send(exec.client, |out| frame.encode(out));
    }
}

/// Kills an exec's process (by the pid its runtime wrote: it runs in the container's session)
/// and the runtime's own group.
pub(super) fn kill_exec(pid_file: &std::path::Path, runtime: Pid) {
    let process = fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
    if let Some(process) = process.filter(|&p| p > 0) {
        let _ = kill(Pid::from_raw(process), Signal::SIGKILL);
    }
    let _ = killpg(runtime, Signal::SIGKILL);
}

fn resize(master: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

fn kind_of(frame: &Frame) -> &'static str {
    match frame {
        Frame::Stdin(_) => "stdin",
        Frame::Stdout(_) => "stdout",
        Frame::Stderr(_) => "stderr",
        Frame::CloseStdin => "close-stdin",
        Frame::Resize { .. } => "resize",
        Frame::Exit(_) => "exit",
        Frame::Error(_) => "error",
    }
}
