use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one probe may take; a registry that is up answers /v2/ in milliseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a distribution registry answers `GET /v2/` at `addr`: 200, or 401 when it wants
/// credentials, with the `Docker-Distribution-Api-Version` header that tells a registry apart
/// from whatever else might listen there.
pub(super) async fn answers_v2(addr: SocketAddr) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, get_v2(addr)).await {
        Ok(Ok(response)) => is_registry_answer(&response),
        _ => false,
    }
}

async fn get_v2(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response).await?;
    Ok(response)
}

fn is_registry_answer(response: &[u8]) -> bool {
    let response = String::from_utf8_lossy(response);
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split_whitespace().nth(1));
    let distribution = lines.any(|line| {
        line.split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("docker-distribution-api-version"))
    });
    matches!(status, Some("200" | "401")) && distribution
}
