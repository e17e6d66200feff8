//! The daemon's life: claim the root, take over the socket, serve until SIGTERM or SIGINT,
//! drain, remove the socket.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::daemon::{Daemon, DaemonError};
use crate::service::{ImageService, RuntimeService};

/// How long in-flight RPCs (long streams too) get to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// CRI messages can be large (ListContainers on a dense node, ExecSync output).
const MAX_MESSAGE_SIZE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("another crisp already serves {0}: stop it first")]
    SocketInUse(PathBuf),
    #[error("server.group {group:?}: {reason}")]
    SocketGroup { group: String, reason: String },
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    #[error("another crisp holds the root or state {path} (lock {lock}): stop it first")]
    RootInUse { path: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("serving the streaming URLs: {0}")]
    Streaming(io::Error),
    #[error("serving the metrics: {0}")]
    Metrics(io::Error),
    #[error("installing signal handlers: {0}")]
    Signal(io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io { path: path.to_owned(), source }
}

pub async fn run(config: Config) -> Result<(), ServerError> {
    for dir in [&config.server.root, &config.server.state] {
        fs::DirBuilder::new().recursive(true).mode(0o711).create(dir).map_err(io_err(dir))?;
    }
    let _lock = lock_root(&config.server.root)?;
    // Start removes the runtime containers, mounts and netns under `state` that no record of
    // this root owns: a second crisp on the same state would destroy the first one's pods.
    let _state_lock =
        if same_dir(&config.server.state, &config.server.root) { None } else { Some(lock_root(&config.server.state)?) };
    let gid = socket_group(&config.server.group)?;
    let daemon = Arc::new(Daemon::new(config).await?);
    // Containers undone at start, or whose creation was cut short, held their images.
    crate::service::release_stale_holds(&daemon).await;
    if let Some(address) = daemon.config.metrics.address.0 {
        let bound = crate::metrics::serve(address, daemon.clone()).await.map_err(ServerError::Metrics)?;
        tracing::info!(address = %bound, "metrics served at /metrics");
    }
    if let Some(floor) = daemon.oom_score_adj.floor() {
        tracing::info!(
            floor,
            "oom_score_adj is clamped to at least {floor}: the host forbids lower values or the config asks for it"
        );
    }

    crate::streaming::Streaming::serve(&daemon).map_err(ServerError::Streaming)?;
    tracing::info!(url = daemon.streaming.base_url(), "streaming server for exec, attach and port-forward");

    let socket = daemon.config.server.listen.clone();
    let listener = bind(&socket, gid)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);

    let server = tonic::transport::Server::builder()
        .layer(crate::telemetry::TraceContextLayer)
        .add_service(
            RuntimeServiceServer::new(RuntimeService::new(daemon.clone()))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .add_service(
            ImageServiceServer::new(ImageService::new(daemon.clone()))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            let _ = stop_rx.changed().await;
        });
    tokio::pin!(server);
    tracing::info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "crisp is serving the CRI");

    let result = tokio::select! {
        result = &mut server => result.map_err(ServerError::from),
        signal = async { tokio::select! { _ = terminate.recv() => "SIGTERM", _ = interrupt.recv() => "SIGINT" } } => {
            tracing::info!("{signal}: draining in-flight RPCs");
            let _ = stop_tx.send(true);
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(result) => result.map_err(ServerError::from),
                Err(_) => {
                    tracing::warn!("RPCs still running after {DRAIN_TIMEOUT:?}: stopping anyway");
                    Ok(())
                }
            }
        }
    };
    if let Err(e) = fs::remove_file(&socket) {
        tracing::warn!("removing {}: {e}", socket.display());
    }
    tracing::info!("crisp stopped");
    result
}

/// Whether two paths name one directory (`root` and `state` may be configured as the same).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => a == b,
    }
}

/// One daemon per root (and per state): two would write the same records.
fn lock_root(root: &Path) -> Result<Flock<File>, ServerError> {
    let path = root.join("crisp.lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => ServerError::RootInUse { path: root.to_owned(), lock: path.clone() },
        errno => ServerError::Io { path: path.clone(), source: errno.into() },
    })?;
    lock.set_len(0).and_then(|_| writeln!(lock, "{}", std::process::id())).map_err(io_err(&path))?;
    Ok(lock)
}

/// Binds the socket, root's and group `gid`'s (mode 0660). A socket file nobody answers on is left
/// over from a crash and replaced; one a live daemon answers on is not.
fn bind(path: &Path, gid: u32) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o711).create(dir).map_err(io_err(dir))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(ServerError::NotASocket(path.to_owned())),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(ServerError::SocketInUse(path.to_owned())),
            Err(_) => tracing::info!(socket = %path.display(), "replacing a stale socket"),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    // The socket is made in a directory only root can enter and gets its owner and mode there,
    // so that at its final path it was never open to anyone else; the rename also replaces a
    // stale socket in one step. (The umask is process-wide and other threads already run.)
    let staging = staging_dir(path);
    if let Err(e) = fs::remove_dir_all(&staging)
        && e.kind() != io::ErrorKind::NotFound
    {
        return Err(io_err(&staging)(e));
    }
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(io_err(&staging))?;
    let staged = staging.join("s");
    let bound = std::os::unix::net::UnixListener::bind(&staged)
        .and_then(|listener| {
            std::os::unix::fs::chown(&staged, None, Some(gid))?;
            fs::set_permissions(&staged, fs::Permissions::from_mode(0o660))?;
            fs::rename(&staged, path)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .map_err(io_err(path));
    let _ = fs::remove_dir_all(&staging);
    UnixListener::from_std(bound?).map_err(io_err(path))
}

/// Beside the socket, so that the rename stays on one filesystem.
fn staging_dir(socket: &Path) -> PathBuf {
    let name = socket.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    socket.with_file_name(format!(".{name}.bind"))
}

/// `[server] group`: a numeric ID as it is, a name looked up in the host's group database.
fn socket_group(group: &str) -> Result<u32, ServerError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let missing = |reason: String| ServerError::SocketGroup { group: group.to_owned(), reason };
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => Err(missing("no such group on this host".into())),
        Err(e) => Err(missing(format!("looking it up: {e}"))),
    }
}
