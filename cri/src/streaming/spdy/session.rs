//! The server end of one SPDY/3.1 connection, shaped by what Go's moby/spdystream client does:
//! streams are only ever opened by the client, there is no flow control, and the server must not
//! speak before the client has (the client may swallow bytes that arrive right after the 101).
//!
//! Two tasks run per connection. The reader parses frames and hands DATA to per-stream bounded
//! channels, so a stream nobody reads stalls the reader and, through TCP, the client. The writer
//! owns the header compressor and drains two queues: an unbounded one for SYN_REPLY and
//! RST_STREAM, which [`Stream::reply`] and [`Stream::reset`] need to queue without waiting, and a
//! bounded one for everything else, which gives senders backpressure. The unbounded queue is
//! served first, which also keeps each SYN_REPLY ahead of its stream's first DATA.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::frame::{FLAG_FIN, Frame, FrameError, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, RST_CANCEL, RST_PROTOCOL_ERROR};
use super::headers::{HeaderCompressor, HeaderDecompressor, HeaderError};

/// Largest DATA payload the server sends; bigger writes are split so one stream cannot hog the
/// connection for long.
const DATA_CHUNK: usize = 64 * 1024;
/// DATA frames buffered per stream before the reader waits for the stream's consumer.
const STREAM_QUEUE: usize = 8;
/// Opened streams buffered before the reader waits for [`Incoming::next`].
const INCOMING_QUEUE: usize = 16;
/// Frames buffered for the writer before senders wait.
const WRITE_QUEUE: usize = 64;
/// How long [`Connection::close`] waits for the client to hang up.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The longest frame a client may send: client-go writes at most 32 KiB at a time, and a
/// hostile one must not make the connection buffer 16 MiB frames.
const MAX_INBOUND_FRAME: usize = 1 << 20;
const READ_CHUNK: usize = 16 * 1024;

/// Starts serving a connection whose HTTP upgrade is done. Must run inside a tokio runtime.
///
/// The connection lives until the IO fails, [`Connection::close`] ends it, or the
/// [`Connection`], the [`Incoming`] and every stream handle have been dropped.
pub fn serve<IO>(io: IO) -> (Connection, Incoming)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (urgent_tx, urgent_rx) = mpsc::unbounded_channel();
    let (queue_tx, queue_rx) = mpsc::channel(WRITE_QUEUE);
    let link = Link { urgent: urgent_tx, queue: queue_tx };
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let stop = Arc::new(watch::channel(false).0);
    let last_stream_id = Arc::new(AtomicU32::new(0));

    let writer = Writer {
        io: BufWriter::new(write),
        urgent: urgent_rx,
        queue: queue_rx,
        compressor: HeaderCompressor::new(),
        last_stream_id: last_stream_id.clone(),
        buf: BytesMut::new(),
    };
    let reader = Reader {
        io: read,
        buf: BytesMut::new(),
        decompressor: HeaderDecompressor::new(),
        link: link.downgrade(),
        incoming: Some(incoming_tx),
        streams: HashMap::new(),
        last_stream_id,
    };
    let writer = tokio::spawn(writer.run(stop.clone()));
    let reader = tokio::spawn(reader.run(stop.subscribe()));
    (Connection { link: link.clone(), stop, reader, writer }, Incoming { streams: incoming_rx, _link: link })
}

/// Handle for ending the connection as a whole.
pub struct Connection {
    link: Link,
    stop: Arc<watch::Sender<bool>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Connection {
    /// Ends the connection gracefully: GOAWAY after everything already queued, then the write side
    /// is shut down, then inbound frames are still read (and ignored) until the client hangs up
    /// or a short linger passes. Closing with unread inbound bytes (a client PING, say) would make
    /// the kernel answer with RST, which can destroy output the client has not read yet.
    pub async fn close(self) {
        let Connection { link, stop, mut reader, mut writer } = self;
        let deadline = Instant::now() + CLOSE_LINGER;
        let queued = timeout_at(deadline, link.queue.send(Out::GoAway(GOAWAY_OK))).await;
        drop(link);
        let writer_done = matches!(queued, Ok(Ok(()))) && timeout_at(deadline, &mut writer).await.is_ok();
        let reader_done = timeout_at(deadline, &mut reader).await.is_ok();
        stop.send_replace(true);
        // Both tasks end promptly once stopped; waiting for them means the IO is dropped on return.
        if !writer_done {
            let _ = writer.await;
        }
        if !reader_done {
            let _ = reader.await;
        }
    }
}

/// The streams the client opens, in the order it opened them.
pub struct Incoming {
    streams: mpsc::Receiver<Stream>,
    _link: Link,
}

impl Incoming {
    /// The next stream the client opened, or `None` once the client sent GOAWAY or the connection
    /// ended.
    pub async fn next(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }
}

/// A stream the client opened with SYN_STREAM. Answer it with [`Stream::reply`] (or implicitly
/// by sending) or refuse it with [`Stream::reset`]: the client waits for one or the other.
pub struct Stream {
    pub id: u32,
    headers: Vec<(String, String)>,
    link: Link,
    replied: AtomicBool,
    data: mpsc::Receiver<Bytes>,
}

impl Stream {
    /// The first value of a SYN_STREAM header, matched case-insensitively (Go clients send
    /// `streamType` as `streamtype`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Accepts the stream with a SYN_REPLY carrying no headers, as Go servers do. Only the first
    /// call sends anything; a connection that is gone makes it a no-op.
    pub fn reply(&self) {
        if !self.replied.swap(true, Ordering::Relaxed) {
            let _ = self.link.urgent.send(Out::Reply(self.id));
        }
    }

    /// Refuses or aborts the stream with RST_STREAM CANCEL, which is what the kubelet sends.
    pub fn reset(self) {
        let _ = self.link.urgent.send(Out::Reset { stream_id: self.id, status: RST_CANCEL });
    }

    pub fn split(self) -> (StreamReader, StreamWriter) {
        let replied = self.replied.into_inner();
        let reader = StreamReader { data: self.data, _link: self.link.clone() };
        let writer = StreamWriter { id: self.id, link: self.link, replied, finished: false };
        (reader, writer)
    }
}

/// What the client sends on a stream.
pub struct StreamReader {
    data: mpsc::Receiver<Bytes>,
    _link: Link,
}

impl StreamReader {
    /// The next DATA payload, or `None` once the client finished or reset the stream, sent GOAWAY,
    /// or the connection ended. Data that arrived before any of those is delivered first.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.data.recv().await
    }
}

/// What the server sends on a stream.
pub struct StreamWriter {
    id: u32,
    link: Link,
    replied: bool,
    finished: bool,
}

impl StreamWriter {
    /// Queues `data` as DATA frames, waiting while the connection's write queue is full. Sends the
    /// SYN_REPLY first if the stream was not replied to yet: the client drops DATA that precedes it.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if self.finished {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "SPDY stream already finished"));
        }
        self.ensure_replied()?;
        for chunk in data.chunks(DATA_CHUNK) {
            let out = Out::Data { stream_id: self.id, data: Bytes::copy_from_slice(chunk), fin: false };
            self.link.queue.send(out).await.map_err(|_| connection_gone())?;
        }
        Ok(())
    }

    /// Half-closes the stream with an empty DATA frame carrying FIN, as Go's `Close` does; the
    /// client then reads EOF. Finishing twice is harmless.
    pub async fn finish(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.ensure_replied()?;
        let out = Out::Data { stream_id: self.id, data: Bytes::new(), fin: true };
        self.link.queue.send(out).await.map_err(|_| connection_gone())?;
        self.finished = true;
        Ok(())
    }

    fn ensure_replied(&mut self) -> io::Result<()> {
        if !self.replied {
            self.link.urgent.send(Out::Reply(self.id)).map_err(|_| connection_gone())?;
            self.replied = true;
        }
        Ok(())
    }
}

fn connection_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "SPDY connection closed")
}

/// A frame for the writer to send. Header blocks are compressed by the writer, because the
/// compression context must see blocks in exactly the order they go on the wire.
enum Out {
    Reply(u32),
    Reset { stream_id: u32, status: u32 },
    Data { stream_id: u32, data: Bytes, fin: bool },
    Ping(u32),
    GoAway(u32),
}

/// The writer's two queues. Every user-facing handle holds one, so the writer can tell when all
/// of them are gone.
#[derive(Clone)]
struct Link {
    urgent: mpsc::UnboundedSender<Out>,
    queue: mpsc::Sender<Out>,
}

/// The reader's view of the queues: it must not keep the connection alive on its own.
struct WeakLink {
    urgent: mpsc::WeakUnboundedSender<Out>,
    queue: mpsc::WeakSender<Out>,
}

impl Link {
    fn downgrade(&self) -> WeakLink {
        WeakLink { urgent: self.urgent.downgrade(), queue: self.queue.downgrade() }
    }
}

impl WeakLink {
    fn upgrade(&self) -> Option<Link> {
        Some(Link { urgent: self.urgent.upgrade()?, queue: self.queue.upgrade()? })
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender means the connection is being torn down, just as a `true` does.
    let _ = stop.wait_for(|stop| *stop).await;
}

struct Writer<IO> {
    io: BufWriter<WriteHalf<IO>>,
    urgent: mpsc::UnboundedReceiver<Out>,
    queue: mpsc::Receiver<Out>,
    compressor: HeaderCompressor,
    last_stream_id: Arc<AtomicU32>,
    buf: BytesMut,
}

enum WriterEnd {
    /// Every handle was dropped.
    Abandoned,
    /// GOAWAY went out; [`Connection::close`] decides when the reader stops.
    WentAway,
}

impl<IO: AsyncWrite> Writer<IO> {
    async fn run(mut self, stop: Arc<watch::Sender<bool>>) {
        let mut stop_rx = stop.subscribe();
        let end = tokio::select! {
            _ = stopped(&mut stop_rx) => return,
            end = self.pump() => end,
        };
        match end {
            Ok(WriterEnd::WentAway) => {}
            Ok(WriterEnd::Abandoned) => {
                stop.send_replace(true);
            }
            Err(err) => {
                tracing::debug!(error = %err, "SPDY connection write failed");
                stop.send_replace(true);
            }
        }
    }

    async fn pump(&mut self) -> io::Result<WriterEnd> {
        loop {
            let out = tokio::select! {
                biased;
                Some(out) = self.urgent.recv() => out,
                Some(out) = self.queue.recv() => out,
                else => {
                    self.io.shutdown().await?;
                    return Ok(WriterEnd::Abandoned);
                }
            };
            let went_away = matches!(out, Out::GoAway(_));
            self.write(out).await?;
            if went_away {
                self.io.shutdown().await?;
                return Ok(WriterEnd::WentAway);
            }
            // Batch whatever is already queued into as few writes as the buffer allows.
            if self.urgent.is_empty() && self.queue.is_empty() {
                self.io.flush().await?;
            }
        }
    }

    async fn write(&mut self, out: Out) -> io::Result<()> {
        let frame = match out {
            Out::Reply(stream_id) => {
                let header_block = self.compressor.compress(&[]).map_err(io::Error::other)?;
                Frame::SynReply { stream_id, flags: 0, header_block }
            }
            Out::Reset { stream_id, status } => Frame::RstStream { stream_id, status },
            Out::Data { stream_id, data, fin } => Frame::Data { stream_id, fin, data },
            Out::Ping(id) => Frame::Ping { id },
            Out::GoAway(status) => {
                Frame::GoAway { last_good_stream_id: self.last_stream_id.load(Ordering::Relaxed), status }
            }
        };
        self.buf.clear();
        frame.encode(&mut self.buf).map_err(io::Error::other)?;
        self.io.write_all(&self.buf).await
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("reading: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad header block: {0}")]
    Headers(#[from] HeaderError),
}

enum ReaderEnd {
    Eof,
    GoAway,
}

struct Reader<IO> {
    io: ReadHalf<IO>,
    buf: BytesMut,
    decompressor: HeaderDecompressor,
    link: WeakLink,
    incoming: Option<mpsc::Sender<Stream>>,
    streams: HashMap<u32, mpsc::Sender<Bytes>>,
    last_stream_id: Arc<AtomicU32>,
}

impl<IO: AsyncRead> Reader<IO> {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tokio::select! {
            _ = stopped(&mut stop) => {}
            _ = self.serve() => {}
        }
    }

    async fn serve(&mut self) {
        match self.dispatch().await {
            Ok(ReaderEnd::Eof) => {}
            Ok(ReaderEnd::GoAway) => {
                // Like spdystream: streams end now, but keep consuming input until the client
                // hangs up so closing the socket does not turn into a RST.
                self.incoming = None;
                self.streams.clear();
                self.drain().await;
            }
            Err(ReadError::Io(err)) => tracing::debug!(error = %err, "SPDY connection read failed"),
            Err(err) => {
                tracing::debug!(error = %err, "SPDY protocol error, ending connection");
                // Best effort: the client learns why, but a full queue must not keep us here.
                if let Some(link) = self.link.upgrade() {
                    let _ = link.queue.try_send(Out::GoAway(GOAWAY_PROTOCOL_ERROR));
                }
            }
        }
    }

    async fn dispatch(&mut self) -> Result<ReaderEnd, ReadError> {
        while let Some(frame) = self.next_frame().await? {
            match frame {
                Frame::SynStream { stream_id, flags, header_block, .. } => {
                    self.open(stream_id, flags, &header_block).await?
                }
                Frame::SynReply { header_block, .. } => {
                    // Meaningless from a client, but the decompressor must see every block to
                    // stay in step with the client's compressor.
                    self.decompressor.decompress(&header_block)?;
                }
                Frame::Headers { stream_id, flags, header_block } => {
                    self.decompressor.decompress(&header_block)?;
                    if flags & FLAG_FIN != 0 {
                        self.streams.remove(&stream_id);
                    }
                }
                Frame::Data { stream_id, fin, data } => self.deliver(stream_id, data, fin).await,
                Frame::RstStream { stream_id, .. } => {
                    self.streams.remove(&stream_id);
                }
                // Odd ids are the client's pings; even ones would answer ours, and we send none.
                Frame::Ping { id } if id % 2 == 1 => {
                    if let Some(link) = self.link.upgrade() {
                        let _ = link.queue.send(Out::Ping(id)).await;
                    }
                }
                Frame::GoAway { .. } => return Ok(ReaderEnd::GoAway),
                // SETTINGS and WINDOW_UPDATE only matter for flow control, which spdystream
                // does not implement either.
                Frame::Ping { .. } | Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
            }
        }
        Ok(ReaderEnd::Eof)
    }

    async fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf, MAX_INBOUND_FRAME)? {
                return Ok(Some(frame));
            }
            self.buf.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn open(&mut self, stream_id: u32, flags: u8, header_block: &[u8]) -> Result<(), ReadError> {
        // Decompress even a stream we refuse, to keep the zlib context in step.
        let headers = self.decompressor.decompress(header_block)?;
        if stream_id % 2 == 0 || stream_id <= self.last_stream_id.load(Ordering::Relaxed) {
            // spdystream's answer to an id a client may not use; the connection carries on.
            if let Some(link) = self.link.upgrade() {
                let _ = link.queue.send(Out::Reset { stream_id, status: RST_PROTOCOL_ERROR }).await;
            }
            return Ok(());
        }
        self.last_stream_id.store(stream_id, Ordering::Relaxed);
        // No strong link means every handle is gone and the writer is shutting down.
        let Some(link) = self.link.upgrade() else { return Ok(()) };
        let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE);
        // FIN on SYN_STREAM: the client will send nothing, so the reader may see EOF at once.
        if flags & FLAG_FIN == 0 {
            self.streams.insert(stream_id, data_tx);
        }
        let stream = Stream { id: stream_id, headers, link, replied: AtomicBool::new(false), data: data_rx };
        let unwanted = match &self.incoming {
            Some(incoming) => incoming.send(stream).await.err().map(|err| err.0),
            None => Some(stream),
        };
        if let Some(stream) = unwanted {
            // Nobody takes new streams any more; refuse rather than leave the client waiting.
            self.incoming = None;
            self.streams.remove(&stream_id);
            stream.reset();
        }
        Ok(())
    }

    async fn deliver(&mut self, stream_id: u32, data: Bytes, fin: bool) {
        // DATA for streams that are unknown, finished or reset is ignored, as spdystream does.
        let Some(stream) = self.streams.get(&stream_id) else { return };
        if (!data.is_empty() && stream.send(data).await.is_err()) || fin {
            self.streams.remove(&stream_id);
        }
    }

    async fn drain(&mut self) {
        loop {
            self.buf.clear();
            self.buf.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    const WAIT: Duration = Duration::from_secs(5);

    /// The client side, built from the same codec: enough of spdystream to drive the server.
    struct Client {
        io: DuplexStream,
        buf: BytesMut,
        compressor: HeaderCompressor,
        decompressor: HeaderDecompressor,
    }

    impl Client {
        fn new(io: DuplexStream) -> Self {
            Self {
                io,
                buf: BytesMut::new(),
                compressor: HeaderCompressor::new(),
                decompressor: HeaderDecompressor::new(),
            }
        }

        async fn send(&mut self, frame: Frame) {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf).unwrap();
            self.io.write_all(&buf).await.unwrap();
        }

        async fn open(&mut self, stream_id: u32, headers: &[(&str, &str)]) {
            let header_block = self.compressor.compress(headers).unwrap();
            self.send(Frame::SynStream { stream_id, associated_to: 0, priority: 0, slot: 0, flags: 0, header_block })
                .await;
        }

        async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
            self.send(Frame::Data { stream_id, fin, data: Bytes::copy_from_slice(data) }).await;
        }

        /// The next frame, or `None` at EOF.
        async fn read(&mut self) -> Option<Frame> {
            tokio::time::timeout(WAIT, async {
                loop {
                    if let Some(frame) = Frame::decode(&mut self.buf, super::super::frame::MAX_FRAME_LEN).unwrap() {
                        return Some(frame);
                    }
                    if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                        return None;
                    }
                }
            })
            .await
            .expect("server went quiet")
        }

        async fn expect_reply(&mut self, want: u32) {
            match self.read().await {
                Some(Frame::SynReply { stream_id, flags: 0, header_block }) => {
                    assert_eq!(stream_id, want);
                    assert!(self.decompressor.decompress(&header_block).unwrap().is_empty());
                }
                other => panic!("expected SYN_REPLY for {want}, got {other:?}"),
            }
        }
    }

    fn connect() -> (Client, Connection, Incoming) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (connection, incoming) = serve(server);
        (Client::new(client), connection, incoming)
    }

    async fn next(incoming: &mut Incoming) -> Option<Stream> {
        tokio::time::timeout(WAIT, incoming.next()).await.expect("no stream")
    }

    async fn recv(reader: &mut StreamReader) -> Option<Bytes> {
        tokio::time::timeout(WAIT, reader.recv()).await.expect("no data")
    }

    #[tokio::test]
    async fn exec_like_session() {
        let (mut client, connection, mut incoming) = connect();
        let mut streams = HashMap::new();
        for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout")] {
            client.open(id, &[("streamType", kind)]).await;
            let stream = next(&mut incoming).await.unwrap();
            assert_eq!((stream.id, stream.header("STREAMTYPE")), (id, Some(kind)));
            stream.reply();
            client.expect_reply(id).await;
            streams.insert(kind, stream.split());
        }

        client.data(3, b"hello ", false).await;
        client.data(3, b"world", true).await;
        let (stdin, _) = streams.get_mut("stdin").unwrap();
        assert_eq!(recv(stdin).await.unwrap(), "hello ");
        assert_eq!(recv(stdin).await.unwrap(), "world");
        assert_eq!(recv(stdin).await, None);

        let (_, stdout) = streams.get_mut("stdout").unwrap();
        stdout.send(b"output").await.unwrap();
        stdout.finish().await.unwrap();
        assert_eq!(client.read().await, Some(Frame::Data { stream_id: 5, fin: false, data: "output".into() }));
        assert_eq!(client.read().await, Some(Frame::Data { stream_id: 5, fin: true, data: Bytes::new() }));
        assert!(stdout.send(b"late").await.is_err());

        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.read().await, Some(Frame::Ping { id: 1 }));
        // Frames the server ignores must not disturb it.
        client.send(Frame::Settings { flags: 0, entries: Vec::new() }).await;
        client.send(Frame::WindowUpdate { stream_id: 1, delta: 100 }).await;
        client.send(Frame::Unknown { frame_type: 42 }).await;
        client.send(Frame::Ping { id: 3 }).await;
        assert_eq!(client.read().await, Some(Frame::Ping { id: 3 }));

        let closing = tokio::spawn(connection.close());
        assert_eq!(client.read().await, Some(Frame::GoAway { last_good_stream_id: 5, status: GOAWAY_OK }));
        assert_eq!(client.read().await, None);
        // The server still reads after its GOAWAY; a client PING must not get an answer.
        client.send(Frame::Ping { id: 5 }).await;
        drop(client);
        tokio::time::timeout(CLOSE_LINGER / 2, closing).await.expect("close waits for the client only").unwrap();
    }

    #[tokio::test]
    async fn close_gives_up_on_a_client_that_stays() {
        let (mut client, connection, _incoming) = connect();
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.read().await, Some(Frame::Ping { id: 1 }));
        let started = Instant::now();
        let closing = tokio::spawn(connection.close());
        assert!(matches!(client.read().await, Some(Frame::GoAway { status: GOAWAY_OK, .. })));
        assert_eq!(client.read().await, None);
        closing.await.unwrap();
        assert!(started.elapsed() >= CLOSE_LINGER);
        // The server dropped its end: the client's writes now fail.
        let mut frame = BytesMut::new();
        Frame::Ping { id: 3 }.encode(&mut frame).unwrap();
        assert!(client.io.write_all(&frame).await.is_err());
    }

    #[tokio::test]
    async fn sending_replies_implicitly_and_data_may_precede_the_reply() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "data"), ("port", "80"), ("requestid", "0")]).await;
        client.data(1, b"early", false).await;
        let stream = next(&mut incoming).await.unwrap();
        assert_eq!(stream.header("port"), Some("80"));
        let (mut reader, mut writer) = stream.split();
        assert_eq!(recv(&mut reader).await.unwrap(), "early");
        writer.send(b"x").await.unwrap();
        client.expect_reply(1).await;
        assert_eq!(client.read().await, Some(Frame::Data { stream_id: 1, fin: false, data: "x".into() }));
    }

    #[tokio::test]
    async fn client_goaway_ends_incoming_and_readers() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "stdin")]).await;
        let (mut reader, _writer) = next(&mut incoming).await.unwrap().split();
        client.data(1, b"before", false).await;
        client.send(Frame::GoAway { last_good_stream_id: 0, status: GOAWAY_OK }).await;
        assert_eq!(recv(&mut reader).await.unwrap(), "before");
        assert_eq!(recv(&mut reader).await, None);
        assert!(next(&mut incoming).await.is_none());
    }

    #[tokio::test]
    async fn client_reset_ends_only_that_stream() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "data")]).await;
        client.open(3, &[("streamtype", "data")]).await;
        let (mut first, _) = next(&mut incoming).await.unwrap().split();
        let (mut second, _) = next(&mut incoming).await.unwrap().split();
        client.send(Frame::RstStream { stream_id: 1, status: RST_CANCEL }).await;
        client.data(1, b"ignored", false).await;
        client.data(3, b"still open", false).await;
        assert_eq!(recv(&mut first).await, None);
        assert_eq!(recv(&mut second).await.unwrap(), "still open");
    }

    #[tokio::test]
    async fn refusing_a_stream_resets_it() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "bogus")]).await;
        next(&mut incoming).await.unwrap().reset();
        assert_eq!(client.read().await, Some(Frame::RstStream { stream_id: 1, status: RST_CANCEL }));
    }

    #[tokio::test]
    async fn bad_stream_ids_are_reset_and_the_connection_carries_on() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(2, &[("streamtype", "even")]).await;
        assert_eq!(client.read().await, Some(Frame::RstStream { stream_id: 2, status: RST_PROTOCOL_ERROR }));
        client.open(5, &[("streamtype", "ok")]).await;
        client.open(3, &[("streamtype", "backwards")]).await;
        assert_eq!(client.read().await, Some(Frame::RstStream { stream_id: 3, status: RST_PROTOCOL_ERROR }));
        // The refused blocks were still decompressed, so the next block decodes.
        client.open(7, &[("streamtype", "ok")]).await;
        assert_eq!(next(&mut incoming).await.unwrap().id, 5);
        let stream = next(&mut incoming).await.unwrap();
        assert_eq!((stream.id, stream.header("streamtype")), (7, Some("ok")));
    }

    #[tokio::test]
    async fn large_data_goes_through_in_order() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "data")]).await;
        let (mut reader, mut writer) = next(&mut incoming).await.unwrap().split();
        let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();

        // Out: bigger than every buffer on the way, so the sender has to wait for the client.
        let sent = payload.clone();
        let sender = tokio::spawn(async move {
            writer.send(&sent).await.unwrap();
            writer.finish().await.unwrap();
        });
        client.expect_reply(1).await;
        let mut received = Vec::new();
        loop {
            match client.read().await {
                Some(Frame::Data { stream_id: 1, fin, data }) => {
                    assert!(data.len() <= DATA_CHUNK);
                    received.extend_from_slice(&data);
                    if fin {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        sender.await.unwrap();
        assert!(received == payload);

        // In: the reader task must wait for this consumer rather than drop anything.
        let (client_io, mut client_frames) = (client, payload.clone());
        let feeder = tokio::spawn(async move {
            let mut client = client_io;
            for chunk in client_frames.chunks(32 * 1024) {
                client.data(1, chunk, false).await;
            }
            client.data(1, b"", true).await;
            client_frames.clear();
            client
        });
        let mut received = Vec::new();
        while let Some(data) = recv(&mut reader).await {
            received.extend_from_slice(&data);
        }
        feeder.await.unwrap();
        assert!(received == payload);
    }

    #[tokio::test]
    async fn server_speaks_only_after_the_client() {
        let (mut client, _connection, _incoming) = connect();
        let mut byte = [0u8; 1];
        assert!(tokio::time::timeout(Duration::from_millis(200), client.io.read(&mut byte)).await.is_err());
    }

    #[tokio::test]
    async fn dropping_every_handle_ends_the_connection() {
        let (mut client, connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "stdout")]).await;
        let (reader, mut writer) = next(&mut incoming).await.unwrap().split();
        drop((connection, incoming, reader));
        writer.send(b"last words").await.unwrap();
        drop(writer);
        client.expect_reply(1).await;
        assert_eq!(client.read().await, Some(Frame::Data { stream_id: 1, fin: false, data: "last words".into() }));
        assert_eq!(client.read().await, None);
    }

    #[tokio::test]
    async fn protocol_errors_end_the_connection_with_goaway() {
        let (mut client, _connection, mut incoming) = connect();
        client.open(1, &[("streamtype", "stdin")]).await;
        let (mut reader, _writer) = next(&mut incoming).await.unwrap().split();
        client
            .send(Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                header_block: Bytes::from_static(b"not zlib"),
            })
            .await;
        assert_eq!(client.read().await, Some(Frame::GoAway { last_good_stream_id: 1, status: GOAWAY_PROTOCOL_ERROR }));
        assert_eq!(recv(&mut reader).await, None);
        assert!(next(&mut incoming).await.is_none());
    }
}
