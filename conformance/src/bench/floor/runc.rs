//! An OCI runtime with runc's command line, its state in a root dir of the run's own.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::FloorError;

/// The first line of `binary --version`, e.g. `runc version 1.1.5`: a runtime that cannot answer
/// it cannot run pods either.
pub(super) fn version(binary: &Path) -> Result<String, FloorError> {
    let output = Command::new(binary).arg("--version").stdin(Stdio::null()).output();
    let output = output.map_err(|e| FloorError::io(format!("cannot run {}", binary.display()), e))?;
    check(binary, "--version", "", &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or_default().to_owned())
}

#[derive(Debug)]
pub(super) struct Runtime {
    binary: PathBuf,
    root: PathBuf,
}

impl Runtime {
    pub(super) fn new(binary: &Path, root: PathBuf) -> Runtime {
        Runtime { binary: binary.to_owned(), root }
    }

    /// `create` of the bundle at `bundle`: the container's init process ID.
    pub(super) fn create(&self, id: &str, bundle: &Path) -> Result<u32, FloorError> {
        let pid_file = bundle.join("pid");
        // The container inherits runc's stdio: a pipe would stay open as long as it runs, so
        // runc's errors go to a file read once runc is done.
        let stderr_path = bundle.join("create.stderr");
        let stderr = File::create(&stderr_path)
            .map_err(|e| FloorError::io(format!("cannot create {}", stderr_path.display()), e))?;
        let status = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .map_err(|e| FloorError::io(format!("cannot run {}", self.binary.display()), e))?;
        if !status.success() {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(failure(&self.binary, "create", id, format!("{status}: {}", stderr.trim())));
        }
        let pid =
            fs::read_to_string(&pid_file).map_err(|e| FloorError::io(format!("reading {}", pid_file.display()), e))?;
        pid.trim().parse().map_err(|_| failure(&self.binary, "create", id, format!("pid file holds {pid:?}")))
    }

    pub(super) fn start(&self, id: &str) -> Result<(), FloorError> {
        let output = self.run(&["start", id])?;
        check(&self.binary, "start", id, &output)
    }

    /// `delete --force`: kills the container if it runs; one that does not exist is no error.
    pub(super) fn delete(&self, id: &str) -> Result<(), FloorError> {
        let output = self.run(&["delete", "--force", id])?;
        if String::from_utf8_lossy(&output.stderr).contains("does not exist") {
            return Ok(());
        }
        check(&self.binary, "delete", id, &output)
    }

    fn run(&self, args: &[&str]) -> Result<Output, FloorError> {
        Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| FloorError::io(format!("cannot run {}", self.binary.display()), e))
    }
}

fn check(binary: &Path, command: &'static str, id: &str, output: &Output) -> Result<(), FloorError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(failure(binary, command, id, format!("{}: {}", output.status, stderr.trim())))
}

fn failure(binary: &Path, command: &'static str, id: &str, stderr: String) -> FloorError {
    FloorError::Runtime { runtime: binary.display().to_string(), command, id: id.to_owned(), stderr }
}
