//! A minimal SPDY/3.1 client, as spdystream (client-go's) speaks it: the HTTP/1.1 upgrade,
//! client-initiated streams (odd ids) each waiting for its SYN_REPLY, DATA with FIN for
//! half-closes, zlib-compressed header blocks with the SPDY/3 dictionary (one compression
//! context per direction for the whole connection), and no flow control.
//!
//! On top of it: remote commands (`v5.channel.k8s.io` .. `channel.k8s.io`) and port forwarding
//! (`portforward.k8s.io`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::http::{HANDSHAKE_TIMEOUT, StreamUrl, UpgradeRejected, lossy, read_body, read_head};
use super::{ForwardedConnection, Input, Output, RemoteCommandOptions, StatusFormat};

/// The SPDY/3 draft §2.6.10.1 dictionary: the zlib preset dictionary of every header block.
pub const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");
/// adler32 of [`DICTIONARY`]: the DICTID of the zlib streams.
pub const DICTIONARY_ID: u32 = 0xE3C6_A7C2;

/// The remote command protocols client-go offers over SPDY, in its order.
pub const REMOTE_COMMAND_PROTOCOLS: [&str; 5] =
    ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// client-go's wait for each SYN_REPLY (createStreamResponseTimeout).
const STREAM_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to end a forward's error stream after its data stream ended.
const ERROR_STREAM_TIMEOUT: Duration = Duration::from_secs(10);

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
pub const CANCEL: u32 = 5;
const MAX_DATA: usize = 0xFF_FFFF;

/// Compresses header blocks for one connection: one zlib stream with the dictionary, a sync
/// flush after each block.
pub struct HeaderCompressor(Compress);

impl Default for HeaderCompressor {
    fn default() -> Self {
        let mut zlib = Compress::new(Compression::best(), true);
        // Only fails for a stream that already started.
        zlib.set_dictionary(DICTIONARY).expect("a new zlib stream takes a dictionary");
        Self(zlib)
    }
}

impl HeaderCompressor {
    /// The bytes of `block` since the previous flush, ending with a sync flush.
    pub fn compress(&mut self, block: &[u8]) -> anyhow::Result<Vec<u8>> {
        let start = self.0.total_in();
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            self.0.compress_vec(&block[consumed..], &mut out, FlushCompress::Sync).context("compressing headers")?;
            if (self.0.total_in() - start) as usize == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses the header blocks of one connection's other direction.
pub struct HeaderDecompressor(Decompress);

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self(Decompress::new(true))
    }
}

impl HeaderDecompressor {
    /// Inflates one frame's compressed block, which must be consumed whole.
    pub fn decompress(&mut self, compressed: &[u8]) -> anyhow::Result<Vec<u8>> {
        let start = self.0.total_in();
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = (consumed, out.len());
            match self.0.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => {
                    bail!("the header compression stream ended (it must go on for the connection)")
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.0.set_dictionary(DICTIONARY).context("setting the SPDY/3 dictionary")?;
                        continue;
                    }
                    Some(other) => {
                        bail!("header block wants dictionary {other:#010x}, not SPDY/3's {DICTIONARY_ID:#010x}")
                    }
                    None => bail!("bad compressed header block: {e}"),
                },
            }
            let consumed = (self.0.total_in() - start) as usize;
            if consumed == compressed.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if (consumed, out.len()) == before {
                bail!("compressed payload size was incorrect: {} of {} bytes used", consumed, compressed.len());
            }
        }
    }
}

/// An uncompressed name/value block: u32 count, then u32-length-prefixed names and values.
pub fn encode_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
            block.extend_from_slice(&(part.len() as u32).to_be_bytes());
            block.extend_from_slice(part);
        }
    }
    block
}

/// Parses a name/value block as spdystream does, strictly: names lower-case and unique, the
/// block used up exactly.
pub fn decode_headers(block: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let mut rest = block;
    let mut take = |n: usize| -> anyhow::Result<&[u8]> {
        if rest.len() < n {
            bail!("header block {block:?} is cut short");
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = be32(take(4)?);
    let mut headers: Vec<(String, String)> = Vec::new();
    for _ in 0..count {
        let len = be32(take(4)?) as usize;
        let name = String::from_utf8(take(len)?.to_vec()).map_err(|_| anyhow!("a header name is not UTF-8"))?;
        let len = be32(take(4)?) as usize;
        let value = String::from_utf8(take(len)?.to_vec()).map_err(|_| anyhow!("header {name:?}: value not UTF-8"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            bail!("header name {name:?} is empty or not lower-case");
        }
        if headers.iter().any(|(n, _)| *n == name) {
            bail!("header {name:?} appears twice (multiple values go in one, NUL-separated)");
        }
        headers.push((name, value));
    }
    if !rest.is_empty() {
        bail!("{} bytes after the header block's {count} pairs", rest.len());
    }
    Ok(headers)
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A frame as read, header blocks already inflated (and checked).
#[derive(Debug)]
enum Frame {
    SynStream {
        id: u32,
    },
    SynReply {
        id: u32,
        fin: bool,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        status: u32,
    },
    Data {
        id: u32,
        fin: bool,
        payload: Vec<u8>,
    },
    /// HEADERS, SETTINGS, WINDOW_UPDATE: nothing to do (spdystream ignores them too).
    Ignored,
}

/// Reads the next frame; None on EOF between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    inflate: &mut HeaderDecompressor,
) -> anyhow::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match io.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading a frame"),
    }
    io.read_exact(&mut head[1..]).await.context("reading a frame header")?;
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await.with_context(|| format!("reading a {length}-byte frame body"))?;
    if head[0] & 0x80 == 0 {
        let id = be32(&head[..4]);
        if id == 0 {
            bail!("DATA frame on stream 0");
        }
        return Ok(Some(Frame::Data { id, fin: flags & FLAG_FIN != 0, payload: body }));
    }
    let version = u16::from_be_bytes([head[0], head[1]]) & 0x7FFF;
    let kind = u16::from_be_bytes([head[2], head[3]]);
    if version != 3 {
        bail!("control frame of type {kind} has version {version}, not 3");
    }
    let want = |n: usize, name: &str| {
        if length < n { Err(anyhow!("{name} frame of {length} bytes, under {n}")) } else { Ok(()) }
    };
    let exactly = |n: usize, name: &str| {
        if length != n { Err(anyhow!("{name} frame of {length} bytes, not {n}")) } else { Ok(()) }
    };
    let stream_id = |b: &[u8]| be32(b) & 0x7FFF_FFFF;
    Ok(Some(match kind {
        SYN_STREAM => {
            want(10, "SYN_STREAM")?;
            decode_headers(&inflate.decompress(&body[10..])?)?;
            Frame::SynStream { id: stream_id(&body) }
        }
        SYN_REPLY => {
            want(4, "SYN_REPLY")?;
            let headers = decode_headers(&inflate.decompress(&body[4..])?).context("SYN_REPLY")?;
            let forbidden = ["connection", "keep-alive", "proxy-connection", "transfer-encoding"];
            if let Some((name, _)) = headers.iter().find(|(n, _)| forbidden.contains(&n.as_str())) {
                bail!("SYN_REPLY carries header {name:?}, which SPDY forbids");
            }
            Frame::SynReply { id: stream_id(&body), fin: flags & FLAG_FIN != 0 }
        }
        RST_STREAM => {
            exactly(8, "RST_STREAM")?;
            let status = be32(&body[4..]);
            if status == 0 {
                bail!("RST_STREAM with status 0");
            }
            Frame::RstStream { id: stream_id(&body), status }
        }
        SETTINGS => {
            want(4, "SETTINGS")?;
            let count = be32(&body) as usize;
            exactly(4 + 8 * count, "SETTINGS")?;
            Frame::Ignored
        }
        PING => {
            exactly(4, "PING")?;
            if flags != 0 {
                bail!("PING with flags {flags:#x}");
            }
            Frame::Ping(be32(&body))
        }
        GOAWAY => {
            exactly(8, "GOAWAY")?;
            Frame::GoAway { status: be32(&body[4..]) }
        }
        HEADERS => {
            want(4, "HEADERS")?;
            decode_headers(&inflate.decompress(&body[4..])?).context("HEADERS")?;
            Frame::Ignored
        }
        WINDOW_UPDATE => {
            exactly(8, "WINDOW_UPDATE")?;
            Frame::Ignored
        }
        other => bail!("unknown control frame type {other} (the Go framer drops the connection)"),
    }))
}

/// Reads frames from `bytes` as the client's read loop does, up to the end or the first error;
/// the fuzz targets (fuzz/) reach the client's parser through this. Returns the frames read.
#[doc(hidden)]
pub fn parse_frames(mut bytes: &[u8]) -> anyhow::Result<usize> {
    use futures::FutureExt as _;
    let mut inflate = HeaderDecompressor::default();
    let mut frames = 0;
    // Reading from a slice never waits, so each read is ready at its first poll.
    while read_frame(&mut bytes, &mut inflate).now_or_never().expect("a slice never waits")?.is_some() {
        frames += 1;
    }
    Ok(frames)
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&[0x80, 0x03]);
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

fn data(id: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// What the reader hands a stream.
#[derive(Debug)]
enum Event {
    Data(Vec<u8>),
    /// The server half-closed the stream.
    Fin,
    /// The server reset the stream.
    Reset(u32),
    /// The connection ended: cleanly (GOAWAY, TCP EOF) or not.
    Ended(Result<(), String>),
}

struct Slot {
    reply: Option<oneshot::Sender<Result<(), String>>>,
    events: mpsc::UnboundedSender<Event>,
    fin_received: bool,
}

struct Writer {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    deflate: HeaderCompressor,
    next_id: u32,
    next_ping: u32,
}

struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    streams: Mutex<HashMap<u32, Slot>>,
    /// Why the connection ended, once it has.
    ended: Mutex<Option<Result<(), String>>>,
    ping_echoed: AtomicBool,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ended(&self) -> Option<Result<(), String>> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn write(&self, frame: &[u8]) -> anyhow::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.io.write_all(frame).await.context("writing a SPDY frame")?;
        writer.io.flush().await.context("writing a SPDY frame")?;
        Ok(())
    }

    /// Marks the connection over and tells every stream.
    fn end(&self, result: Result<(), String>) {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(result.clone());
        for (_, slot) in self.streams().drain() {
            if let Some(reply) = slot.reply {
                let why = result.clone().err().unwrap_or_else(|| "the connection ended".to_owned());
                let _ = reply.send(Err(why));
            }
            let _ = slot.events.send(Event::Ended(result.clone()));
        }
    }
}

/// A SPDY/3.1 client connection over an upgraded byte stream.
pub struct Connection {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Starts the connection on `io`, the byte stream right after the upgrade.
    pub fn new<T: AsyncRead + AsyncWrite + Send + 'static>(io: T) -> Self {
        let (read, write) = tokio::io::split(io);
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(Writer {
                io: Box::new(write) as Box<dyn AsyncWrite + Send + Unpin>,
                deflate: HeaderCompressor::default(),
                next_id: 1,
                next_ping: 1,
            }),
            streams: Mutex::new(HashMap::new()),
            ended: Mutex::new(None),
            ping_echoed: AtomicBool::new(false),
        });
        let reader = tokio::spawn(read_loop(read, shared.clone()));
        Self { shared, reader }
    }

    /// Opens a stream with `headers` and waits for its SYN_REPLY, as client-go's CreateStream.
    pub async fn open(&self, headers: &[(&str, &str)]) -> anyhow::Result<Stream> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let id = {
            let mut writer = self.shared.writer.lock().await;
            if let Some(ended) = self.shared.ended() {
                bail!("opening a stream {headers:?}: the connection is over ({ended:?})");
            }
            let id = writer.next_id;
            writer.next_id += 2;
            let compressed = writer.deflate.compress(&encode_headers(headers))?;
            let mut body = Vec::with_capacity(10 + compressed.len());
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&0u32.to_be_bytes());
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&compressed);
            let slot = Slot { reply: Some(reply_tx), events: events_tx, fin_received: false };
            self.shared.streams().insert(id, slot);
            writer.io.write_all(&control(SYN_STREAM, 0, &body)).await.context("writing SYN_STREAM")?;
            writer.io.flush().await.context("writing SYN_STREAM")?;
            id
        };
        match tokio::time::timeout(STREAM_REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(Ok(()))) => Ok(Stream { id, shared: self.shared.clone(), events, eof: false, reset: None }),
            Ok(Ok(Err(why))) => bail!("stream {id} {headers:?}: {why}"),
            Ok(Err(_)) => bail!("stream {id} {headers:?}: the connection ended before its SYN_REPLY"),
            Err(_) => bail!("stream {id} {headers:?}: no SYN_REPLY within {STREAM_REPLY_TIMEOUT:?}"),
        }
    }

    /// Sends a PING (odd id), which the server must echo.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut writer = self.shared.writer.lock().await;
        let id = writer.next_ping;
        writer.next_ping += 2;
        writer.io.write_all(&control(PING, 0, &id.to_be_bytes())).await.context("writing PING")?;
        writer.io.flush().await.context("writing PING")
    }

    /// Whether the server echoed one of our PINGs.
    pub fn ping_echoed(&self) -> bool {
        self.shared.ping_echoed.load(Ordering::SeqCst)
    }

    /// Why the connection ended, once it has.
    pub fn ended(&self) -> Option<Result<(), String>> {
        self.shared.ended()
    }

    /// Sends GOAWAY and closes the writing side, as client-go's Close ends.
    pub async fn close(&self) {
        let mut writer = self.shared.writer.lock().await;
        let goaway = control(GOAWAY, 0, &[0, 0, 0, 0, 0, 0, 0, 0]);
        let _ = writer.io.write_all(&goaway).await;
        let _ = writer.io.shutdown().await;
    }
}

async fn read_loop<R: AsyncRead + Send + 'static>(mut io: ReadHalf<R>, shared: Arc<Shared>) {
    let mut inflate = HeaderDecompressor::default();
    let result = loop {
        let frame = match read_frame(&mut io, &mut inflate).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(format!("SPDY protocol error from the server: {e:#}")),
        };
        match handle(frame, &shared).await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(format!("SPDY protocol error from the server: {e:#}")),
        }
    };
    shared.end(result);
}

/// Acts on one frame; false when the connection is over (GOAWAY).
async fn handle(frame: Frame, shared: &Shared) -> anyhow::Result<bool> {
    match frame {
        Frame::SynReply { id, fin } => {
            let mut streams = shared.streams();
            let Some(slot) = streams.get_mut(&id) else { return Ok(true) };
            let reply = slot.reply.take().ok_or_else(|| anyhow!("a second SYN_REPLY for stream {id}"))?;
            let _ = reply.send(Ok(()));
            if fin {
                slot.fin_received = true;
                let _ = slot.events.send(Event::Fin);
            }
        }
        Frame::Data { id, fin, payload } => {
            let mut streams = shared.streams();
            let Some(slot) = streams.get_mut(&id) else { return Ok(true) };
            if slot.reply.is_some() {
                bail!("DATA on stream {id} before its SYN_REPLY (client-go drops such data)");
            }
            if slot.fin_received {
                bail!("DATA on stream {id} after its FIN");
            }
            if !payload.is_empty() {
                let _ = slot.events.send(Event::Data(payload));
            }
            if fin {
                slot.fin_received = true;
                let _ = slot.events.send(Event::Fin);
            }
        }
        Frame::RstStream { id, status } => {
            let mut streams = shared.streams();
            if let Some(mut slot) = streams.remove(&id) {
                match slot.reply.take() {
                    Some(reply) => {
                        let _ =
                            reply.send(Err(format!("reset by the server (status {status}) instead of a SYN_REPLY")));
                    }
                    None => {
                        let _ = slot.events.send(Event::Reset(status));
                    }
                }
            }
        }
        Frame::Ping(id) if id % 2 == 1 => shared.ping_echoed.store(true, Ordering::SeqCst),
        Frame::Ping(id) => shared.write(&control(PING, 0, &id.to_be_bytes())).await?,
        Frame::GoAway { status } => {
            if status != 0 {
                bail!("GOAWAY with status {status}");
            }
            return Ok(false);
        }
        Frame::SynStream { id } => {
            bail!("the server opened stream {id}: these protocols have clients open every stream")
        }
        Frame::Ignored => {}
    }
    Ok(true)
}

/// One stream of a connection.
pub struct Stream {
    id: u32,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    eof: bool,
    reset: Option<u32>,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The server's RST_STREAM status, if it reset the stream.
    pub fn reset_status(&self) -> Option<u32> {
        self.reset
    }

    /// A handle for writing, separate from the reading side.
    pub fn writer(&self) -> StreamWriter {
        StreamWriter { id: self.id, shared: self.shared.clone() }
    }

    /// The next chunk of data; None at the end (FIN, RST_STREAM, or the connection's clean end).
    /// Cancel-safe.
    pub async fn read(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.eof {
            return Ok(None);
        }
        match self.events.recv().await {
            Some(Event::Data(bytes)) => Ok(Some(bytes)),
            Some(Event::Fin) => {
                self.eof = true;
                Ok(None)
            }
            Some(Event::Reset(status)) => {
                self.eof = true;
                self.reset = Some(status);
                Ok(None)
            }
            Some(Event::Ended(Ok(()))) | None => {
                self.eof = true;
                Ok(None)
            }
            Some(Event::Ended(Err(why))) => {
                self.eof = true;
                Err(anyhow!(why))
            }
        }
    }

    pub async fn read_to_end(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(bytes) = self.read().await? {
            all.extend_from_slice(&bytes);
        }
        Ok(all)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.streams().remove(&self.id);
    }
}

/// Writes to one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamWriter {
    pub async fn write(&self, bytes: &[u8]) -> anyhow::Result<()> {
        for chunk in bytes.chunks(MAX_DATA) {
            self.shared.write(&data(self.id, false, chunk)).await?;
        }
        Ok(())
    }

    /// Half-closes: an empty DATA frame with FIN, as spdystream's Close.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.shared.write(&data(self.id, true, &[])).await
    }

    pub async fn reset(&self, status: u32) -> anyhow::Result<()> {
        let mut body = self.id.to_be_bytes().to_vec();
        body.extend_from_slice(&status.to_be_bytes());
        self.shared.write(&control(RST_STREAM, 0, &body)).await
    }
}

/// `POST`s the SPDY/3.1 upgrade offering `protocols` (one header line each) and checks the
/// 101; the stream right after it and the negotiated protocol.
pub async fn upgrade(url: &str, protocols: &[&str]) -> anyhow::Result<(tokio::net::TcpStream, String)> {
    let url = StreamUrl::parse(url)?;
    let handshake = async {
        let mut io = url.connect().await?;
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: crisp-conformance\r\nContent-Length: 0\r\n\
             Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
            url.path, url.authority
        );
        for protocol in protocols {
            request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
        }
        request.push_str("\r\n");
        io.write_all(request.as_bytes()).await.context("sending the upgrade request")?;
        let head = read_head(&mut io).await.with_context(|| format!("the upgrade of {url}"))?;
        if head.status != 101 {
            let body = read_body(&mut io, &head).await;
            return Err(UpgradeRejected { status: head.status, body }.into());
        }
        let connection = head.get("connection").unwrap_or_default().to_ascii_lowercase();
        let upgrade = head.get("upgrade").unwrap_or_default().to_ascii_lowercase();
        if !connection.contains("upgrade") || !upgrade.contains("spdy/3.1") {
            bail!("101 without Connection: Upgrade and Upgrade: SPDY/3.1: {:?}", head.headers);
        }
        let negotiated: Vec<&str> = head.all("x-stream-protocol-version").collect();
        match negotiated.as_slice() {
            [one] if protocols.contains(one) => {}
            _ => bail!("the 101's X-Stream-Protocol-Version is {negotiated:?}, want one of {protocols:?}"),
        }
        let negotiated = negotiated[0].to_owned();
        // client-go reads the 101 through a buffer it then drops: anything the server sends
        // before the client's first frame would be lost.
        let mut early = [0u8; 1];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), io.peek(&mut early)).await {
            if n > 0 {
                bail!(
                    "the server sent bytes right after the 101, before the client's first frame (client-go loses them)"
                );
            }
        }
        Ok((io, negotiated))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.map_err(|_| anyhow!("upgrading {url} timed out"))?
}

/// Opens a remote command over SPDY as client-go's v2..v5 streamers do, and starts its driver.
pub(crate) async fn open_remote_command(
    url: &str,
    options: &RemoteCommandOptions,
    input: mpsc::UnboundedReceiver<Input>,
    output: mpsc::UnboundedSender<Output>,
) -> anyhow::Result<(StatusFormat, JoinHandle<()>)> {
    let (io, protocol) = upgrade(url, &REMOTE_COMMAND_PROTOCOLS).await?;
    let version = match protocol.as_str() {
        "v5.channel.k8s.io" => 5,
        "v4.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    };
    let format = if version >= 4 { StatusFormat::Json } else { StatusFormat::Text };
    let connection = Connection::new(io);
    let open = |kind: &'static str| {
        let connection = &connection;
        async move { connection.open(&[("streamtype", kind)]).await }
    };
    let error = open("error").await?;
    // Echoed before the server can have started the command: it reads this before the
    // streams it waits for.
    connection.ping().await?;
    let stdin = if options.stdin.is_some() { Some(open("stdin").await?) } else { None };
    let stdout = if options.stdout { Some(open("stdout").await?) } else { None };
    let stderr = if options.stderr && !options.tty { Some(open("stderr").await?) } else { None };
    let resize = if options.tty && version >= 3 { Some(open("resize").await?) } else { None };
    let streams = Streams { error, stdin, stdout, stderr, resize };
    Ok((format, tokio::spawn(drive(connection, streams, input, output))))
}

struct Streams {
    error: Stream,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

async fn read_optional(stream: &mut Option<Stream>) -> anyhow::Result<Option<Vec<u8>>> {
    match stream {
        Some(stream) => stream.read().await,
        None => Ok(None),
    }
}

async fn drive(
    connection: Connection,
    mut streams: Streams,
    mut input: mpsc::UnboundedReceiver<Input>,
    output: mpsc::UnboundedSender<Output>,
) {
    let stdin = streams.stdin.as_ref().map(Stream::writer);
    let resize = streams.resize.as_ref().map(Stream::writer);
    let (mut stdout_open, mut stderr_open, mut error_open) = (streams.stdout.is_some(), streams.stderr.is_some(), true);
    let mut input_open = true;
    let result: anyhow::Result<()> = async {
        while stdout_open || stderr_open || error_open {
            tokio::select! {
                command = input.recv(), if input_open => match command {
                    Some(Input::Stdin(bytes)) => {
                        stdin.as_ref().ok_or_else(|| anyhow!("stdin was not asked for"))?.write(&bytes).await?;
                    }
                    Some(Input::CloseStdin) => {
                        stdin.as_ref().ok_or_else(|| anyhow!("stdin was not asked for"))?.close().await?;
                    }
                    Some(Input::Resize(width, height)) => {
                        if let Some(resize) = &resize {
                            resize.write(format!("{{\"Width\":{width},\"Height\":{height}}}\n").as_bytes()).await?;
                        }
                    }
                    None => input_open = false,
                },
                chunk = read_optional(&mut streams.stdout), if stdout_open => match chunk? {
                    Some(bytes) => { let _ = output.send(Output::Stdout(bytes)); }
                    None => stdout_open = false,
                },
                chunk = read_optional(&mut streams.stderr), if stderr_open => match chunk? {
                    Some(bytes) => { let _ = output.send(Output::Stderr(bytes)); }
                    None => stderr_open = false,
                },
                chunk = streams.error.read(), if error_open => match chunk? {
                    Some(bytes) => { let _ = output.send(Output::Error(bytes)); }
                    None => error_open = false,
                },
            }
        }
        if !connection.ping_echoed() {
            // The server had to read the PING before the streams the command waited for; give
            // an echo in flight a moment.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !connection.ping_echoed() {
                bail!("the server never echoed the client's PING (client-go pings every 5 s)");
            }
        }
        Ok(())
    }
    .await;
    connection.close().await;
    let _ = output.send(Output::End(result.map_err(|e| format!("{e:#}"))));
}

/// Upgrades for port forwarding.
pub(crate) async fn open_port_forward(url: &str) -> anyhow::Result<Connection> {
    let (io, _) = upgrade(url, &[PORT_FORWARD_PROTOCOL]).await?;
    Ok(Connection::new(io))
}

/// Forwards one connection as client-go's handleConnection: the error stream (half-closed at
/// once), then the data stream, with the same port and request id.
pub(crate) async fn forward(
    connection: &Arc<Connection>,
    port: u16,
    request: u32,
) -> anyhow::Result<ForwardedConnection> {
    let (port, request) = (port.to_string(), request.to_string());
    let error = connection.open(&[("streamtype", "error"), ("port", &port), ("requestid", &request)]).await?;
    error.writer().close().await?;
    let data = connection.open(&[("streamtype", "data"), ("port", &port), ("requestid", &request)]).await?;
    let (local, remote) = tokio::io::duplex(64 * 1024);
    let failure = Arc::new(Mutex::new(None));
    let pump = tokio::spawn(pump(data, error, remote, failure.clone()));
    Ok(ForwardedConnection { io: local, failure, _connection: connection.clone(), pump })
}

async fn pump(mut data: Stream, mut error: Stream, remote: DuplexStream, failure: Arc<Mutex<Option<String>>>) {
    let (mut from_user, mut to_user) = tokio::io::split(remote);
    let writer = data.writer();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_user.read(&mut buf).await {
                Ok(0) | Err(_) => break writer.close().await,
                Ok(n) => writer.write(&buf[..n]).await?,
            }
        }
    });
    let fail = |why: String| {
        failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
    };
    let downstream = async {
        while let Some(bytes) = data.read().await? {
            if to_user.write_all(&bytes).await.is_err() {
                break;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = downstream.await {
        fail(format!("{e:#}"));
    }
    // client-go: reset the data stream, then wait for the error stream's end before closing
    // the local connection.
    let _ = data.writer().reset(CANCEL).await;
    upstream.abort();
    match tokio::time::timeout(ERROR_STREAM_TIMEOUT, error.read_to_end()).await {
        Ok(Ok(text)) if text.is_empty() => {}
        Ok(Ok(text)) => fail(format!("an error occurred forwarding: {}", lossy(&text))),
        Ok(Err(e)) => fail(format!("reading the error stream: {e:#}")),
        Err(_) => fail(format!(
            "the server did not end the error stream within {ERROR_STREAM_TIMEOUT:?} of the data stream's end \
             (client-go keeps the local connection open until it does)"
        )),
    }
    let _ = to_user.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        use sha2::Digest;
        assert_eq!(DICTIONARY.len(), 1423);
        let sum = sha2::Sha256::digest(DICTIONARY);
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02");
    }

    #[test]
    fn header_blocks_round_trip_through_one_context_per_direction() {
        let mut deflate = HeaderCompressor::default();
        let mut inflate = HeaderDecompressor::default();
        let blocks: [&[(&str, &str)]; 4] = [
            &[("streamtype", "error")],
            &[("streamtype", "stdout")],
            &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
            &[],
        ];
        for (i, headers) in blocks.iter().enumerate() {
            let compressed = deflate.compress(&encode_headers(headers)).unwrap();
            if i == 0 {
                // zlib, best compression, FDICT; DICTID = adler32 of the dictionary.
                assert_eq!(&compressed[..2], &[0x78, 0xF9]);
                assert_eq!(be32(&compressed[2..6]), DICTIONARY_ID);
            } else {
                assert_ne!(&compressed[..2], &[0x78, 0xF9], "block {i} restarts the stream");
            }
            assert!(compressed.ends_with(&[0, 0, 0xFF, 0xFF]), "block {i} ends with a sync flush");
            let decoded = decode_headers(&inflate.decompress(&compressed).unwrap()).unwrap();
            let want: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            assert_eq!(decoded, want);
        }
        // A fresh decompressor cannot read a later block: the context carries over.
        let later = deflate.compress(&encode_headers(&[("streamtype", "stdout")])).unwrap();
        assert!(HeaderDecompressor::default().decompress(&later).is_err());
    }

    /// Blocks C zlib made (Python's zlib, level 9, the dictionary, a sync flush each), as Go's
    /// compress/zlib makes them: an empty SYN_REPLY block, then `streamtype: stdout`.
    #[test]
    fn header_blocks_of_c_zlib_decompress() {
        let hex = |s: &str| {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>()
        };
        let mut inflate = HeaderDecompressor::default();
        let first = inflate.decompress(&hex("78f9e3c6a7c202a6230600000000ffff")).unwrap();
        assert_eq!(decode_headers(&first).unwrap(), []);
        let second = inflate.decompress(&hex("020246705a2b294a4dcc851627c0549b925f5a02000000ffff")).unwrap();
        assert_eq!(decode_headers(&second).unwrap(), [("streamtype".to_owned(), "stdout".to_owned())]);
    }

    #[test]
    fn big_header_blocks_round_trip() {
        let value = "x".repeat(100_000);
        let mut deflate = HeaderCompressor::default();
        let mut inflate = HeaderDecompressor::default();
        let compressed = deflate.compress(&encode_headers(&[("big", &value)])).unwrap();
        let decoded = decode_headers(&inflate.decompress(&compressed).unwrap()).unwrap();
        assert_eq!(decoded, [("big".to_owned(), value)]);
    }

    #[test]
    fn header_blocks_are_checked() {
        assert_eq!(encode_headers(&[("streamType", "stdin")]), encode_headers(&[("streamtype", "stdin")]));
        let mut upper = encode_headers(&[("streamtype", "stdin")]);
        upper[8] = b'S';
        assert!(decode_headers(&upper).is_err());
        let twice = {
            let mut block = encode_headers(&[("a", "1"), ("a", "2")]);
            block[3] = 2;
            block
        };
        assert!(decode_headers(&twice).is_err());
        let mut trailing = encode_headers(&[("a", "1")]);
        trailing.push(0);
        assert!(decode_headers(&trailing).is_err());
        assert!(decode_headers(&encode_headers(&[("a", "1")])[..10]).is_err());
    }

    #[test]
    fn frames_are_laid_out_as_spdy3() {
        assert_eq!(control(PING, 0, &1u32.to_be_bytes()), [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        assert_eq!(data(3, true, b""), [0, 0, 0, 3, 1, 0, 0, 0]);
        assert_eq!(data(5, false, b"hi"), [0, 0, 0, 5, 0, 0, 0, 2, b'h', b'i']);
    }

    #[tokio::test]
    async fn frames_read_back() {
        let mut deflate = HeaderCompressor::default();
        let mut wire = Vec::new();
        let mut reply = 1u32.to_be_bytes().to_vec();
        reply.extend(deflate.compress(&encode_headers(&[])).unwrap());
        wire.extend(control(SYN_REPLY, 0, &reply));
        wire.extend(data(1, true, b"hello"));
        wire.extend(control(RST_STREAM, 0, &[0, 0, 0, 3, 0, 0, 0, 5]));
        wire.extend(control(PING, 0, &2u32.to_be_bytes()));
        wire.extend(control(SETTINGS, 0, &[0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 1, 0]));
        wire.extend(control(GOAWAY, 0, &[0; 8]));
        let mut reader = &wire[..];
        let mut inflate = HeaderDecompressor::default();
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut reader, &mut inflate).await.unwrap() {
            frames.push(format!("{frame:?}"));
        }
        assert_eq!(
            frames,
            [
                "SynReply { id: 1, fin: false }",
                "Data { id: 1, fin: true, payload: [104, 101, 108, 108, 111] }",
                "RstStream { id: 3, status: 5 }",
                "Ping(2)",
                "Ignored",
                "GoAway { status: 0 }",
            ]
        );
        let mut unknown = &control(5, 0, &[])[..];
        assert!(read_frame(&mut unknown, &mut inflate).await.is_err());
        let mut version2 = &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..];
        assert!(read_frame(&mut version2, &mut inflate).await.is_err());
    }

    /// A connection against a scripted server on a duplex pipe: SYN_REPLY, data, FIN.
    #[tokio::test]
    async fn a_stream_opens_reads_and_ends() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let connection = Connection::new(client);
        let serve = tokio::spawn(async move {
            let mut inflate = HeaderDecompressor::default();
            let mut deflate = HeaderCompressor::default();
            let head = read_raw_control(&mut server).await;
            assert_eq!(u16::from_be_bytes([head.0[2], head.0[3]]), SYN_STREAM);
            let headers = decode_headers(&inflate.decompress(&head.1[10..]).unwrap()).unwrap();
            assert_eq!(headers, [("streamtype".to_owned(), "stdout".to_owned())]);
            assert_eq!(be32(&head.1), 1);
            let mut reply = 1u32.to_be_bytes().to_vec();
            reply.extend(deflate.compress(&encode_headers(&[])).unwrap());
            server.write_all(&control(SYN_REPLY, 0, &reply)).await.unwrap();
            server.write_all(&data(1, false, b"hel")).await.unwrap();
            server.write_all(&data(1, true, b"lo")).await.unwrap();
            server.write_all(&control(GOAWAY, 0, &[0; 8])).await.unwrap();
            server
        });
        let mut stream = connection.open(&[("streamtype", "stdout")]).await.unwrap();
        assert_eq!(stream.read_to_end().await.unwrap(), b"hello");
        let _server = serve.await.unwrap();
    }

    async fn read_raw_control(io: &mut DuplexStream) -> ([u8; 8], Vec<u8>) {
        let mut head = [0u8; 8];
        io.read_exact(&mut head).await.unwrap();
        let mut body = vec![0u8; u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize];
        io.read_exact(&mut body).await.unwrap();
        (head, body)
    }
}
