//! Clients of the URLs that the CRI `Exec`, `Attach` and `PortForward` RPCs return, speaking
//! what kubelet's and crictl's client-go speaks: remote commands over SPDY/3.1 or WebSocket
//! channels (`v5.channel.k8s.io` and older), port forwarding over SPDY/3.1 or SPDY tunnelled
//! through a WebSocket (`SPDY/3.1+portforward.k8s.io`).
//!
//! They stand in for crictl and kubectl, so they are strict: a deviation from the protocol that
//! client-go would trip over (or silently lose data on) is an error here, with words saying what
//! the server did.

mod http;
pub mod spdy;
pub mod websocket;

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use http::{StreamUrl, UpgradeRejected, http_status};
pub use websocket::ChannelProtocol;

/// How a client reaches a streaming URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// An HTTP/1.1 `POST` upgraded to SPDY/3.1, as crictl's default and critest do.
    Spdy,
    /// A WebSocket `GET`, as `crictl --transport websocket` does: `v5.channel.k8s.io` for remote
    /// commands and `SPDY/3.1+portforward.k8s.io` (SPDY tunnelled in binary messages) for
    /// port forwarding.
    WebSocket,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Spdy => "spdy",
            Transport::WebSocket => "websocket",
        })
    }
}

/// What a remote command (exec or attach) asks for. It must match the flags of the CRI request
/// that made the URL: the server counts streams from those.
#[derive(Clone, Debug, Default)]
pub struct RemoteCommandOptions {
    /// Opens stdin and sends these bytes; stdin is then closed unless `keep_stdin_open`.
    pub stdin: Option<Vec<u8>>,
    pub keep_stdin_open: bool,
    pub stdout: bool,
    /// Ignored with `tty`: a terminal has no stderr of its own.
    pub stderr: bool,
    pub tty: bool,
    /// The terminal size (width, height) sent first, with `tty`.
    pub resize: Option<(u16, u16)>,
}

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteCommandResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What the error stream held: the Status JSON (v4, v5) or, with the older protocols, the
    /// failure's text as a JSON string. None when the stream ended empty (a success).
    pub status: Option<Value>,
    /// 0 on success, the `ExitCode` cause of a `NonZeroExitCode` failure, -1 for any other failure.
    pub exit_code: i32,
}

impl RemoteCommandResult {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs a remote command to its end: opens the streams `options` asks for, sends stdin (closing
/// it unless told not to) and the terminal size, and collects the output and the status.
pub async fn remote_command(
    url: &str,
    transport: Transport,
    options: &RemoteCommandOptions,
    timeout: Duration,
) -> anyhow::Result<RemoteCommandResult> {
    let run = async {
        let session = RemoteCommandSession::open(url, transport, options).await?;
        session.finish(timeout).await
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow!("the remote command at {url} took over {timeout:?}"))?
}

/// Where the error stream's contents come from: Status JSON (v4, v5) or plain text on failure
/// (v1 to v3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    Json,
    Text,
}

/// What the session sends to the transport's driver.
#[derive(Debug)]
pub(crate) enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(u16, u16),
}

/// What the transport's driver hands back to the session.
#[derive(Debug)]
pub(crate) enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Bytes of the error stream.
    Error(Vec<u8>),
    /// The session is over: cleanly, or why not.
    End(Result<(), String>),
}

/// A remote command in progress, for cases that write after seeing output (attach).
pub struct RemoteCommandSession {
    input: mpsc::UnboundedSender<Input>,
    output: mpsc::UnboundedReceiver<Output>,
    format: StatusFormat,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    error: Vec<u8>,
    ended: Option<Result<(), String>>,
    driver: JoinHandle<()>,
}

impl Drop for RemoteCommandSession {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl RemoteCommandSession {
    /// Upgrades `url` and opens the streams `options` asks for; then sends `options.stdin`
    /// (closing stdin unless `keep_stdin_open`) and the terminal size.
    pub async fn open(url: &str, transport: Transport, options: &RemoteCommandOptions) -> anyhow::Result<Self> {
        match transport {
            Transport::Spdy => Self::open_spdy(url, options).await,
            Transport::WebSocket => Self::open_websocket(url, ChannelProtocol::V5, options).await,
        }
    }

    /// Over SPDY, offering `v5.channel.k8s.io` down to `channel.k8s.io` as client-go does.
    pub async fn open_spdy(url: &str, options: &RemoteCommandOptions) -> anyhow::Result<Self> {
        let (input, input_rx) = mpsc::unbounded_channel();
        let (output_tx, output) = mpsc::unbounded_channel();
        let (format, driver) = spdy::open_remote_command(url, options, input_rx, output_tx).await?;
        Self::started(input, output, format, driver, options)
    }

    /// Over a WebSocket with one channel protocol.
    pub async fn open_websocket(
        url: &str,
        protocol: ChannelProtocol,
        options: &RemoteCommandOptions,
    ) -> anyhow::Result<Self> {
        let (input, input_rx) = mpsc::unbounded_channel();
        let (output_tx, output) = mpsc::unbounded_channel();
        let driver = websocket::open_remote_command(url, protocol, options, input_rx, output_tx).await?;
        Self::started(input, output, protocol.status_format(), driver, options)
    }

    fn started(
        input: mpsc::UnboundedSender<Input>,
        output: mpsc::UnboundedReceiver<Output>,
        format: StatusFormat,
        driver: JoinHandle<()>,
        options: &RemoteCommandOptions,
    ) -> anyhow::Result<Self> {
        let session = Self {
            input,
            output,
            format,
            stdout: Vec::new(),
            stderr: Vec::new(),
            error: Vec::new(),
            ended: None,
            driver,
        };
        if let (true, Some((width, height))) = (options.tty, options.resize) {
            session.resize(width, height)?;
        }
        if let Some(stdin) = &options.stdin {
            if !stdin.is_empty() {
                session.send_stdin(stdin)?;
            }
            if !options.keep_stdin_open {
                session.close_stdin()?;
            }
        }
        Ok(session)
    }

    fn send(&self, input: Input) -> anyhow::Result<()> {
        self.input.send(input).map_err(|_| anyhow!("the streaming session is over"))
    }

    pub fn send_stdin(&self, data: &[u8]) -> anyhow::Result<()> {
        self.send(Input::Stdin(data.to_vec()))
    }

    /// Half-closes stdin: SPDY DATA+FIN on the stdin stream; v5 WebSocket `[255, 0]`. The
    /// WebSocket protocols before v5 cannot, and send nothing.
    pub fn close_stdin(&self) -> anyhow::Result<()> {
        self.send(Input::CloseStdin)
    }

    /// Sends a terminal size (with tty, v3 and later).
    pub fn resize(&self, width: u16, height: u16) -> anyhow::Result<()> {
        self.send(Input::Resize(width, height))
    }

    /// Stdout so far.
    pub fn stdout(&self) -> &[u8] {
        &self.stdout
    }

    /// Stderr so far.
    pub fn stderr(&self) -> &[u8] {
        &self.stderr
    }

    /// Takes in what the driver handed back; false once the session is over.
    fn take(&mut self, output: Option<Output>) -> bool {
        match output {
            Some(Output::Stdout(bytes)) => self.stdout.extend_from_slice(&bytes),
            Some(Output::Stderr(bytes)) => self.stderr.extend_from_slice(&bytes),
            Some(Output::Error(bytes)) => self.error.extend_from_slice(&bytes),
            Some(Output::End(result)) => self.ended = Some(result),
            None => {
                self.ended.get_or_insert_with(|| Err("the streaming session's driver stopped".to_owned()));
            }
        }
        self.ended.is_none()
    }

    /// Waits until stdout (all of it so far) contains `pattern`; stdout so far.
    pub async fn read_stdout_until(&mut self, pattern: &[u8], timeout: Duration) -> anyhow::Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if contains(&self.stdout, pattern) {
                return Ok(self.stdout.clone());
            }
            if let Some(ended) = &self.ended {
                bail!(
                    "the session ended ({}) with stdout {:?}, which lacks {:?}",
                    ended.as_ref().err().map_or("cleanly", String::as_str),
                    String::from_utf8_lossy(&self.stdout),
                    String::from_utf8_lossy(pattern)
                );
            }
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(output) => {
                    self.take(output);
                }
                Err(_) => bail!(
                    "stdout {:?} still lacks {:?} after {timeout:?}",
                    String::from_utf8_lossy(&self.stdout),
                    String::from_utf8_lossy(pattern)
                ),
            }
        }
    }

    /// Takes in whatever arrives within `period`: for checking that output stays as it is.
    pub async fn settle(&mut self, period: Duration) {
        let deadline = tokio::time::Instant::now() + period;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(output) => {
                    self.take(output);
                }
                Err(_) => break,
            }
        }
    }

    /// Waits for the end of the session (stdout and stderr ended, the status read, the
    /// connection closed as the protocol says) and reads the status.
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<RemoteCommandResult> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(output) => {
                    self.take(output);
                }
                Err(_) => bail!(
                    "the remote command did not end within {timeout:?} (stdout {:?}, stderr {:?})",
                    String::from_utf8_lossy(&self.stdout),
                    String::from_utf8_lossy(&self.stderr)
                ),
            }
        }
        if let Some(Err(why)) = self.ended.take() {
            bail!(
                "{why} (stdout so far {:?}, stderr {:?}, error stream {:?})",
                String::from_utf8_lossy(&self.stdout),
                String::from_utf8_lossy(&self.stderr),
                String::from_utf8_lossy(&self.error)
            );
        }
        let (status, exit_code) = interpret_status(self.format, &self.error)?;
        Ok(RemoteCommandResult {
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            status,
            exit_code,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The status and exit code an error stream says, as client-go reads it (errorDecoderV4 for
/// JSON, the v1 decoder for text).
pub(crate) fn interpret_status(format: StatusFormat, error: &[u8]) -> anyhow::Result<(Option<Value>, i32)> {
    if error.is_empty() {
        return Ok((None, 0));
    }
    if format == StatusFormat::Text {
        return Ok((Some(Value::String(String::from_utf8_lossy(error).into_owned())), -1));
    }
    let status: Value = serde_json::from_slice(error)
        .with_context(|| format!("the error stream holds no Status JSON: {:?}", String::from_utf8_lossy(error)))?;
    let code = match status.get("status").and_then(Value::as_str) {
        Some("Success") => 0,
        Some("Failure") if status.get("reason").and_then(Value::as_str) == Some("NonZeroExitCode") => {
            let details = status
                .get("details")
                .ok_or_else(|| anyhow!("error stream protocol error: NonZeroExitCode without details in {status}"))?;
            let causes = details.get("causes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let cause = causes
                .iter()
                .find(|c| c.get("reason").and_then(Value::as_str) == Some("ExitCode"))
                .ok_or_else(|| anyhow!("error stream protocol error: no ExitCode cause in {status}"))?;
            let message = cause.get("message").and_then(Value::as_str).unwrap_or_default();
            let code: u8 = message
                .parse()
                .map_err(|_| anyhow!("error stream protocol error: ExitCode {message:?} is no number 0-255"))?;
            i32::from(code)
        }
        Some("Failure") => -1,
        _ => bail!("the error stream's Status is neither Success nor Failure: {status}"),
    };
    Ok((Some(status), code))
}

/// One TCP connection forwarded into a pod: bytes written go to the pod's port, bytes read
/// come from it. A failure the server reports on the error stream (or a protocol fault) turns
/// the end of the stream into an error.
pub struct ForwardedConnection {
    io: DuplexStream,
    failure: Arc<Mutex<Option<String>>>,
    /// Keeps the session's connection alive while this end is used.
    _connection: Arc<spdy::Connection>,
    pump: JoinHandle<()>,
}

impl ForwardedConnection {
    /// What went wrong with the forward so far: the server's error stream text or a protocol fault.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ForwardedConnection {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl AsyncRead for ForwardedConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => match this.failure() {
                Some(why) => Poll::Ready(Err(std::io::Error::other(why))),
                None => Poll::Ready(Ok(())),
            },
            other => other,
        }
    }
}

impl AsyncWrite for ForwardedConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A port-forward session: one SPDY connection (plain or tunnelled in a WebSocket) that carries
/// any number of forwarded TCP connections, each an error and a data stream paired by request id.
pub struct PortForwarder {
    connection: Arc<spdy::Connection>,
    next_request: u32,
}

impl PortForwarder {
    pub async fn open(url: &str, transport: Transport) -> anyhow::Result<Self> {
        let connection = match transport {
            Transport::Spdy => spdy::open_port_forward(url).await?,
            Transport::WebSocket => websocket::open_port_forward(url).await?,
        };
        Ok(Self { connection: Arc::new(connection), next_request: 0 })
    }

    /// Forwards one new connection to the pod's `port`.
    pub async fn connect(&mut self, port: u16) -> anyhow::Result<ForwardedConnection> {
        let request = self.next_request;
        self.next_request += 1;
        spdy::forward(&self.connection, port, request).await
    }
}

/// One forwarded connection to the pod's `port` over a session of its own.
pub async fn port_forward(url: &str, transport: Transport, port: u16) -> anyhow::Result<ForwardedConnection> {
    PortForwarder::open(url, transport).await?.connect(port).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_read_as_client_go_reads_them() {
        assert_eq!(interpret_status(StatusFormat::Json, b"").unwrap(), (None, 0));
        let success = br#"{"metadata":{},"status":"Success"}"#;
        assert_eq!(interpret_status(StatusFormat::Json, success).unwrap().1, 0);
        let exit3 = json!({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3",
            "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}});
        assert_eq!(interpret_status(StatusFormat::Json, exit3.to_string().as_bytes()).unwrap(), (Some(exit3), 3));
        let no_details = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode"}"#;
        assert!(interpret_status(StatusFormat::Json, no_details).is_err());
        let no_cause = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"message":"3"}]}}"#;
        assert!(interpret_status(StatusFormat::Json, no_cause).is_err());
        let big = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"256"}]}}"#;
        assert!(interpret_status(StatusFormat::Json, big).is_err());
        let internal = br#"{"metadata":{},"status":"Failure","message":"Internal error occurred","reason":"InternalError","code":500}"#;
        assert_eq!(interpret_status(StatusFormat::Json, internal).unwrap().1, -1);
        assert!(interpret_status(StatusFormat::Json, br#"{"status":"Pending"}"#).is_err());
        assert!(interpret_status(StatusFormat::Json, b"command terminated").is_err());
        let (text, code) = interpret_status(StatusFormat::Text, b"command terminated with non-zero exit code").unwrap();
        assert_eq!((text.unwrap(), code), (json!("command terminated with non-zero exit code"), -1));
    }

    #[test]
    fn patterns() {
        assert!(contains(b"hello", b"ell"));
        assert!(contains(b"hello", b""));
        assert!(!contains(b"he", b"hello"));
    }
}
