//! The HTTP/1.1 around the streams: streaming URLs, the upgrade's response head, and plain
//! requests (for checking that a used URL is gone).

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long connecting and reading an upgrade's answer may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A streaming URL as the CRI returns it: `http://HOST:PORT/exec/TOKEN`. TLS is not supported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamUrl {
    /// As written in the URL, for the `Host` header: `127.0.0.1:43567`, `[::1]:80`.
    pub authority: String,
    /// Without IPv6 brackets, to connect to.
    pub host: String,
    pub port: u16,
    /// The path and query, `/` at least.
    pub path: String,
}

impl StreamUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            bail!("streaming URL {url:?} uses TLS, which this client does not speak");
        } else {
            bail!("streaming URL {url:?} is not an http:// URL with a host (critest requires one)");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| anyhow!("streaming URL {url:?}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("streaming URL {url:?} has no host");
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| anyhow!("streaming URL {url:?}: bad port {port:?}"))?,
            None => 80,
        };
        Ok(Self { authority: authority.to_owned(), host: host.to_owned(), port, path })
    }

    /// The same URL for a WebSocket client.
    pub fn ws(&self) -> String {
        format!("ws://{}{}", self.authority, self.path)
    }

    pub(crate) async fn connect(&self) -> anyhow::Result<TcpStream> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow!("connecting to {} timed out", self.authority))?
            .with_context(|| format!("connecting to {}", self.authority))?;
        stream.set_nodelay(true).ok();
        Ok(stream)
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// The server answered the upgrade with something other than 101: a used or unknown URL (404),
/// no common protocol (403), a malformed request (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server refused the upgrade: HTTP {status}: {body:?}")]
pub struct UpgradeRejected {
    pub status: u16,
    pub body: String,
}

/// An HTTP response head: the status and the headers, names lower-cased, in order.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// Every value of header `name` (lower-case).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }
}

/// Reads a response head up to its blank line, one byte at a time so that nothing after it is
/// consumed; returns it and nothing else.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> anyhow::Result<ResponseHead> {
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\r\n") {
        if raw.len() > 64 * 1024 {
            bail!("the response head is over 64 KiB");
        }
        let byte = io.read_u8().await.map_err(|e| anyhow!("reading the response head {:?}: {e}", lossy(&raw)))?;
        raw.push(byte);
    }
    let text = std::str::from_utf8(&raw).map_err(|_| anyhow!("the response head is not UTF-8: {:?}", lossy(&raw)))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 status line: {status_line:?}");
    }
    let status = code.parse().map_err(|_| anyhow!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(ResponseHead { status, headers })
}

/// The body of a response whose head was read: `Content-Length` bytes, or up to the end of the
/// connection (at most a few seconds and 64 KiB: it is only for error messages).
pub(crate) async fn read_body<R: AsyncRead + Unpin>(io: &mut R, head: &ResponseHead) -> String {
    let length = head.get("content-length").and_then(|l| l.parse::<usize>().ok());
    let mut body = Vec::new();
    let read = async {
        match length {
            Some(length) => {
                body.resize(length.min(64 * 1024), 0);
                if io.read_exact(&mut body).await.is_err() {
                    body.clear();
                }
            }
            None => {
                let _ = io.take(64 * 1024).read_to_end(&mut body).await;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    lossy(&body)
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends a plain `method` request without a body to `url` and returns the status and body:
/// for checking what a streaming URL answers when it is not upgraded (a used URL: 404).
pub async fn http_status(url: &str, method: &str) -> anyhow::Result<(u16, String)> {
    let url = StreamUrl::parse(url)?;
    let exchange = async {
        let mut io = url.connect().await?;
        let request = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            url.path, url.authority
        );
        io.write_all(request.as_bytes()).await?;
        let head = read_head(&mut io).await?;
        let body = read_body(&mut io, &head).await;
        Ok::<_, anyhow::Error>((head.status, body))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await.map_err(|_| anyhow!("{method} {url} timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = StreamUrl::parse("http://127.0.0.1:43567/exec/Ab3_x-9Q").unwrap();
        assert_eq!(
            url,
            StreamUrl {
                authority: "127.0.0.1:43567".into(),
                host: "127.0.0.1".into(),
                port: 43567,
                path: "/exec/Ab3_x-9Q".into()
            }
        );
        assert_eq!(url.ws(), "ws://127.0.0.1:43567/exec/Ab3_x-9Q");
        assert_eq!(url.to_string(), "http://127.0.0.1:43567/exec/Ab3_x-9Q");
        let v6 = StreamUrl::parse("http://[::1]:10250/portforward/x?ports=80").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.path.as_str()), ("::1", 10250, "/portforward/x?ports=80"));
        assert_eq!(v6.authority, "[::1]:10250");
        let bare = StreamUrl::parse("http://node").unwrap();
        assert_eq!((bare.host.as_str(), bare.port, bare.path.as_str()), ("node", 80, "/"));
        assert_eq!(StreamUrl::parse("http://node?x=1").unwrap().path, "/?x=1");
        assert!(StreamUrl::parse("https://127.0.0.1:1/exec/x").is_err());
        assert!(StreamUrl::parse("/exec/x").is_err());
        assert!(StreamUrl::parse("http:///exec/x").is_err());
        assert!(StreamUrl::parse("http://host:port/").is_err());
        assert!(StreamUrl::parse("http://[::1/").is_err());
    }

    #[tokio::test]
    async fn response_heads_stop_at_their_blank_line() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nX-Stream-Protocol-Version: a\r\n\
                    x-stream-protocol-version: b\r\n\r\nSPDY";
        let mut reader = &raw[..];
        let head = read_head(&mut reader).await.unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.get("connection"), Some("Upgrade"));
        assert_eq!(head.all("x-stream-protocol-version").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(reader, b"SPDY");
        let mut bad = &b"SPDY/3 200 OK\r\n\r\n"[..];
        assert!(read_head(&mut bad).await.is_err());
    }
}
