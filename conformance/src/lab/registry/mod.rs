//! A real distribution registry (Debian's `docker-registry`) on 127.0.0.1, owned by the test
//! that started it: dropping a [`Registry`] kills the process and, for a temporary one, removes
//! its storage.

mod config;
mod credentials;
mod probe;

pub use credentials::Credentials;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use tempfile::TempDir;

use crate::lab::error::LabError;

/// Debian's build of distribution v2.
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// Generous, because a loaded CI machine can be slow to start a Go binary; a healthy registry is
/// up in well under a second.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(20);

/// Another process can take the free port between our probe and the registry's bind; a fresh
/// port almost always works on the next try.
const BIND_ATTEMPTS: usize = 5;

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    // Declared before `dir` so that the process is dead before its storage is removed.
    process: Process,
    dir: Workdir,
    addr: SocketAddr,
    credentials: Option<Credentials>,
}

impl Registry {
    /// An anonymous registry on a free port, storing into a temporary directory.
    pub async fn start() -> Result<Self, LabError> {
        Self::start_temporary(None).await
    }

    /// A registry on a free port that admits only `credentials` (HTTP basic auth).
    pub async fn start_with_auth(credentials: Credentials) -> Result<Self, LabError> {
        Self::start_temporary(Some(credentials)).await
    }

    /// An anonymous registry at a fixed address whose config, log and storage live under `dir`
    /// and outlive it, so that a restarted long-running lab keeps what it had.
    pub async fn serve_at(addr: SocketAddr, dir: &Path) -> Result<Self, LabError> {
        if probe::answers_v2(addr).await {
            return Err(LabError::AlreadyServing { addr });
        }
        std::fs::create_dir_all(dir).map_err(LabError::io("cannot create", dir))?;
        let dir = std::path::absolute(dir).map_err(LabError::io("cannot resolve", dir))?;
        let process = Process::launch(&dir, addr, None).await?;
        Ok(Self { process, dir: Workdir::Kept(dir), addr, credentials: None })
    }

    async fn start_temporary(credentials: Option<Credentials>) -> Result<Self, LabError> {
        let dir = tempfile::Builder::new()
            .prefix("crisp-lab-registry-")
            .tempdir()
            .map_err(LabError::io("cannot create a temporary directory in", std::env::temp_dir()))?;
        let htpasswd = match &credentials {
            Some(credentials) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, credentials.htpasswd_line()?).map_err(LabError::io("cannot write", &path))?;
                Some(path)
            }
            None => None,
        };

        let mut attempt = 1;
        let (process, addr) = loop {
            let addr = free_port()?;
            match Process::launch(dir.path(), addr, htpasswd.as_deref()).await {
                Ok(process) => break (process, addr),
                Err(LabError::RegistryExited { log, .. })
                    if attempt < BIND_ATTEMPTS && log.contains("address already in use") =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Self { process, dir: Workdir::Temporary(dir), addr, credentials })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds `config.yml`, `registry.log` and `storage/`.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Workdir::Temporary(dir) => dir.path(),
            Workdir::Kept(dir) => dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// What a client needs to be let in.
    pub fn auth(&self) -> RegistryAuth {
        self.credentials.as_ref().map_or(RegistryAuth::Anonymous, Credentials::registry_auth)
    }
}

#[derive(Debug)]
enum Workdir {
    Temporary(TempDir),
    Kept(PathBuf),
}

/// The registry process; killed and reaped on drop, so that no test leaves one behind, even when
/// it panics.
#[derive(Debug)]
struct Process {
    child: Child,
}

impl Process {
    /// Starts the registry and returns once it answers /v2/.
    async fn launch(dir: &Path, addr: SocketAddr, htpasswd: Option<&Path>) -> Result<Self, LabError> {
        let config = dir.join("config.yml");
        let storage = dir.join("storage");
        std::fs::write(&config, config::config_yaml(addr, &storage, htpasswd))
            .map_err(LabError::io("cannot write", &config))?;
        let log_path = dir.join("registry.log");
        let log = File::create(&log_path).map_err(LabError::io("cannot create", &log_path))?;
        let log_too = log.try_clone().map_err(LabError::io("cannot reopen", &log_path))?;

        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            // The registry lets REGISTRY_* variables override its config (a proxy remote URL, a
            // notification endpoint, ...): the lab's registry must be exactly the one configured.
            .env_clear()
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_too)
            .stderr(log)
            .spawn()
            .map_err(LabError::io("cannot start", DOCKER_REGISTRY))?;
        let mut process = Self { child };
        process.wait_ready(addr, &log_path).await?;
        Ok(process)
    }

    async fn wait_ready(&mut self, addr: SocketAddr, log: &Path) -> Result<(), LabError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // Checking the process after a successful probe too: if another program grabbed the
            // port, the probe may have reached it while our registry was failing to bind.
            let answered = probe::answers_v2(addr).await;
            if let Some(status) = self.child.try_wait().map_err(LabError::io("cannot wait for", DOCKER_REGISTRY))? {
                return Err(LabError::RegistryExited { addr, status, log: log_tail(log) });
            }
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::RegistryTimeout { addr, timeout: READY_TIMEOUT, log: log_tail(log) });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Errors mean the process is already gone, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port the kernel had free a moment ago.
fn free_port() -> Result<SocketAddr, LabError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(LabError::NoFreePort)?;
    listener.local_addr().map_err(LabError::NoFreePort)
}

/// The end of the registry's log, enough to see why it failed.
fn log_tail(path: &Path) -> String {
    const TAIL: usize = 8 * 1024;
    match std::fs::read(path) {
        Ok(log) => String::from_utf8_lossy(&log[log.len().saturating_sub(TAIL)..]).into_owned(),
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
