//! A real crisp daemon for a test: its own config, socket, root and state in a temp dir, killed
//! and cleaned up when the test ends, passed or failed.

#![allow(dead_code)] // each test binary uses its own part of this harness

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crisp_conformance::client::{CriClient, Endpoint};

pub const CRISP: &str = env!("CARGO_BIN_EXE_crisp");

/// How long a daemon may take to come up before the test fails saying so.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub mod containers;
pub mod net;

pub struct Lab {
    pub dir: tempfile::TempDir,
    /// Bridges the lab's networks made, deleted with it.
    bridges: std::sync::Mutex<Vec<String>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        net::clean_up(self.dir.path(), &self.bridges.lock().unwrap());
    }
}

impl Lab {
    pub fn new() -> Lab {
        let lab = Lab { dir: tempfile::tempdir().expect("temp dir"), bridges: Default::default() };
        fs::create_dir_all(lab.cni_dir()).unwrap();
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("run/crisp.sock")
    }

    pub fn cni_dir(&self) -> PathBuf {
        self.path("net.d")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("etc/crisp.toml")
    }

    /// Writes the lab's `[server]` and `[network]` tables followed by `extra`, which holds
    /// whole tables of its own.
    pub fn write_config(&self, extra: &str) -> PathBuf {
        let path = self.config_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = format!(
            "[server]\nlisten = {:?}\nroot = {:?}\nstate = {:?}\nlog_level = \"debug\"\n\n[network]\nconf_dir = {:?}\n\n{extra}",
            self.socket(),
            self.path("root"),
            self.path("state"),
            self.cni_dir(),
        );
        fs::write(&path, text).unwrap();
        path
    }

    /// Starts crisp on the config as written and waits until its socket answers.
    pub fn start(&self) -> Daemon {
        self.spawn(Command::new(CRISP))
    }

    /// As `start`, with crisp in a new mount namespace whose mounts are all private: what it,
    /// its monitors and containers mount stays there, and so do the test's own mount changes
    /// made in it (through `nsenter`); all of it goes when the last of those processes exits.
    pub fn start_in_own_mount_namespace(&self) -> Daemon {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(CRISP);
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.spawn(command)
    }

    fn spawn(&self, mut command: Command) -> Daemon {
        let log = self.path(&format!("crisp-{}.log", unique_suffix()));
        let child = command
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning crisp");
        let mut daemon = Daemon { child, log, socket: self.socket() };
        daemon.wait_ready();
        daemon
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(stream) = UnixStream::connect(&self.socket) {
                // A connection is queued by whoever holds the listening socket: after a kill,
                // that can still be a process which inherited the old daemon's, and which
                // nobody accepts on. Ready is this daemon listening.
                match listener_pid(&stream) {
                    Some(pid) if pid == self.child.id() => return,
                    other => eprintln!(
                        "{} is served by {other:?} ({}), not the crisp just started ({})",
                        self.socket.display(),
                        other.map(cmdline).unwrap_or_default(),
                        self.child.id()
                    ),
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("crisp exited during start ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "crisp did not serve {} within {START_TIMEOUT:?}:\n{}",
                self.socket.display(),
                self.logs()
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn client(&self) -> CriClient {
        let endpoint = Endpoint::parse(self.socket.to_str().unwrap()).unwrap();
        CriClient::connect(&endpoint, &endpoint).await.expect("connecting to crisp")
    }

    pub fn signal(&self, signal: libc::c_int) {
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    /// Waits for the daemon to exit on its own, failing the test if it takes too long. Async so
    /// that the test's clients keep being polled and answer the server's shutdown handshake,
    /// as a live kubelet would.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "crisp still running after {within:?}:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `crisp` with arguments to completion, returning its status, stdout and stderr.
pub fn crisp(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(CRISP).args(args).stdin(Stdio::null()).output().expect("running crisp");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A CNI conflist for Debian's plugins in /usr/lib/cni, with nothing that reaches beyond the
/// pod subnet.
pub const BRIDGE_CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "crisp-test",
  "plugins": [
    {"type": "bridge", "bridge": "crisp-test0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.234.0.0/24"}]], "routes": [{"dst": "10.234.0.0/24"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"#;

pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "expected {needle:?} in:\n{haystack}");
}

pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

/// Sends `n` bytes to a listener in a pod (at `ip:port`), waiting for it to listen first.
pub async fn send_to_pod(ip: std::net::IpAddr, port: u16, n: u64) {
    use std::io::Write;
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(1)) {
            stream.write_all(&vec![b'x'; n as usize]).unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing in the pod answers at {ip}:{port}");
}

/// The pid of the process that listens on the other end of `stream` (SO_PEERCRED).
fn listener_pid(stream: &UnixStream) -> Option<u32> {
    let creds = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    u32::try_from(creds.pid()).ok()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}
