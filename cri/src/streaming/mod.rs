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
}

impl Streaming {
    pub fn bind(config: &StreamingConfig) -> std::io::Result<Streaming> {
        let listener = TcpListener::bind(config.address)?;
        listener.set_nonblocking(true)?;
        let mut address = listener.local_addr()?;
        // A wildcard address is no place to send a client: it is reached on loopback.
        if address.ip().is_unspecified() {
            address = SocketAddr::from((Ipv4Addr::LOCALHOST, address.port()));
        }
        Ok(Streaming {
            tokens: tokens::Tokens::default(),
            base_url: format!("http://{address}"),
            listener: Mutex::new(Some(listener)),
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
        tokio::spawn(http::serve(listener, daemon.clone()));
        Ok(())
    }
}
