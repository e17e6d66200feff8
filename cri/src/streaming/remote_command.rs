//! Exec and attach over either transport: the client's streams are gathered, the process
//! started through the pod's monitor, and its stdio carried until it ends, when the status
//! goes out on the error stream. The end comes from the process, never from the client's
//! stdin: a client may hold stdin open after the command is done.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crisp_runtime::container::StdioSession;
use tokio::sync::{mpsc, oneshot};

use super::process::{Input, Outcome, Output, bridge};
use super::remote::{Command, ResizeParser, Version, status};
use super::spdy;
use super::tokens::Stdio;
use super::websocket::{self, ChannelMessage};
use crate::daemon::Daemon;

/// How long a client has to open the streams it asked for, as in the kubelet.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages buffered each way between the client and the monitor connection.
const QUEUE: usize = 16;

/// An exec or attach, as its token said.
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    pub command: Command,
    pub container_id: String,
    /// Exec's command line.
    pub cmd: Vec<String>,
    pub stdio: Stdio,
}

impl RemoteCommand {
    async fn start(&self, daemon: &Daemon) -> Result<StdioSession, String> {
        let Stdio { stdin, stdout, stderr, tty } = self.stdio;
        let containers = &daemon.containers;
        let started = match self.command {
            Command::Attach => containers.attach(&self.container_id, stdin, stdout, stderr && !tty).await,
            Command::Exec => {
                let view = containers.status(&self.container_id).map_err(|e| e.to_string())?;
                let process = crate::service::exec_process(&view, self.cmd.clone(), tty).map_err(|e| e.to_string())?;
                containers.exec_stream(&self.container_id, process, stdin).await
            }
        };
        started.map_err(|e| e.to_string())
    }

    /// Starts the process and carries its stdio until it ends; `None` when the client went
    /// away first (the process is then let go: an exec killed, an attach detached).
    async fn run(
        &self,
        daemon: &Daemon,
        input: mpsc::Receiver<Input>,
        output: mpsc::Sender<Output>,
        client_gone: oneshot::Receiver<()>,
    ) -> Option<Outcome> {
        let session = match self.start(daemon).await {
            Ok(session) => session,
            Err(message) => return Some(Outcome::Failed(message)),
        };
        tokio::select! {
            outcome = bridge(session, input, output) => Some(outcome),
            _ = client_gone => {
                tracing::info!(container = %self.container_id, "the client went away mid-stream");
                None
            }
        }
    }
}

/// Runs the command over a SPDY connection the client has upgraded to.
pub async fn over_spdy(daemon: Arc<Daemon>, request: RemoteCommand, version: Version, io: impl super::Io) {
    let (connection, mut incoming) = spdy::serve(io);
    let Stdio { stdin, stdout, stderr, tty } = request.stdio;
    let wanted = [
        ("error", true),
        ("stdin", stdin),
        ("stdout", stdout),
        ("stderr", stderr && !tty),
        ("resize", tty && version.resizes()),
    ];
    let mut streams: Vec<(&str, spdy::Stream)> = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while wanted.iter().any(|(name, on)| *on && !streams.iter().any(|(n, _)| n == name)) {
        let stream = match tokio::time::timeout_at(deadline, incoming.next()).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return,
            Err(_) => {
                tracing::info!(container = %request.container_id, "the client did not open its streams in time");
                return connection.close().await;
            }
        };
        stream.reply();
        let kind = stream.header("streamtype").unwrap_or_default().to_owned();
        match wanted.iter().find(|(name, on)| *on && *name == kind) {
            Some((name, _)) if !streams.iter().any(|(n, _)| n == name) => streams.push((name, stream)),
            _ => tracing::debug!(kind, "a stream not asked for, left unread"),
        }
    }
    let mut take = |name: &str| streams.iter().position(|(n, _)| *n == name).map(|i| streams.swap_remove(i).1.split());
    let (_error_reader, mut error) = take("error").expect("waited for above");
    let stdin_stream = take("stdin");
    let stdout_stream = take("stdout");
    let stderr_stream = take("stderr");
    let resize_stream = take("resize");

    // The connection's end (the client gone) cancels the process; streams opened later are
    // refused.
    let (closed_tx, closed) = oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(extra) = incoming.next().await {
            extra.reset();
        }
        let _ = closed_tx.send(());
    });

    let (input_tx, input_rx) = mpsc::channel(QUEUE);
    if let Some((mut reader, _writer)) = stdin_stream {
        let input = input_tx.clone();
        tokio::spawn(async move {
            let _writer = _writer;
            while let Some(data) = reader.recv().await {
                if input.send(Input::Stdin(data)).await.is_err() {
                    return;
                }
            }
            let _ = input.send(Input::CloseStdin).await;
        });
    }
    if let Some((mut reader, _writer)) = resize_stream {
        let input = input_tx.clone();
        tokio::spawn(async move {
            let _writer = _writer;
            let mut parser = ResizeParser::default();
            while let Some(data) = reader.recv().await {
                let Ok(sizes) = parser.feed(&data) else { return };
                for size in sizes {
                    if input.send(size).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(input_tx);
    let (output_tx, mut output_rx) = mpsc::channel::<Output>(QUEUE);
    let output = tokio::spawn(async move {
        let (mut stdout, mut stderr) = (stdout_stream.map(|s| s.1), stderr_stream.map(|s| s.1));
        while let Some(message) = output_rx.recv().await {
            let (writer, data) = match message {
                Output::Stdout(data) => (stdout.as_mut(), data),
                Output::Stderr(data) => (stderr.as_mut(), data),
            };
            if let Some(writer) = writer {
                // A client that stopped reading one stream still gets the others and the status.
                let _ = writer.send(&data).await;
            }
        }
        for writer in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
            let _ = writer.finish().await;
        }
    });

    let Some(outcome) = request.run(&daemon, input_rx, output_tx, closed).await else { return };
    let _ = output.await;
    let status = status(version, request.command, &outcome);
    if !status.is_empty() {
        let _ = error.send(&status).await;
    }
    let _ = error.finish().await;
    connection.close().await;
}

/// Runs the command over a WebSocket connection (the channel protocols).
pub async fn over_websocket(
    daemon: Arc<Daemon>,
    request: RemoteCommand,
    version: Version,
    channels: websocket::Channels<impl super::Io>,
) {
    let Stdio { stdin, stdout, stderr, tty } = request.stdio;
    let stderr = stderr && !tty;
    let (mut sender, mut receiver) = channels.split();
    // As the kubelet does: an empty message on the first channel written tells the client
    // the streams are open.
    let first = if stdout {
        1
    } else if stderr {
        2
    } else {
        3
    };
    if sender.send(first, &[]).await.is_err() {
        return;
    }

    let (input_tx, input_rx) = mpsc::channel(QUEUE);
    let (closed_tx, closed) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut parser = Some(ResizeParser::default());
        while let Some(message) = receiver.recv().await {
            let inputs = match message {
                ChannelMessage::Data { channel: 0, data } if stdin => vec![Input::Stdin(data)],
                ChannelMessage::Close { channel: 0 } if stdin => vec![Input::CloseStdin],
                // As the kubelet: a bad size ends the resizes, not the session.
                ChannelMessage::Data { channel: 4, data } => match parser.as_mut().map(|p| p.feed(&data)) {
                    Some(Ok(sizes)) => sizes,
                    Some(Err(e)) => {
                        tracing::info!("resize channel: {e}; resizes ignored from now on");
                        parser = None;
                        Vec::new()
                    }
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            for input in inputs {
                let _ = input_tx.send(input).await;
            }
        }
        let _ = closed_tx.send(());
    });
    let (output_tx, mut output_rx) = mpsc::channel::<Output>(QUEUE);
    let output = tokio::spawn(async move {
        while let Some(message) = output_rx.recv().await {
            let (channel, data): (u8, Bytes) = match message {
                Output::Stdout(data) if stdout => (1, data),
                Output::Stderr(data) if stderr => (2, data),
                _ => continue,
            };
            if sender.send(channel, &data).await.is_err() {
                break;
            }
        }
        sender
    });

    let Some(outcome) = request.run(&daemon, input_rx, output_tx, closed).await else { return };
    let Ok(mut sender) = output.await else { return };
    let status = status(version, request.command, &outcome);
    if !status.is_empty() {
        let _ = sender.send(3, &status).await;
    }
    sender.close().await;
}
