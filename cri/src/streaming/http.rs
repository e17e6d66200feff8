//! The streaming server's HTTP side: a token on `/exec/`, `/attach/` or `/portforward/` is
//! redeemed, the connection upgraded to SPDY/3.1 or WebSocket, and handed to the command.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::port_forward::{self, PodPorts};
use super::remote::{Command, Version};
use super::remote_command::{self, RemoteCommand};
use super::tokens::{Endpoint, StreamRequest};
use super::websocket::{self, Channels, Protocol};
use crate::daemon::Daemon;

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// What crisp speaks over SPDY, preferred first: v5 adds nothing over v4 there.
const SPDY_REMOTE_COMMAND: [Version; 4] = [Version::V4, Version::V3, Version::V2, Version::V1];
const WEBSOCKET_REMOTE_COMMAND: [Protocol; 5] =
    [Protocol::V5, Protocol::V4, Protocol::V4Base64, Protocol::Base64, Protocol::Plain];
const WEBSOCKET_PORT_FORWARD: [Protocol; 4] = [Protocol::SpdyTunnel, Protocol::V4, Protocol::V4Base64, Protocol::Plain];

type Reply = Response<Full<Bytes>>;

/// How long a client has for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once, idle or streaming.
const MAX_CONNECTIONS: usize = 1024;

pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, daemon: Arc<Daemon>) {
    crate::http_listener::accept_bounded(listener, MAX_CONNECTIONS, "streaming server", move |socket| {
        // A client that vanishes mid-stream (no FIN, no RST) is found out by the kernel.
        if let Err(e) = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::KeepAlive, &true) {
            tracing::debug!("streaming server: SO_KEEPALIVE: {e}");
        }
        let (daemon, tls) = (daemon.clone(), tls.clone());
        async move {
            match tls {
                None => serve_connection(socket, daemon).await,
                Some(tls) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
                    Ok(Ok(socket)) => serve_connection(socket, daemon).await,
                    Ok(Err(e)) => tracing::info!("streaming server: TLS handshake: {e}"),
                    Err(_) => tracing::info!("streaming server: no TLS handshake within {TLS_HANDSHAKE_TIMEOUT:?}"),
                },
            }
        }
    })
    .await;
}

async fn serve_connection(socket: impl super::Io, daemon: Arc<Daemon>) {
    let service = service_fn(move |request| handle(daemon.clone(), request));
    // Keep-alive stays on: without it hyper answers upgrades `Connection: close`.
    let connection = crate::http_listener::http1().serve_connection(TokioIo::new(socket), service).with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!("streaming server: {e}");
    }
}

async fn handle(daemon: Arc<Daemon>, request: Request<Incoming>) -> Result<Reply, Infallible> {
    if !matches!(*request.method(), Method::GET | Method::POST) {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and POST are served\n"));
    }
    let mut parts = request.uri().path().trim_start_matches('/').split('/');
    let (endpoint, token) = match (parts.next(), parts.next(), parts.next()) {
        (Some("exec"), Some(token), None) => (Endpoint::Exec, token),
        (Some("attach"), Some(token), None) => (Endpoint::Attach, token),
        (Some("portforward"), Some(token), None) => (Endpoint::PortForward, token),
        _ => return Ok(not_found()),
    };
    let Some(stream_request) = daemon.streaming.tokens.redeem(endpoint, token) else { return Ok(not_found()) };
    let ports_query = query_ports(request.uri().query());
    let target = match stream_request {
        StreamRequest::Exec { container_id, cmd, stdio } => {
            Target::Remote(RemoteCommand { command: Command::Exec, container_id, cmd, stdio })
        }
        StreamRequest::Attach { container_id, stdio } => {
            Target::Remote(RemoteCommand { command: Command::Attach, container_id, cmd: Vec::new(), stdio })
        }
        StreamRequest::PortForward { sandbox_id, ports } => {
            // The pod is looked up now: it may have stopped since the URL was made.
            match PodPorts::of(&daemon, &sandbox_id) {
                Ok(pod) => Target::PortForward(pod, if ports.is_empty() { ports_query } else { ports }),
                Err(message) => return Ok(plain(StatusCode::NOT_FOUND, &format!("{message}\n"))),
            }
        }
    };
    if websocket::is_websocket(request.headers()) {
        Ok(upgrade_websocket(daemon, request, target))
    } else {
        Ok(upgrade_spdy(daemon, request, target))
    }
}

enum Target {
    Remote(RemoteCommand),
    PortForward(PodPorts, Vec<u16>),
}

fn upgrade_spdy(daemon: Arc<Daemon>, mut request: Request<Incoming>, target: Target) -> Reply {
    let headers = request.headers();
    let upgrading = header_has(headers, CONNECTION, "upgrade") && header_has(headers, UPGRADE, "spdy/3.1");
    if !upgrading {
        return plain(StatusCode::BAD_REQUEST, "unable to upgrade: missing upgrade headers in request\n");
    }
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "unable to upgrade: X-Stream-Protocol-Version is required\n");
    }
    let supported: Vec<&str> = match &target {
        Target::Remote(_) => SPDY_REMOTE_COMMAND.iter().map(|v| v.name()).collect(),
        Target::PortForward(..) => vec![PORT_FORWARD_PROTOCOL],
    };
    let Some(chosen) = offered.iter().find(|o| supported.contains(&o.as_str())).cloned() else {
        let mut reply = plain(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}\n"
            ),
        );
        for protocol in supported {
            reply.headers_mut().append("x-accepted-stream-protocol-versions", HeaderValue::from_static(protocol));
        }
        return reply;
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let protocol = HeaderValue::from_str(&chosen).expect("a protocol name is a header value");
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return tracing::info!("streaming: the SPDY upgrade failed: {e}"),
        };
        match target {
            Target::Remote(command) => {
                let version = Version::from_name(&chosen).expect("negotiated from the supported list");
                remote_command::over_spdy(daemon, command, version, io).await;
            }
            Target::PortForward(pod, _) => port_forward::over_spdy(pod, io).await,
        }
    });
    let mut reply = Response::new(Full::default());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = reply.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(PROTOCOL_HEADER, protocol);
    reply
}

fn upgrade_websocket(daemon: Arc<Daemon>, mut request: Request<Incoming>, target: Target) -> Reply {
    let allowed: &[Protocol] = match &target {
        Target::Remote(_) => &WEBSOCKET_REMOTE_COMMAND,
        Target::PortForward(..) => &WEBSOCKET_PORT_FORWARD,
    };
    let Some(protocol) = websocket::negotiate(request.headers(), allowed) else {
        let names: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
        return plain(
            StatusCode::FORBIDDEN,
            &format!("unable to upgrade: the server accepts the subprotocols {names:?}\n"),
        );
    };
    let accepted = match websocket::accept_response(request.headers(), protocol) {
        Ok(accepted) => accepted,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("unable to upgrade: {e}\n")),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return tracing::info!("streaming: the WebSocket upgrade failed: {e}"),
        };
        match (target, protocol) {
            (Target::PortForward(pod, _), Protocol::SpdyTunnel) => {
                port_forward::over_spdy(pod, websocket::ByteStream::new(io)).await;
            }
            (Target::PortForward(pod, ports), protocol) => {
                port_forward::over_websocket(pod, ports, Channels::new(io, protocol)).await;
            }
            (Target::Remote(command), protocol) => {
                let version = match protocol {
                    Protocol::V5 => Version::V5,
                    Protocol::V4 | Protocol::V4Base64 => Version::V4,
                    _ => Version::V1,
                };
                remote_command::over_websocket(daemon, command, version, Channels::new(io, protocol)).await;
            }
        }
    });
    let (parts, ()) = accepted.into_parts();
    Response::from_parts(parts, Full::default())
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn header_has(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// `?ports=80&ports=443` or `?ports=80,443`, as the kubelet reads them.
fn query_ports(query: Option<&str>) -> Vec<u16> {
    let Some(query) = query else { return Vec::new() };
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("ports="))
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().parse::<u16>().ok().filter(|&p| p > 0))
        .collect()
}

fn not_found() -> Reply {
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn plain(status: StatusCode, body: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_owned())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_the_query_as_the_kubelet_reads_them() {
        assert_eq!(query_ports(Some("ports=80&ports=443,8080&x=1&ports=0&ports=nope")), [80, 443, 8080]);
        assert!(query_ports(None).is_empty());
    }

    #[test]
    fn upgrade_headers_are_matched_as_token_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(header_has(&headers, CONNECTION, "upgrade"));
        assert!(!header_has(&headers, UPGRADE, "spdy/3.1"));
    }
}
