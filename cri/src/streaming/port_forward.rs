//! Port forwarding: connections to `localhost:PORT` inside a pod's network namespace, made
//! from a thread that entered it (nothing runs in the pod, no helper binary on the host).
//!
//! Over SPDY (`portforward.k8s.io`, also tunnelled in WebSocket as crictl does) each forwarded
//! connection is a pair of streams, `error` and `data`, tied by their `requestid`. Over the
//! WebSocket channel protocol, each port the request named is two channels.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spdy;
use super::websocket::{self, ChannelMessage};
use crate::daemon::Daemon;

/// As containerd: a port that does not answer within this is an error for that connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pair waits for its other stream.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
const CHUNK: usize = 32 * 1024;
/// Forwarded connections one client may hold open at once.
const MAX_FORWARDS: usize = 128;

/// Where a pod's ports are: its network namespace, or the host's for a host-network pod.
#[derive(Debug, Clone)]
pub struct PodPorts {
    pub sandbox_id: String,
    pub netns: Option<PathBuf>,
}

impl PodPorts {
    pub fn of(daemon: &Daemon, sandbox_id: &str) -> Result<PodPorts, String> {
        let view = daemon.pods.status(sandbox_id).map_err(|e| e.to_string())?;
        if !view.ready {
            return Err(format!("pod sandbox {sandbox_id} is not ready"));
        }
        Ok(PodPorts { sandbox_id: view.record.id.to_string(), netns: view.record.netns })
    }

    async fn dial(&self, port: u16) -> std::io::Result<TcpStream> {
        let stream = match self.netns.clone() {
            Some(netns) => {
                // A thread of its own enters the namespace (never a runtime worker).
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(crisp_network::netns::connect_local(&netns, port, DIAL_TIMEOUT));
                });
                rx.await.map_err(|_| std::io::Error::other("the dialing thread ended"))??
            }
            None => {
                let dial = |address: &'static str| async move {
                    tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((address, port)))
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                };
                // IPv6 is the fallback; the IPv4 error is the one reported, as in a pod.
                return match dial("127.0.0.1").await {
                    Ok(stream) => Ok(stream),
                    Err(v4) => dial("::1").await.map_err(|_| v4),
                };
            }
        };
        stream.set_nonblocking(true)?;
        TcpStream::from_std(stream)
    }

    fn error_text(&self, port: u16, e: &std::io::Error) -> String {
        format!("error forwarding port {port} to pod {}: {e}", self.sandbox_id)
    }
}

/// Serves SPDY port forwarding until the client closes the connection.
pub async fn over_spdy(pod: PodPorts, io: impl super::Io) {
    let (connection, mut incoming) = spdy::serve(io);
    let pod = Arc::new(pod);
    let mut halves: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>, tokio::time::Instant)> =
        HashMap::new();
    let mut forwards = tokio::task::JoinSet::new();
    while let Some(stream) = incoming.next().await {
        let port = stream.header("port").and_then(|p| p.parse::<u16>().ok()).filter(|&p| p > 0);
        let kind = stream.header("streamtype").unwrap_or_default().to_owned();
        if port.is_none() || !matches!(kind.as_str(), "error" | "data") {
            tracing::info!(kind, "port forward: a stream without a valid port or type, refused");
            stream.reset();
            continue;
        }
        stream.reply();
        // Older clients send no request ID: a pair is then error stream N and data N+2.
        let request = match stream.header("requestid") {
            Some(id) => id.to_owned(),
            None if kind == "error" => stream.id.to_string(),
            None => stream.id.saturating_sub(2).to_string(),
        };
        let now = tokio::time::Instant::now();
        halves.retain(|_, (_, _, since)| now.duration_since(*since) < PAIR_TIMEOUT);
        let entry = halves.entry(request.clone()).or_insert((None, None, now));
        let slot = if kind == "error" { &mut entry.0 } else { &mut entry.1 };
        if slot.is_some() {
            tracing::info!(request, kind, "port forward: a second {kind} stream for one request, refused");
            stream.reset();
            continue;
        }
        *slot = Some(stream);
        if forwards.len() >= MAX_FORWARDS {
            // Finished forwards leave the set as they are collected.
            while forwards.try_join_next().is_some() {}
        }
        if let (Some(_), Some(_)) = (&entry.0, &entry.1) {
            if forwards.len() >= MAX_FORWARDS {
                tracing::info!(
                    request,
                    "port forward: {MAX_FORWARDS} connections already open on this session, refused"
                );
                let (Some(error), Some(data), _) = halves.remove(&request).expect("present") else { unreachable!() };
                let (_, mut error_out) = error.split();
                let _ = error_out.send(format!("more than {MAX_FORWARDS} connections at once").as_bytes()).await;
                let _ = error_out.finish().await;
                data.reset();
                continue;
            }
            let (Some(error), Some(data), _) = halves.remove(&request).expect("present") else { unreachable!() };
            let port = data.header("port").and_then(|p| p.parse().ok()).expect("checked above");
            forwards.spawn(forward_pair(pod.clone(), port, error, data));
        }
    }
    // The client is gone: its forwards with it.
    forwards.abort_all();
    connection.close().await;
}

/// One forwarded connection: the pod's socket and the data stream, both ways; the error
/// stream carries a failure and is ended when the forward is.
async fn forward_pair(pod: Arc<PodPorts>, port: u16, error: spdy::Stream, data: spdy::Stream) {
    let (_error_in, mut error_out) = error.split();
    let (mut from_client, mut to_client) = data.split();
    match pod.dial(port).await {
        Ok(socket) => {
            let (mut from_pod, mut to_pod) = socket.into_split();
            let upstream = async {
                while let Some(chunk) = from_client.recv().await {
                    if to_pod.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = to_pod.shutdown().await;
            };
            let downstream = async {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match from_pod.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if to_client.send(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = to_client.finish().await;
            };
            // The pod closing its end is the end of the connection, whatever the client still
            // sends; the client closing its end leaves the pod's answer to come.
            tokio::pin!(upstream, downstream);
            tokio::select! {
                () = &mut downstream => {}
                () = &mut upstream => (&mut downstream).await,
            }
        }
        Err(e) => {
            let text = pod.error_text(port, &e);
            tracing::info!("{text}");
            let _ = error_out.send(text.as_bytes()).await;
            let _ = to_client.finish().await;
        }
    }
    let _ = error_out.finish().await;
}

/// Serves the WebSocket channel protocol: channel 2i is port i's data, 2i+1 its errors; each
/// port is one connection, and the session ends when all have.
pub async fn over_websocket(pod: PodPorts, ports: Vec<u16>, channels: websocket::Channels<impl super::Io>) {
    let (mut sender, mut receiver) = channels.split();
    // Two channels per port, numbered in a byte.
    if ports.len() > 127 {
        tracing::info!("port forward: {} ports asked for, at most 127", ports.len());
        return sender.close().await;
    }
    let mut to_pods = Vec::new();
    let (output_tx, mut output_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    let mut readers = tokio::task::JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        // Each channel opens with its port, little-endian, as the kubelet's server does.
        for channel in [data, error] {
            if sender.send(channel, &port.to_le_bytes()).await.is_err() {
                return;
            }
        }
        match pod.dial(port).await {
            Ok(socket) => {
                let (mut from_pod, to_pod) = socket.into_split();
                to_pods.push(Some(to_pod));
                let output = output_tx.clone();
                readers.spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    while let Ok(n) = from_pod.read(&mut buf).await {
                        if n == 0 || output.send((data, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                to_pods.push(None);
                let _ = sender.send(error, pod.error_text(port, &e).as_bytes()).await;
            }
        }
    }
    drop(output_tx);
    let mut all_read = false;
    loop {
        tokio::select! {
            out = output_rx.recv(), if !all_read => match out {
                Some((channel, data)) => {
                    if sender.send(channel, &data).await.is_err() {
                        break;
                    }
                }
                None => all_read = true,
            },
            message = receiver.recv() => match message {
                Some(ChannelMessage::Data { channel, data }) if channel % 2 == 0 => {
                    let socket = to_pods.get_mut(usize::from(channel / 2)).and_then(Option::as_mut);
                    if let Some(socket) = socket {
                        if socket.write_all(&data).await.is_err() {
                            to_pods[usize::from(channel / 2)] = None;
                        }
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
        if all_read {
            break;
        }
    }
    readers.abort_all();
    sender.close().await;
}
