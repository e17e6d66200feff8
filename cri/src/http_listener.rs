//! What crisp's two HTTP listeners (streaming, metrics) share: an accept loop that serves a
//! bounded number of connections, and HTTP/1 that times out request heads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};

/// A request head that does not come within this ends its connection, also between requests
/// on a kept-alive one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves each accepted connection with `serve` on a task of its own, at most `max` at once:
/// past it, new ones wait in the backlog, so that clients cannot take all of the daemon's
/// descriptors.
pub async fn accept_bounded<F, Fut>(listener: TcpListener, max: usize, what: &'static str, mut serve: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of descriptors, mostly: the next accept may well work.
                tracing::warn!("{what}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = serve(socket);
        tokio::spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
}

/// HTTP/1 with the head timeout (hyper has none without a timer).
pub fn http1() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder
}
