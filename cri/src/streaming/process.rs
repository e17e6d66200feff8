//! A remote command's process end: its stdio as the pod's monitor streams it
//! ([`crisp_runtime::monitor::frame`]), whatever transport the client came over.

use bytes::Bytes;
use crisp_runtime::container::StdioSession;
use crisp_runtime::monitor::frame::{Frame, MAX_PAYLOAD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the client sends the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin(Bytes),
    /// The client's stdin ended.
    CloseStdin,
    Resize {
        width: u16,
        height: u16,
    },
}

/// What the process sends the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited (an attach: the container did) with this code.
    Exited(i32),
    /// It could not run, or its stream broke; the message says why.
    Failed(String),
}

/// Carries `input` to the process and its output to `output` until it ends. Dropping the
/// future closes the monitor connection: an exec is killed, an attach let go.
pub async fn bridge(session: StdioSession, mut input: mpsc::Receiver<Input>, output: mpsc::Sender<Output>) -> Outcome {
    let (stream, _scratch) = session.into_parts();
    let stream = match stream.set_nonblocking(true).and_then(|()| tokio::net::UnixStream::from_std(stream)) {
        Ok(stream) => stream,
        Err(e) => return Outcome::Failed(format!("the monitor's stream: {e}")),
    };
    let (mut from_monitor, mut to_monitor) = stream.into_split();
    let forward_input = async move {
        let mut buf = Vec::new();
        while let Some(message) = input.recv().await {
            buf.clear();
            match message {
                Input::Stdin(data) => Frame::data(&data, Frame::Stdin, &mut buf),
                Input::CloseStdin => Frame::CloseStdin.encode(&mut buf),
                Input::Resize { width, height } => Frame::Resize { width, height }.encode(&mut buf),
            }
            if to_monitor.write_all(&buf).await.is_err() {
                break;
            }
        }
        // The client has nothing more to say; the process goes on until it ends.
        std::future::pending::<()>().await
    };
    let forward_output = async move {
        let mut buf = Vec::with_capacity(2 * MAX_PAYLOAD);
        let mut chunk = vec![0u8; MAX_PAYLOAD];
        loop {
            loop {
                let (frame, used) = match Frame::decode(&buf) {
                    Ok(Some(decoded)) => decoded,
                    Ok(None) => break,
                    Err(e) => return Outcome::Failed(format!("the monitor's stream: {e}")),
                };
                buf.drain(..used);
                let message = match frame {
                    Frame::Stdout(data) => Output::Stdout(data.into()),
                    Frame::Stderr(data) => Output::Stderr(data.into()),
                    Frame::Exit(code) => return Outcome::Exited(code),
                    Frame::Error(message) => return Outcome::Failed(message),
                    // Only clients send the others.
                    _ => continue,
                };
                // A client that has gone does not stop the process's output being read.
                let _ = output.send(message).await;
            }
            match from_monitor.read(&mut chunk).await {
                Ok(0) => return Outcome::Failed("the monitor ended the stream without an exit code".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Outcome::Failed(format!("reading from the monitor: {e}")),
            }
        }
    };
    tokio::select! {
        outcome = forward_output => outcome,
        () = forward_input => unreachable!("forward_input never ends"),
    }
}
