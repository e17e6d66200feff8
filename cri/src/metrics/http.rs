//! The `/metrics` listener: plain HTTP/1, one scrape per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use tokio::net::TcpListener;

use crate::daemon::Daemon;

/// What prometheus-client writes: Prometheus reads it natively.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `address` now, so that a bad address stops the daemon at start, and serves it in a task
/// of its own. Returns the address bound (port 0 picks one).
pub async fn serve(address: SocketAddr, daemon: Arc<Daemon>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(accept(listener, daemon));
    Ok(bound)
}

/// Scrapers served at once.
const MAX_CONNECTIONS: usize = 32;

async fn accept(listener: TcpListener, daemon: Arc<Daemon>) {
    crate::http_listener::accept_bounded(listener, MAX_CONNECTIONS, "metrics server", move |socket| {
        let daemon = daemon.clone();
        async move {
            let service = service_fn(move |request| handle(daemon.clone(), request));
            let connection = crate::http_listener::http1().serve_connection(TokioIo::new(socket), service);
            if let Err(e) = connection.await {
                tracing::debug!("metrics server: {e}");
            }
        }
    })
    .await;
}

async fn handle(daemon: Arc<Daemon>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, "text/plain", "only /metrics is served here\n".into()));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into()));
    }
    // One scrape at a time: a burst of them must not fill the blocking pool the RPCs use.
    static SCRAPING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _scraping = SCRAPING.lock().await;
    let scraped = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        encode_registry(&mut text, &super::METRICS.registry)?;
        encode_registry(&mut text, &super::scrape::snapshot(&daemon))?;
        encode_eof(&mut text)?;
        Ok::<_, std::fmt::Error>(text)
    })
    .await;
    Ok(match scraped {
        Ok(Ok(text)) => reply(StatusCode::OK, CONTENT_TYPE_OPENMETRICS, text),
        Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("encoding: {e}\n")),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("scrape: {e}\n")),
    })
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}
