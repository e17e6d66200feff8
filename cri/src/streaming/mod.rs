//! The streaming server: the URLs that Exec, Attach and PortForward return, served over SPDY/3.1
//! and WebSocket as the kubelet's own streaming server speaks them.

mod http;
mod port_forward;
mod process;
mod remote;
mod remote_command;
pub mod spdy;
mod tokens;
pub mod websocket;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

pub use tokens::{Stdio, StreamRequest, TooManyPending};
/// What a client's upgraded connection is, whichever transport carries it.
pub use websocket::Io;

use crate::config::StreamingConfig;
use crate::daemon::Daemon;

/// What the RPCs need of the streaming server: tokens, and the URL it is reached at.
pub struct Streaming {
    tokens: tokens::Tokens,
    base_url: String,
    /// Bound at start so that URLs carry the real port; served once the daemon is whole.
    listener: Mutex<Option<TcpListener>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("binding {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("tls_cert_file and tls_key_file go together: set both or neither")]
    HalfTls,
    #[error("{path}: {message}")]
    Pem { path: std::path::PathBuf, message: String },
    #[error("the TLS certificate and key: {0}")]
    Tls(#[from] rustls::Error),
}

impl Streaming {
    pub fn bind(config: &StreamingConfig) -> Result<Streaming, StreamingError> {
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(StreamingError::HalfTls),
        };
        let bind = |source| StreamingError::Bind { address: config.address, source };
        let listener = TcpListener::bind(config.address).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let mut address = listener.local_addr().map_err(bind)?;
        // A wildcard address is no place to send a client: it is reached on loopback.
        if address.ip().is_unspecified() {
            address = SocketAddr::from((Ipv4Addr::LOCALHOST, address.port()));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Streaming {
            tokens: tokens::Tokens::default(),
            base_url: format!("{scheme}://{address}"),
            listener: Mutex::new(Some(listener)),
            tls,
        })
    }

    /// The single-use URL that serves `request`.
    pub fn url(&self, request: StreamRequest) -> Result<String, TooManyPending> {
        let endpoint = request.endpoint().path();
        let token = self.tokens.issue(request)?;
        Ok(format!("{}/{endpoint}/{token}", self.base_url))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves the streaming URLs until the runtime ends.
    pub fn serve(daemon: &Arc<Daemon>) -> std::io::Result<()> {
        let Some(listener) = daemon.streaming.listener.lock().expect("listener lock").take() else { return Ok(()) };
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(http::serve(listener, daemon.streaming.tls.clone(), daemon.clone()));
        Ok(())
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, StreamingError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    fn pem(path: &std::path::Path) -> impl Fn(rustls::pki_types::pem::Error) -> StreamingError + '_ {
        move |e| StreamingError::Pem { path: path.to_owned(), message: e.to_string() }
    }
    let chain =
        CertificateDer::pem_file_iter(cert).map_err(pem(cert))?.collect::<Result<Vec<_>, _>>().map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(StreamingError::Pem { path: cert.to_owned(), message: "no certificate in it".into() });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
