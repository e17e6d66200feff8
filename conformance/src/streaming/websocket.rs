//! WebSocket clients: the channel protocols of remote commands (`v5.channel.k8s.io`, which
//! crictl's `--transport websocket` asks for alone, and the older binary and base64 ones), and
//! the SPDY tunnel of port forwarding (`SPDY/3.1+portforward.k8s.io`), where binary messages
//! carry a SPDY byte stream.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::http::{HANDSHAKE_TIMEOUT, StreamUrl, UpgradeRejected};
use super::{Input, Output, RemoteCommandOptions, StatusFormat, spdy};

/// The subprotocol of port forwarding tunnelled over a WebSocket.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// client-go's WebSocket executor pings this often and fails after 12 unanswered periods.
const PING_PERIOD: Duration = Duration::from_secs(5);
const PONG_TIMEOUT: Duration = Duration::from_secs(30);
/// The v5 message that half-closes a channel: `[255, channel]`.
const STREAM_CLOSE: u8 = 255;

/// A remote command channel protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelProtocol {
    /// Binary, Status JSON, and `[255, 0]` to close stdin: what crictl speaks.
    V5,
    /// Binary, Status JSON.
    V4,
    /// Text messages: the channel as an ASCII digit, then base64; Status JSON.
    V4Base64,
    /// Binary, text status on failure only.
    V1,
    /// base64 text, text status on failure only.
    V1Base64,
}

impl ChannelProtocol {
    pub const ALL: [ChannelProtocol; 5] = [
        ChannelProtocol::V5,
        ChannelProtocol::V4,
        ChannelProtocol::V4Base64,
        ChannelProtocol::V1,
        ChannelProtocol::V1Base64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ChannelProtocol::V5 => "v5.channel.k8s.io",
            ChannelProtocol::V4 => "v4.channel.k8s.io",
            ChannelProtocol::V4Base64 => "v4.base64.channel.k8s.io",
            ChannelProtocol::V1 => "channel.k8s.io",
            ChannelProtocol::V1Base64 => "base64.channel.k8s.io",
        }
    }

    fn base64(self) -> bool {
        matches!(self, ChannelProtocol::V4Base64 | ChannelProtocol::V1Base64)
    }

    pub(crate) fn status_format(self) -> StatusFormat {
        match self {
            ChannelProtocol::V5 | ChannelProtocol::V4 | ChannelProtocol::V4Base64 => StatusFormat::Json,
            ChannelProtocol::V1 | ChannelProtocol::V1Base64 => StatusFormat::Text,
        }
    }

    /// One message carrying `payload` on `channel`.
    pub fn encode(self, channel: u8, payload: &[u8]) -> Message {
        if self.base64() {
            Message::text(format!("{}{}", char::from(b'0' + channel), STANDARD.encode(payload)))
        } else {
            let mut message = Vec::with_capacity(1 + payload.len());
            message.push(channel);
            message.extend_from_slice(payload);
            Message::binary(message)
        }
    }

    /// The channel and payload of a data message from the server; None for an empty message.
    pub fn decode(self, message: &Message) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        match (message, self.base64()) {
            (Message::Binary(bytes), false) => Ok(bytes.split_first().map(|(c, rest)| (*c, rest.to_vec()))),
            (Message::Text(text), true) => {
                let text = text.as_str();
                let Some(digit) = text.bytes().next() else { return Ok(None) };
                if !digit.is_ascii_digit() {
                    bail!("base64 message {text:?} does not start with a channel digit");
                }
                let payload =
                    STANDARD.decode(&text[1..]).map_err(|e| anyhow!("base64 message {text:?} does not decode: {e}"))?;
                Ok(Some((digit - b'0', payload)))
            }
            (Message::Text(text), false) => {
                bail!("a text message {:?} on binary protocol {} (client-go fails on it)", text.as_str(), self.name())
            }
            (Message::Binary(bytes), true) => bail!("a binary message {bytes:?} on base64 protocol {}", self.name()),
            (other, _) => bail!("not a data message: {other:?}"),
        }
    }
}

/// Opens a WebSocket to `url` asking for `protocol` alone, which the server must answer with.
async fn connect(url: &str, protocol: &str) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let parsed = StreamUrl::parse(url)?;
    let io = parsed.connect().await?;
    let mut request = parsed.ws().as_str().into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol)?);
    let (ws, response) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::client_async(request, io)).await {
            Err(_) => bail!("the WebSocket handshake with {url} timed out"),
            Ok(Err(WsError::Http(response))) => {
                let body = response.body().as_deref().map(super::http::lossy).unwrap_or_default();
                return Err(UpgradeRejected { status: response.status().as_u16(), body }.into());
            }
            Ok(Err(e)) => bail!("the WebSocket handshake with {url} asking for {protocol:?}: {e}"),
            Ok(Ok(answer)) => answer,
        };
    let chosen = response.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap_or_default());
    if chosen != Some(protocol) {
        bail!("the WebSocket handshake chose protocol {chosen:?}, want {protocol:?}");
    }
    Ok(ws)
}

/// Opens a remote command over a WebSocket with `protocol` and starts its driver.
pub(crate) async fn open_remote_command(
    url: &str,
    protocol: ChannelProtocol,
    options: &RemoteCommandOptions,
    input: mpsc::UnboundedReceiver<Input>,
    output: mpsc::UnboundedSender<Output>,
) -> anyhow::Result<JoinHandle<()>> {
    let ws = connect(url, protocol.name()).await?;
    let wants =
        Wants { stdout: options.stdout, stderr: options.stderr && !options.tty, stdin: options.stdin.is_some() };
    Ok(tokio::spawn(drive(ws, protocol, wants, input, output)))
}

#[derive(Clone, Copy)]
struct Wants {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

async fn drive(
    mut ws: WebSocketStream<TcpStream>,
    protocol: ChannelProtocol,
    wants: Wants,
    mut input: mpsc::UnboundedReceiver<Input>,
    output: mpsc::UnboundedSender<Output>,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_PERIOD, PING_PERIOD);
    let mut unanswered: Option<Instant> = None;
    let mut input_open = true;
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                command = input.recv(), if input_open => match command {
                    Some(Input::Stdin(bytes)) if wants.stdin => ws.send(protocol.encode(0, &bytes)).await?,
                    Some(Input::CloseStdin) if wants.stdin => {
                        if protocol == ChannelProtocol::V5 {
                            ws.send(Message::binary(vec![STREAM_CLOSE, 0])).await?;
                        }
                    }
                    Some(Input::Stdin(_) | Input::CloseStdin) => bail!("stdin was not asked for"),
                    Some(Input::Resize(width, height)) => {
                        let size = format!("{{\"Width\":{width},\"Height\":{height}}}\n");
                        ws.send(protocol.encode(4, size.as_bytes())).await?;
                    }
                    None => input_open = false,
                },
                _ = ping.tick() => {
                    match unanswered {
                        Some(since) if since.elapsed() > PONG_TIMEOUT => {
                            bail!("the server answered no ping for {PONG_TIMEOUT:?} (client-go gives up after 61 s)")
                        }
                        Some(_) => {}
                        None => unanswered = Some(Instant::now()),
                    }
                    ws.send(Message::Ping(Default::default())).await?;
                },
                message = ws.next() => {
                    let message = match message {
                        None => bail!("the connection ended without a close frame (client-go fails the session)"),
                        Some(Err(e)) => bail!("reading the WebSocket: {e}"),
                        Some(Ok(message)) => message,
                    };
                    match message {
                        Message::Pong(_) => unanswered = None,
                        Message::Ping(_) | Message::Frame(_) => {}
                        Message::Close(Some(CloseFrame { code: CloseCode::Normal, .. })) => return Ok(()),
                        Message::Close(other) => {
                            bail!("the server closed with {other:?}, not code 1000 (client-go fails the session)")
                        }
                        data => {
                            let Some((channel, payload)) = protocol.decode(&data)? else { continue };
                            if payload.is_empty() {
                                continue;
                            }
                            let out = match channel {
                                1 if wants.stdout => Output::Stdout(payload),
                                2 if wants.stderr => Output::Stderr(payload),
                                3 => Output::Error(payload),
                                _ => bail!(
                                    "the server sent {} bytes on channel {channel}, which it must not write",
                                    payload.len()
                                ),
                            };
                            let _ = output.send(out);
                        }
                    }
                }
            }
        }
    }
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    let _ = output.send(Output::End(result.map_err(|e| format!("{e:#}"))));
}

/// Opens the port-forward SPDY tunnel and starts SPDY on it.
pub(crate) async fn open_port_forward(url: &str) -> anyhow::Result<spdy::Connection> {
    let ws = connect(url, TUNNEL_PROTOCOL).await?;
    Ok(spdy::Connection::new(Tunnel { ws, pending: Vec::new(), read: 0, eof: false, close_sent: false }))
}

/// A WebSocket as a byte stream: binary messages' payloads in order, each write one binary
/// message; the end is a close frame with code 1000 (sent on shutdown, required on reading).
struct Tunnel {
    ws: WebSocketStream<TcpStream>,
    pending: Vec<u8>,
    read: usize,
    eof: bool,
    close_sent: bool,
}

fn io_error(e: WsError) -> std::io::Error {
    std::io::Error::other(e)
}

impl AsyncRead for Tunnel {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.read);
                buf.put_slice(&this.pending[this.read..this.read + n]);
                this.read += n;
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let invalid = |why: String| Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why)));
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => {
                    this.pending = bytes.to_vec();
                    this.read = 0;
                }
                Some(Ok(Message::Text(text))) => {
                    return invalid(format!(
                        "a text message {:?} in the SPDY tunnel (client-go: invalid message type received)",
                        text.as_str()
                    ));
                }
                Some(Ok(Message::Close(Some(CloseFrame { code: CloseCode::Normal, .. })))) => this.eof = true,
                Some(Ok(Message::Close(other))) => {
                    return invalid(format!("the server closed the tunnel with {other:?}, not code 1000"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the tunnel's connection ended without a close frame",
                    )));
                }
            }
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let ws = &mut self.get_mut().ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut *ws).start_send(Message::binary(buf.to_vec())).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
            let close = CloseFrame { code: CloseCode::Normal, reason: Default::default() };
            Pin::new(&mut this.ws).start_send(Message::Close(Some(close))).map_err(io_error)?;
            this.close_sent = true;
        }
        match ready!(Pin::new(&mut this.ws).poll_flush(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages() {
        let binary = ChannelProtocol::V5.encode(0, b"hi");
        assert_eq!(binary, Message::binary(vec![0, b'h', b'i']));
        assert_eq!(ChannelProtocol::V4.decode(&binary).unwrap(), Some((0, b"hi".to_vec())));
        let text = ChannelProtocol::V4Base64.encode(1, b"hello");
        assert_eq!(text, Message::text("1aGVsbG8="));
        assert_eq!(ChannelProtocol::V1Base64.decode(&text).unwrap(), Some((1, b"hello".to_vec())));
        assert_eq!(ChannelProtocol::V5.decode(&Message::binary(Vec::new())).unwrap(), None);
        assert_eq!(ChannelProtocol::V5.decode(&Message::binary(vec![1])).unwrap(), Some((1, Vec::new())));
        assert!(ChannelProtocol::V5.decode(&Message::text("1aGk=")).is_err());
        assert!(ChannelProtocol::V4Base64.decode(&binary).is_err());
        assert!(ChannelProtocol::V4Base64.decode(&Message::text("x")).is_err());
        assert!(ChannelProtocol::V4Base64.decode(&Message::text("1!!")).is_err());
        assert_eq!(ChannelProtocol::V1.status_format(), StatusFormat::Text);
        assert_eq!(ChannelProtocol::V5.status_format(), StatusFormat::Json);
    }
}
