//! The WebSocket transport of the streaming server.
//!
//! Exec and attach speak the kubelet's channel protocols: each message is a channel byte and a
//! payload, binary, or for the `base64.` variants text made of an ASCII digit and base64.
//! crictl's `--transport websocket` asks only for `v5.channel.k8s.io`, which adds the client's
//! `[255, channel]` half-close. `crictl port-forward --transport websocket` instead tunnels a whole
//! SPDY/3.1 connection through binary messages (`SPDY/3.1+portforward.k8s.io`); [`ByteStream`]
//! turns those back into bytes for the SPDY server.
//!
//! The HTTP server checks [`is_websocket`], picks a subprotocol with [`negotiate`] (403 when none
//! fits), answers [`accept_response`] (400 on its error), and hands the upgraded connection to
//! [`Channels::new`] or [`ByteStream::new`].
//!
//! The client (client-go) pings every 5 s and gives up after ~61 s without a pong, so the socket
//! is always being read: [`Channels`] reads in a task of its own even while the application only
//! sends, and [`ByteStream`] relies on its owner reading, as a SPDY server always does.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// v5's client half-close signal, `[STREAM_CLOSE, channel]`.
const STREAM_CLOSE: u8 = 255;
/// How long [`ChannelSender::close`] waits for the client to answer the close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Client messages buffered ahead of the application; past that the socket is not read, which
/// pushes back on a client that floods stdin.
const INBOX: usize = 16;

/// What an upgraded connection must be to carry a WebSocket; hyper's `TokioIo<Upgraded>` is one.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Clients send stdin and resizes in small messages: a hostile one must not make the daemon
/// hold tungstenite's default 64 MiB messages.
const MAX_MESSAGE: usize = 1 << 20;

fn server_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Whether the request asks for a WebSocket upgrade (as the apimachinery's wsstream decides).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let lists = |name, token: &str| tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token));
    lists(header::UPGRADE, "websocket") && lists(header::CONNECTION, "upgrade")
}

/// The comma-separated tokens of every `name` header, in order.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// A WebSocket subprotocol the streaming server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `channel.k8s.io`, also what a client that lists no subprotocol gets.
    Plain,
    /// `base64.channel.k8s.io`.
    Base64,
    /// `v4.channel.k8s.io`.
    V4,
    /// `v4.base64.channel.k8s.io`.
    V4Base64,
    /// `v5.channel.k8s.io`: v4 plus the client's half-close; the only one crictl asks for.
    V5,
    /// `SPDY/3.1+portforward.k8s.io`: crictl's port-forward, for [`ByteStream`].
    SpdyTunnel,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plain => "channel.k8s.io",
            Protocol::Base64 => "base64.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V4Base64 => "v4.base64.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::SpdyTunnel => "SPDY/3.1+portforward.k8s.io",
        }
    }

    /// Whether the error channel carries a JSON `metav1.Status`; older protocols get plain text
    /// on failure and nothing on success.
    pub fn is_v4_status(self) -> bool {
        matches!(self, Protocol::V4 | Protocol::V4Base64 | Protocol::V5)
    }

    fn is_base64(self) -> bool {
        matches!(self, Protocol::Base64 | Protocol::V4Base64)
    }
}

/// Picks the first client-listed subprotocol among `allowed`; a client listing none gets
/// [`Protocol::Plain`] if allowed. `None` means the handshake must be refused.
pub fn negotiate(headers: &HeaderMap, allowed: &[Protocol]) -> Option<Protocol> {
    let mut listed = tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).peekable();
    if listed.peek().is_none() {
        return allowed.contains(&Protocol::Plain).then_some(Protocol::Plain);
    }
    listed.find_map(|name| allowed.iter().copied().find(|protocol| protocol.name() == name))
}

/// Why a WebSocket upgrade cannot be accepted; the request deserves a 400.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    #[error("Sec-WebSocket-Key is not a base64-encoded 16-byte nonce")]
    BadKey,
    #[error("unsupported Sec-WebSocket-Version, only 13 is spoken")]
    Version,
}

/// The 101 response accepting the upgrade with `protocol` (from [`negotiate`]).
pub fn accept_response(headers: &HeaderMap, protocol: Protocol) -> Result<Response<()>, HandshakeError> {
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version != "13") {
        return Err(HandshakeError::Version);
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HandshakeError::MissingKey)?;
    if BASE64.decode(key.as_bytes()).map_or(true, |nonce| nonce.len() != 16) {
        return Err(HandshakeError::BadKey);
    }
    let accept = HeaderValue::try_from(derive_accept_key(key.as_bytes())).expect("base64 is a valid header value");
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let response_headers = response.headers_mut();
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    // RFC 6455 forbids naming a subprotocol the client did not list; client-go fails without one.
    if tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).next().is_some() {
        response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol.name()));
    }
    Ok(response)
}

/// What the client sent on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMessage {
    /// A non-empty payload.
    Data { channel: u8, data: Bytes },
    /// v5 only: the client will send nothing more on `channel` (stdin EOF).
    Close { channel: u8 },
}

/// A channel connection (exec, attach) over an upgraded connection. [`Channels::split`] gives
/// halves for sending and receiving at once; either way the socket is read in a task of its own so
/// pings are answered while the application only sends.
pub struct Channels<IO> {
    sender: ChannelSender<IO>,
    receiver: ChannelReceiver,
}

impl<IO: Io> Channels<IO> {
    /// Starts speaking `protocol` (not [`Protocol::SpdyTunnel`], see [`ByteStream`]) on `io`,
    /// right after the 101 went out. Needs a tokio runtime for its reader task.
    pub fn new(io: IO, protocol: Protocol) -> Self {
        let (sink, stream) = server_socket(io).split();
        let (inbox, receiver) = mpsc::channel(INBOX);
        let reader = tokio::spawn(read_channels(stream, protocol, inbox));
        Self { sender: ChannelSender { sink, protocol, reader }, receiver: ChannelReceiver { inbox: receiver } }
    }

    /// See [`ChannelReceiver::recv`].
    pub async fn recv(&mut self) -> Option<ChannelMessage> {
        self.receiver.recv().await
    }

    /// See [`ChannelSender::send`].
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> io::Result<()> {
        self.sender.send(channel, data).await
    }

    /// See [`ChannelSender::close`].
    pub async fn close(self) {
        self.sender.close().await
    }

    pub fn split(self) -> (ChannelSender<IO>, ChannelReceiver) {
        (self.sender, self.receiver)
    }
}

/// The sending half of [`Channels`]. Dropping it ends the connection, the reading included.
pub struct ChannelSender<IO> {
    sink: SplitSink<WebSocketStream<IO>, Message>,
    protocol: Protocol,
    reader: JoinHandle<()>,
}

impl<IO: Io> ChannelSender<IO> {
    /// Sends `data` on `channel` as one message. An empty `data` is a valid message: the kubelet
    /// opens with one on the first output channel.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> io::Result<()> {
        let message = encode(self.protocol, channel, data)?;
        self.sink.send(message).await.map_err(io_error)
    }

    /// Ends the connection the way client-go reads as a clean end of every channel: a close frame
    /// with code 1000. Waits up to 2 s for the client's close frame or EOF, so the frame is not lost
    /// to a reset.
    pub async fn close(mut self) {
        if let Err(e) = self.sink.send(normal_close()).await {
            tracing::debug!("websocket close frame not sent: {e}");
        }
        if tokio::time::timeout(CLOSE_WAIT, &mut self.reader).await.is_err() {
            tracing::debug!("websocket client did not close in time");
        }
    }
}

impl<IO> Drop for ChannelSender<IO> {
    fn drop(&mut self) {
        // The reader task holds the other half of the socket: without this it would stay open.
        self.reader.abort();
    }
}

/// The receiving half of [`Channels`].
pub struct ChannelReceiver {
    inbox: mpsc::Receiver<ChannelMessage>,
}

impl ChannelReceiver {
    /// The next message from the client; empty ones are skipped. `None` once the client closed,
    /// the connection broke, the client broke the protocol (logged), or the sender was dropped.
    pub async fn recv(&mut self) -> Option<ChannelMessage> {
        self.inbox.recv().await
    }
}

async fn read_channels<IO: Io>(
    mut stream: SplitStream<WebSocketStream<IO>>,
    protocol: Protocol,
    inbox: mpsc::Sender<ChannelMessage>,
) {
    // tungstenite answers pings and close frames from within reads, so this loop is what keeps
    // client-go's heartbeat alive.
    while let Some(message) = stream.next().await {
        // Like the kubelet, the frame type does not matter: the protocol says how to decode.
        let payload = match message {
            Ok(Message::Binary(payload)) => payload,
            Ok(Message::Text(text)) => text.into(),
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("websocket read ended: {e}");
                return;
            }
        };
        match decode(protocol, payload) {
            // An application that stopped receiving loses the message; reading goes on for the pings.
            Ok(Some(message)) => drop(inbox.send(message).await),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("websocket channel protocol error: {e}");
                return;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream close message of {0} bytes instead of 2")]
    StreamClose(usize),
    #[error("bad base64 payload: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// Public for the fuzz targets (fuzz/) only.
#[doc(hidden)]
pub fn decode(protocol: Protocol, mut payload: Bytes) -> Result<Option<ChannelMessage>, FrameError> {
    let Some(&first) = payload.first() else { return Ok(None) };
    if protocol == Protocol::V5 && first == STREAM_CLOSE {
        return match payload[..] {
            [_, channel] => Ok(Some(ChannelMessage::Close { channel })),
            _ => Err(FrameError::StreamClose(payload.len())),
        };
    }
    let data = payload.split_off(1);
    let (channel, data) = if protocol.is_base64() {
        // As Go's byte arithmetic in the kubelet: a non-digit wraps to a channel nobody reads.
        (first.wrapping_sub(b'0'), Bytes::from(BASE64.decode(&data)?))
    } else {
        (first, data)
    };
    Ok((!data.is_empty()).then_some(ChannelMessage::Data { channel, data }))
}

/// Public for the fuzz targets (fuzz/) only.
#[doc(hidden)]
pub fn encode(protocol: Protocol, channel: u8, data: &[u8]) -> io::Result<Message> {
    if !protocol.is_base64() {
        let mut message = Vec::with_capacity(1 + data.len());
        message.push(channel);
        message.extend_from_slice(data);
        return Ok(Message::Binary(message.into()));
    }
    // The channel digit is the byte '0' + channel, which must stay one UTF-8 byte.
    let digit = b'0'.checked_add(channel).filter(u8::is_ascii).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("channel {channel} has no base64 channel digit"))
    })?;
    let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
    text.push(char::from(digit));
    BASE64.encode_string(data, &mut text);
    Ok(Message::Text(text.into()))
}

/// `io` as the server end of a WebSocket whose handshake hyper already did. tokio-tungstenite
/// offers this only as an async fn, though one that is ready at its first poll.
fn server_socket<IO: Io>(io: IO) -> WebSocketStream<IO> {
    WebSocketStream::from_raw_socket(io, Role::Server, Some(server_config()))
        .now_or_never()
        .expect("skipping the handshake never waits")
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::other(e),
    }
}

/// crictl's SPDY-over-WebSocket tunnel as a byte stream: reads are the concatenated payloads of the
/// client's binary messages (a text message is an error, a close frame or EOF is the end), each
/// write becomes one binary message, and shutdown sends a close frame with code 1000. Pings are
/// answered while it is read.
pub struct ByteStream<IO> {
    ws: WebSocketStream<IO>,
    unread: Bytes,
    close_queued: bool,
}

impl<IO: Io> ByteStream<IO> {
    /// Starts the tunnel on `io`, right after the 101 went out.
    pub fn new(io: IO) -> Self {
        Self { ws: server_socket(io), unread: Bytes::new(), close_queued: false }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.unread = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message in a SPDY tunnel",
                    )));
                }
                Some(Ok(Message::Close(_)) | Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)))
                | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut ws = Pin::new(&mut self.get_mut().ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
        ws.as_mut().start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(io_error)?;
        // Flushed at once for writers used to TCP, where flush is a no-op; one that would block
        // is finished by the next write or flush.
        if let Poll::Ready(Err(e)) = ws.poll_flush(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut ws = Pin::new(&mut this.ws);
        if !this.close_queued {
            ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
            match ws.as_mut().start_send(normal_close()) {
                // The client closed first; the reply to its close frame is already queued.
                Ok(()) | Err(WsError::Protocol(ProtocolError::SendAfterClosing) | WsError::AlreadyClosed) => {}
                Err(e) => return Poll::Ready(Err(io_error(e))),
            }
            this.close_queued = true;
        }
        ws.poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn handshake(protocols: Option<&'static str>) -> HeaderMap {
        let mut request = headers(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        if let Some(protocols) = protocols {
            request.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocols));
        }
        request
    }

    async fn client(io: DuplexStream) -> WebSocketStream<DuplexStream> {
        WebSocketStream::from_raw_socket(io, Role::Client, None).await
    }

    async fn channels(protocol: Protocol) -> (Channels<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, peer) = duplex(64 * 1024);
        (Channels::new(server, protocol), client(peer).await)
    }

    async fn next(client: &mut WebSocketStream<DuplexStream>) -> Message {
        tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("client waited too long")
            .expect("connection ended")
            .expect("read failed")
    }

    fn binary(bytes: &[u8]) -> Message {
        Message::Binary(Bytes::copy_from_slice(bytes))
    }

    fn data(channel: u8, data: &'static [u8]) -> Option<ChannelMessage> {
        Some(ChannelMessage::Data { channel, data: Bytes::from_static(data) })
    }

    #[test]
    fn detects_upgrade_case_insensitively() {
        assert!(is_websocket(&headers(&[("upgrade", "WebSocket"), ("connection", "keep-alive, UPGRADE")])));
        assert!(!is_websocket(&headers(&[("upgrade", "websocket"), ("connection", "keep-alive")])));
        assert!(!is_websocket(&headers(&[("upgrade", "h2c"), ("connection", "upgrade")])));
    }

    #[test]
    fn negotiate_follows_client_order() {
        let all = [Protocol::V5, Protocol::V4, Protocol::Plain, Protocol::Base64];
        let request = headers(&[("sec-websocket-protocol", "x.k8s.io, v4.channel.k8s.io, v5.channel.k8s.io")]);
        assert_eq!(negotiate(&request, &all), Some(Protocol::V4));
        let request = headers(&[
            ("sec-websocket-protocol", "base64.channel.k8s.io"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        assert_eq!(negotiate(&request, &all), Some(Protocol::Base64));
        let request = headers(&[("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io")]);
        assert_eq!(negotiate(&request, &[Protocol::SpdyTunnel]), Some(Protocol::SpdyTunnel));
    }

    #[test]
    fn negotiate_refuses_unknown_lists() {
        let request = headers(&[("sec-websocket-protocol", "v5.channel.k8s.io")]);
        assert_eq!(negotiate(&request, &[Protocol::V4, Protocol::Plain]), None);
        let request = headers(&[("sec-websocket-protocol", "chat")]);
        assert_eq!(negotiate(&request, &[Protocol::V5, Protocol::Plain]), None);
    }

    #[test]
    fn negotiate_without_list_is_plain() {
        assert_eq!(negotiate(&HeaderMap::new(), &[Protocol::V5, Protocol::Plain]), Some(Protocol::Plain));
        assert_eq!(negotiate(&HeaderMap::new(), &[Protocol::SpdyTunnel]), None);
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        let response = accept_response(&handshake(Some("v5.channel.k8s.io")), Protocol::V5).expect("accepted");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_PROTOCOL], "v5.channel.k8s.io");
        assert_eq!(response.headers()[header::UPGRADE], "websocket");
    }

    #[test]
    fn accept_names_no_protocol_to_a_client_that_listed_none() {
        let response = accept_response(&handshake(None), Protocol::Plain).expect("accepted");
        assert!(response.headers().get(header::SEC_WEBSOCKET_PROTOCOL).is_none());
    }

    #[test]
    fn accept_refuses_bad_handshakes() {
        let mut request = handshake(None);
        request.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("c2hvcnQ="));
        assert!(matches!(accept_response(&request, Protocol::Plain), Err(HandshakeError::BadKey)));
        request.remove(header::SEC_WEBSOCKET_KEY);
        assert!(matches!(accept_response(&request, Protocol::Plain), Err(HandshakeError::MissingKey)));
        let mut request = handshake(None);
        request.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(matches!(accept_response(&request, Protocol::Plain), Err(HandshakeError::Version)));
    }

    #[tokio::test]
    async fn binary_channels_both_ways() {
        let (mut channels, mut client) = channels(Protocol::V5).await;
        client.send(binary(b"\x00hi")).await.expect("sent");
        assert_eq!(channels.recv().await, data(0, b"hi"));
        channels.send(1, b"out").await.expect("sent");
        assert_eq!(next(&mut client).await, binary(b"\x01out"));
        channels.send(3, b"").await.expect("sent");
        assert_eq!(next(&mut client).await, binary(b"\x03"));
    }

    #[tokio::test]
    async fn base64_channels_both_ways() {
        let (mut channels, mut client) = channels(Protocol::V4Base64).await;
        client.send(Message::Text("0aGk=".into())).await.expect("sent");
        assert_eq!(channels.recv().await, data(0, b"hi"));
        channels.send(2, b"hi").await.expect("sent");
        assert_eq!(next(&mut client).await, Message::Text("2aGk=".into()));
        client.send(Message::Text("0!!".into())).await.expect("sent");
        assert_eq!(channels.recv().await, None);
    }

    #[tokio::test]
    async fn empty_messages_are_skipped() {
        let (mut channels, mut client) = channels(Protocol::V4).await;
        for message in [binary(b""), binary(b"\x00"), binary(b"\x04{}")] {
            client.send(message).await.expect("sent");
        }
        assert_eq!(channels.recv().await, data(4, b"{}"));
    }

    #[tokio::test]
    async fn v5_close_message() {
        let (mut channels, mut client) = channels(Protocol::V5).await;
        client.send(binary(b"\xff\x00")).await.expect("sent");
        assert_eq!(channels.recv().await, Some(ChannelMessage::Close { channel: 0 }));
        client.send(binary(b"\xff")).await.expect("sent");
        assert_eq!(channels.recv().await, None);

        let (mut channels, mut client) = self::channels(Protocol::V4).await;
        client.send(binary(b"\xff\x00")).await.expect("sent");
        assert_eq!(channels.recv().await, data(255, b"\x00"));
    }

    #[tokio::test]
    async fn client_close_ends_receiving() {
        let (mut channels, mut client) = channels(Protocol::V5).await;
        client.send(normal_close()).await.expect("sent");
        assert_eq!(channels.recv().await, None);
        assert!(matches!(next(&mut client).await, Message::Close(Some(frame)) if frame.code == CloseCode::Normal));
        assert!(channels.send(1, b"late").await.is_err());
    }

    #[tokio::test]
    async fn ping_answered_while_only_sending() {
        let (channels, mut client) = channels(Protocol::V5).await;
        let (mut sender, _receiver) = channels.split();
        client.send(Message::Ping(Bytes::from_static(b"beat"))).await.expect("sent");
        assert_eq!(next(&mut client).await, Message::Pong(Bytes::from_static(b"beat")));
        sender.send(1, b"x").await.expect("sent");
        client.send(Message::Ping(Bytes::from_static(b"again"))).await.expect("sent");
        assert_eq!(next(&mut client).await, binary(b"\x01x"));
        assert_eq!(next(&mut client).await, Message::Pong(Bytes::from_static(b"again")));
    }

    #[tokio::test]
    async fn close_sends_normal_closure() {
        let (channels, mut client) = channels(Protocol::V5).await;
        let closing = tokio::spawn(channels.close());
        match next(&mut client).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected a close frame, got {other:?}"),
        }
        // Reading on sends the client's reply, which lets close return before its 2 s.
        assert!(client.next().await.is_none());
        tokio::time::timeout(Duration::from_secs(1), closing).await.expect("closed in time").expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn close_gives_up_on_a_silent_client() {
        let (channels, _client) = channels(Protocol::V5).await;
        let started = tokio::time::Instant::now();
        channels.close().await;
        assert!(started.elapsed() >= CLOSE_WAIT);
    }

    #[tokio::test]
    async fn byte_stream_joins_small_messages() {
        let (server, peer) = duplex(64 * 1024);
        let (mut stream, mut client) = (ByteStream::new(server), client(peer).await);
        let sent: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let pieces = sent.clone();
        let sender = tokio::spawn(async move {
            // SPDY frames arrive cut anywhere: here into pieces of 1 to 7 bytes, a ping among them.
            let (mut rest, mut size) = (&pieces[..], 1);
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at(size.min(rest.len()));
                client.feed(binary(piece)).await.expect("sent");
                (rest, size) = (tail, size % 7 + 1);
            }
            client.send(Message::Ping(Bytes::new())).await.expect("sent");
            client.send(normal_close()).await.expect("sent");
            client
        });
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.expect("read");
        let _client = sender.await.expect("no panic");
        assert_eq!(received, sent);
    }

    #[tokio::test]
    async fn byte_stream_writes_binary_and_closes_normally() {
        let (server, peer) = duplex(64 * 1024);
        let (mut stream, mut client) = (ByteStream::new(server), client(peer).await);
        stream.write_all(b"spdy ").await.expect("written");
        stream.write_all(b"frames").await.expect("written");
        stream.shutdown().await.expect("shut down");
        let mut received = Vec::new();
        loop {
            match next(&mut client).await {
                Message::Binary(data) => received.extend_from_slice(&data),
                Message::Close(Some(frame)) => {
                    assert_eq!(frame.code, CloseCode::Normal);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"spdy frames");
    }

    #[tokio::test]
    async fn byte_stream_rejects_text() {
        let (server, peer) = duplex(64 * 1024);
        let (mut stream, mut client) = (ByteStream::new(server), client(peer).await);
        client.send(Message::Text("oops".into())).await.expect("sent");
        let error = stream.read(&mut [0; 16]).await.expect_err("text refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
