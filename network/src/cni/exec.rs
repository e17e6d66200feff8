//! Running one plugin binary: its parameters in the environment of that command only, its
//! configuration on stdin, its output read with caps, and a deadline after which its whole
//! process group is killed.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command as Process;

use super::error::{CniError, Command, ErrorObject, PluginFailure};

/// Results are a few KiB; more is a broken plugin.
const MAX_STDOUT: usize = 1 << 20;
/// Enough of stderr to explain a failure.
const MAX_STDERR: usize = 4096;
/// A plugin binary being replaced (or a test writing one) is busy for a moment.
const SPAWN_ATTEMPTS: u32 = 5;

/// A plugin binary: its `type` and where it was found.
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    pub name: String,
    pub path: PathBuf,
}

/// The attachment parameters ADD, DEL and CHECK pass.
pub(crate) struct AttachmentParams<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub args: &'a str,
}

#[derive(Debug, Clone)]
pub(crate) struct Executor {
    cni_path: OsString,
    timeout: Duration,
}

impl Executor {
    pub fn new(plugin_dirs: &[PathBuf], timeout: Duration) -> Executor {
        let cni_path = std::env::join_paths(plugin_dirs).unwrap_or_default();
        Executor { cni_path, timeout }
    }

    pub fn with_timeout(self, timeout: Duration) -> Executor {
        Executor { timeout, ..self }
    }

    /// Runs `plugin` with `command` and `stdin`; its stdout on success.
    pub async fn run(
        &self,
        plugin: &Plugin,
        command: Command,
        params: Option<&AttachmentParams<'_>>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, CniError> {
        let exec_err = |source| CniError::Exec { plugin: plugin.name.clone(), command, source };
        let mut child = self.spawn(plugin, command, params).await.map_err(exec_err)?;
        let mut group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw));
        let (mut input, output, errors) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let io = async {
            let write = async {
                if let Some(input) = input.as_mut() {
                    match input.write_all(stdin).await {
                        // A plugin that does not read its config (VERSION) may be gone already.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                        other => other?,
                    }
                }
                drop(input);
                Ok::<_, io::Error>(())
            };
            let (written, stdout, stderr) =
                tokio::join!(write, read_capped(output, MAX_STDOUT), read_capped(errors, MAX_STDERR));
            written?;
            let (stdout, stderr) = (stdout?, stderr?);
            Ok::<_, io::Error>((child.wait().await?, stdout, stderr))
        };
        let (status, stdout, stderr) = match tokio::time::timeout(self.timeout, io).await {
            Ok(done) => {
                // Reaped (or failed before): its pid may name someone else's group from now on.
                group.0 = None;
                done.map_err(exec_err)?
            }
            Err(_) => return Err(CniError::Timeout { plugin: plugin.name.clone(), command, timeout: self.timeout }),
        };
        if status.success() {
            if stdout.truncated {
                let reason = format!("more than {MAX_STDOUT} bytes on stdout");
                return Err(CniError::BadOutput { plugin: plugin.name.clone(), command, reason });
            }
            return Ok(stdout.bytes);
        }
        let reported = (!stdout.truncated).then(|| serde_json::from_slice::<ErrorObject>(&stdout.bytes).ok()).flatten();
        let failure = match reported {
            Some(ErrorObject { code, msg, details }) => PluginFailure::Reported { code, msg, details },
            None => PluginFailure::Unstructured {
                status: status.to_string(),
                stdout: stdout.text(MAX_STDERR),
                stderr: stderr.text(MAX_STDERR),
            },
        };
        Err(CniError::Plugin { plugin: plugin.name.clone(), command, failure })
    }

    async fn spawn(
        &self,
        plugin: &Plugin,
        command: Command,
        params: Option<&AttachmentParams<'_>>,
    ) -> io::Result<tokio::process::Child> {
        let mut process = Process::new(&plugin.path);
        // What the daemon inherited under CNI_ must not reach plugins as if crisp had set it.
        for (key, _) in std::env::vars_os() {
            if key.as_encoded_bytes().starts_with(b"CNI_") {
                process.env_remove(key);
            }
        }
        process.env("CNI_COMMAND", command.as_str()).env("CNI_PATH", &self.cni_path);
        if let Some(p) = params {
            process
                .env("CNI_CONTAINERID", p.container_id)
                .env("CNI_NETNS", p.netns)
                .env("CNI_IFNAME", p.ifname)
                .env("CNI_ARGS", p.args);
        }
        process
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own group, so that a deadline also ends the plugins it delegated to.
            .process_group(0);
        let mut attempt = 1;
        loop {
            match process.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < SPAWN_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Kills the plugin's process group unless it was reaped: on a deadline or a dropped call.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    fn text(&self, cap: usize) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(cap)]).into_owned();
        if self.truncated || self.bytes.len() > cap {
            text.push_str("...");
        }
        text
    }
}

/// Reads to the end, keeping the first `cap` bytes: a chatty plugin must not block on a full pipe.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, cap: usize) -> io::Result<Captured> {
    let mut captured = Captured { bytes: Vec::new(), truncated: false };
    let Some(mut reader) = reader else { return Ok(captured) };
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(captured);
        }
        let room = cap - captured.bytes.len();
        captured.bytes.extend_from_slice(&buf[..n.min(room)]);
        captured.truncated |= n > room;
    }
}
