//! The OCI runtime CLI (runc, crun): start, kill, delete and state of containers that a monitor
//! created.
//!
//! Every call passes `--log <file> --log-format json`: both runtimes write their failure there as
//! `{"level":"error","msg":...}`, which is the message a user needs, where stderr may hold
//! Go panics, usage text or nothing.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::{CgroupManager, ContainerId, Handler, HandlerName};

/// How long one runtime command may take before it is killed, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Runtime children get this and nothing else from the daemon's environment.
pub(crate) const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The most of a runtime's stderr kept in an error when its log says nothing.
const STDERR_CAP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciOp {
    Start,
    Kill,
    Delete,
    State,
    Update,
}

impl fmt::Display for OciOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OciOp::Start => "start",
            OciOp::Kill => "kill",
            OciOp::Delete => "delete",
            OciOp::State => "state",
            OciOp::Update => "update",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("runtime handler {handler}: {op} {id}: {kind}")]
pub struct OciError {
    pub handler: HandlerName,
    pub op: OciOp,
    pub id: ContainerId,
    pub kind: OciErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum OciErrorKind {
    /// The runtime ran and refused; the message is its own.
    #[error("{0}")]
    Failed(String),
    #[error("cannot run {}: {source}", path.display())]
    Spawn { path: PathBuf, source: io::Error },
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("unreadable state output: {0}")]
    BadState(serde_json::Error),
    #[error("state directory {}: {source}", path.display())]
    Root { path: PathBuf, source: io::Error },
}

/// A container's status as `runc state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OciStatus {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciState {
    pub status: OciStatus,
    /// The init's pid on the host; none once it has stopped (the runtime says 0).
    pub pid: Option<u32>,
}

#[derive(Deserialize)]
struct RawState {
    status: OciStatus,
    #[serde(default)]
    pid: i64,
}

/// One runtime handler's binary with its own state root.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    handler: Handler,
    root: PathBuf,
    systemd_cgroup: bool,
    timeout: Duration,
}

impl OciRuntime {
    /// `root`: the runtime's --root state dir (e.g. /run/crisp/runc/<handler>).
    pub fn new(handler: Handler, root: PathBuf, cgroup_manager: CgroupManager) -> OciRuntime {
        let systemd_cgroup = cgroup_manager == CgroupManager::Systemd;
        OciRuntime { handler, root, systemd_cgroup, timeout: DEFAULT_TIMEOUT }
    }

    /// Sets how long one command (a monitor's `create` too) may run before it is killed.
    pub fn with_timeout(self, timeout: Duration) -> OciRuntime {
        OciRuntime { timeout, ..self }
    }

    pub fn handler(&self) -> &Handler {
        &self.handler
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What a monitor needs to create `id` with this runtime.
    pub fn create_request(
        &self,
        id: ContainerId,
        bundle: PathBuf,
        exit_file: PathBuf,
    ) -> crate::monitor::CreateRequest {
        crate::monitor::CreateRequest {
            id,
            runtime: self.handler.path.clone(),
            runtime_root: self.root.clone(),
            systemd_cgroup: self.systemd_cgroup,
            bundle,
            exit_file,
            timeout_ms: Some(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    pub async fn start(&self, id: &ContainerId) -> Result<(), OciError> {
        self.run(OciOp::Start, id, &[id.as_str()]).await.map(drop)
    }

    /// Signals the container's init (`all`: every process in it). A container that has stopped
    /// or is gone is not an error: the signal has nothing left to do.
    pub async fn kill(&self, id: &ContainerId, signal: i32, all: bool) -> Result<(), OciError> {
        let signal = signal.to_string();
        let mut args = Vec::new();
        if all {
            args.push("--all");
        }
        args.extend([id.as_str(), &signal]);
        let Err(e) = self.run(OciOp::Kill, id, &args).await else { return Ok(()) };
        match self.state(id).await {
            Ok(None | Some(OciState { status: OciStatus::Stopped, .. })) => Ok(()),
            _ => Err(e),
        }
    }

    /// Sets new cgroup limits on a created or running container.
    pub async fn update(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), OciError> {
        let json = serde_json::to_vec(resources).expect("resources serialize");
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|source| self.error(OciOp::Update, id, OciErrorKind::Root { path: self.root.clone(), source }))?;
        let file = self.root.join(format!(".crisp-update-{}.json", &ContainerId::random().as_str()[..16]));
        tokio::fs::write(&file, json)
            .await
            .map_err(|source| self.error(OciOp::Update, id, OciErrorKind::Root { path: file.clone(), source }))?;
        let path = file.to_string_lossy().into_owned();
        let result = self.run(OciOp::Update, id, &["--resources", &path, id.as_str()]).await;
        let _ = tokio::fs::remove_file(&file).await;
        result.map(drop)
    }

    /// Removes the container's runtime state (and its cgroup); `force` kills it first if it
    /// runs. A container already gone is Ok.
    pub async fn delete(&self, id: &ContainerId, force: bool) -> Result<(), OciError> {
        let args: &[&str] = if force { &["--force", id.as_str()] } else { &[id.as_str()] };
        let Err(e) = self.run(OciOp::Delete, id, args).await else { return Ok(()) };
        if self.known(OciOp::Delete, id).await? { Err(e) } else { Ok(()) }
    }

    /// The container's status; `None` when the runtime does not know it.
    pub async fn state(&self, id: &ContainerId) -> Result<Option<OciState>, OciError> {
        let stdout = match self.run(OciOp::State, id, &[id.as_str()]).await {
            Ok(stdout) => stdout,
            Err(e) => return if self.known(OciOp::State, id).await? { Err(e) } else { Ok(None) },
        };
        let raw: RawState =
            serde_json::from_slice(&stdout).map_err(|e| self.error(OciOp::State, id, OciErrorKind::BadState(e)))?;
        let pid = u32::try_from(raw.pid).ok().filter(|&pid| pid > 0);
        Ok(Some(OciState { status: raw.status, pid }))
    }

    /// Kills and deletes every container the runtime keeps state for that `owned` does not
    /// claim: what a crash left between the runtime making it and a record naming it, or after
    /// the record went. One that cannot be deleted is logged and left for the next start.
    pub async fn delete_unowned(&self, owned: impl Fn(&ContainerId) -> bool) {
        let root = self.root.clone();
        let listed = tokio::task::spawn_blocking(move || container_dirs(&root)).await.map_err(io::Error::other);
        let ids = match listed.and_then(|ids| ids) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(root = %self.root.display(), "listing the runtime's containers: {e}");
                return;
            }
        };
        for id in ids.into_iter().filter(|id| !owned(id)) {
            tracing::warn!(handler = %self.handler.name, %id, "deleting a runtime container of no record");
            if let Err(e) = self.delete(&id, true).await {
                tracing::warn!(%id, "deleting a runtime container of no record: {e}");
            }
        }
    }

    /// Whether the runtime keeps state for `id`: runc and crun both keep it in `root/<id>`.
    /// Their "does not exist" messages differ, so the directory is what tells absence apart
    /// from a real failure.
    async fn known(&self, op: OciOp, id: &ContainerId) -> Result<bool, OciError> {
        let path = self.root.join(id.as_str());
        tokio::fs::try_exists(&path).await.map_err(|source| self.error(op, id, OciErrorKind::Root { path, source }))
    }

    /// Runs `<runtime> <global args> <op> <args>` and returns its stdout.
    #[tracing::instrument(name = "runtime", skip_all, fields(handler = %self.handler.name, command = %op, container_id = %id))]
    async fn run(&self, op: OciOp, id: &ContainerId, args: &[&str]) -> Result<Vec<u8>, OciError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|source| self.error(op, id, OciErrorKind::Root { path: self.root.clone(), source }))?;
        // One log per call: concurrent calls must not read each other's errors. Its name
        // starts with a dot and it is no directory, so runtimes listing `root` skip it.
        let log = self.root.join(format!(".crisp-{op}-{}.log", &ContainerId::random().as_str()[..16]));
        let mut command = Command::new(&self.handler.path);
        command
            .args(global_args(&self.root, self.systemd_cgroup, &log))
            .arg(op.to_string())
            .args(args)
            .env_clear()
            .env("PATH", PATH_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let result = tokio::time::timeout(self.timeout, command.output()).await;
        let log_text = tokio::fs::read(&log).await.unwrap_or_default();
        // Best effort: a leftover log is a small file, not a fault.
        let _ = tokio::fs::remove_file(&log).await;
        let output = match result {
            Err(_) => return Err(self.error(op, id, OciErrorKind::Timeout(self.timeout))),
            Ok(Err(source)) => {
                return Err(self.error(op, id, OciErrorKind::Spawn { path: self.handler.path.clone(), source }));
            }
            Ok(Ok(output)) => output,
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(self.error(op, id, OciErrorKind::Failed(failure_message(&log_text, &output.stderr, output.status))))
    }

    fn error(&self, op: OciOp, id: &ContainerId, kind: OciErrorKind) -> OciError {
        OciError { handler: self.handler.name.clone(), op, id: id.clone(), kind }
    }
}

/// The containers under a runtime's state root (one directory each, named by its ID); the
/// files of crisp's own commands a crash cut short (their logs, resources) are removed.
fn container_dirs(root: &Path) -> io::Result<Vec<ContainerId>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if entry.file_type()?.is_dir() {
            ids.extend(ContainerId::parse(name).ok());
        } else if name.starts_with(".crisp-") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(ids)
}

/// The runtime's global options: its state root, its cgroup driver, and a JSON log.
pub(crate) fn global_args(root: &Path, systemd_cgroup: bool, log: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        vec!["--root".into(), root.into(), "--log".into(), log.into(), "--log-format".into(), "json".into()];
    if systemd_cgroup {
        args.push("--systemd-cgroup".into());
    }
    args
}

/// Why a runtime command failed: the last error in its JSON log, else its stderr, else its
/// exit status.
pub(crate) fn failure_message(log: &[u8], stderr: &[u8], status: impl fmt::Display) -> String {
    if let Some(message) = last_error(log) {
        return message;
    }
    let stderr = String::from_utf8_lossy(&stderr[..stderr.len().min(STDERR_CAP)]);
    let stderr = stderr.trim();
    if stderr.is_empty() { format!("failed ({status}) without a message") } else { stderr.to_owned() }
}

/// The `msg` of the last `error` (or `fatal`) entry of a runtime's JSON log.
fn last_error(log: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Entry {
        level: String,
        msg: String,
    }
    log.rsplit(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Entry>(line).ok())
        .find(|e| e.level == "error" || e.level == "fatal")
        .map(|e| e.msg)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn the_last_logged_error_is_the_message() {
        let log = br#"{"level":"warning","msg":"cgroup v1 is deprecated","time":"t"}
{"level":"error","msg":"first","time":"t"}
not json at all
{"msg":"cgroups in hybrid mode not supported","level":"error","time":"t"}
{"level":"info","msg":"later info","time":"t"}
"#;
        let status = ExitStatus::from_raw(1 << 8);
        assert_eq!(failure_message(log, b"ignored", status), "cgroups in hybrid mode not supported");
        assert_eq!(failure_message(b"", b"  from stderr\n", status), "from stderr");
        assert_eq!(failure_message(b"", b"", status), "failed (exit status: 1) without a message");
    }

    #[test]
    fn global_args_follow_the_cgroup_manager() {
        let args = global_args(Path::new("/r"), true, Path::new("/l"));
        assert_eq!(args, ["--root", "/r", "--log", "/l", "--log-format", "json", "--systemd-cgroup"]);
        assert!(!global_args(Path::new("/r"), false, Path::new("/l")).contains(&"--systemd-cgroup".into()));
    }

    #[test]
    fn state_output_parses() {
        let raw: RawState =
            serde_json::from_str(r#"{"ociVersion":"1.0.2-dev","id":"x","pid":0,"status":"stopped"}"#).unwrap();
        assert_eq!((raw.status, raw.pid), (OciStatus::Stopped, 0));
    }
}
