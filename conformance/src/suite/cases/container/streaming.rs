//! Streaming: the URLs Exec, Attach and PortForward return, used as critest's "Streaming"
//! cases use them (streaming.go: exec with and without a terminal, attach, portforward), over
//! SPDY as critest and the kubelet do and over WebSocket as `crictl --transport websocket`
//! does; plus what the RPCs refuse, and that a URL serves once. critest's nginx is the lab's
//! web server image (busybox httpd).

use std::time::{Duration, Instant};

use k8s_cri::v1::{AttachRequest, ExecRequest, PodSandboxConfig, PortForwardRequest, PortMapping, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use super::{TOP, busybox, config, pod, pod_config, run_container, run_pod, run_pod_anywhere, strings};
use crate::lab::image::{LabImage, WEB_SERVER_INDEX, WEB_SERVER_PORT, WEB_SERVER_ROOT};
use crate::streaming::{
    PortForwarder, RemoteCommandOptions, RemoteCommandResult, RemoteCommandSession, Transport, UpgradeRejected,
    remote_command,
};
use crate::suite::cases::pod::free_port;
use crate::suite::cases::{case, ensure, rpc_failed};
use crate::suite::pod_config::{fresh_uid, use_host_network};
use crate::suite::{Case, CaseResult, Context, Stop};

pub fn cases() -> Vec<Case> {
    vec![
        case!("streaming/spdy/exec", exec_spdy),
        case!("streaming/websocket/exec", exec_websocket),
        case!("streaming/spdy/exec-tty-stdin", exec_tty_stdin_spdy),
        case!("streaming/websocket/exec-tty-stdin", exec_tty_stdin_websocket),
        case!("streaming/spdy/exec-exit-code", exec_exit_code_spdy),
        case!("streaming/websocket/exec-exit-code", exec_exit_code_websocket),
        case!("streaming/spdy/attach", attach_spdy),
        case!("streaming/websocket/attach", attach_websocket),
        case!("streaming/spdy/port-forward", port_forward_spdy),
        case!("streaming/websocket/port-forward", port_forward_websocket),
        case!("streaming/spdy/port-forward-host-network", port_forward_host_network_spdy),
        case!("streaming/websocket/port-forward-host-network", port_forward_host_network_websocket),
        case!("streaming/spdy/used-url-is-gone", used_url_spdy),
        case!("streaming/websocket/used-url-is-gone", used_url_websocket),
        case!("streaming/exec-tty-and-stderr-refused", exec_tty_and_stderr_refused),
        case!("streaming/exec-and-attach-unknown-container-not-found", unknown_container_not_found),
    ]
}

/// How long a remote command may take from upgrade to status.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// critest's Eventually for the attach output and checkMainPage.
const EVENTUALLY: Duration = Duration::from_secs(60);

async fn exec_spdy(context: &mut Context) -> CaseResult {
    exec(context, Transport::Spdy).await
}
async fn exec_websocket(context: &mut Context) -> CaseResult {
    exec(context, Transport::WebSocket).await
}
async fn exec_tty_stdin_spdy(context: &mut Context) -> CaseResult {
    exec_tty_stdin(context, Transport::Spdy).await
}
async fn exec_tty_stdin_websocket(context: &mut Context) -> CaseResult {
    exec_tty_stdin(context, Transport::WebSocket).await
}
async fn exec_exit_code_spdy(context: &mut Context) -> CaseResult {
    exec_exit_code(context, Transport::Spdy).await
}
async fn exec_exit_code_websocket(context: &mut Context) -> CaseResult {
    exec_exit_code(context, Transport::WebSocket).await
}
async fn attach_spdy(context: &mut Context) -> CaseResult {
    attach(context, Transport::Spdy).await
}
async fn attach_websocket(context: &mut Context) -> CaseResult {
    attach(context, Transport::WebSocket).await
}
async fn port_forward_spdy(context: &mut Context) -> CaseResult {
    port_forward(context, Transport::Spdy).await
}
async fn port_forward_websocket(context: &mut Context) -> CaseResult {
    port_forward(context, Transport::WebSocket).await
}
async fn port_forward_host_network_spdy(context: &mut Context) -> CaseResult {
    port_forward_host_network(context, Transport::Spdy).await
}
async fn port_forward_host_network_websocket(context: &mut Context) -> CaseResult {
    port_forward_host_network(context, Transport::WebSocket).await
}
async fn used_url_spdy(context: &mut Context) -> CaseResult {
    used_url(context, Transport::Spdy).await
}
async fn used_url_websocket(context: &mut Context) -> CaseResult {
    used_url(context, Transport::WebSocket).await
}

/// A running busybox `top` in a pod of its own: what critest execs in.
async fn exec_target(context: &mut Context, purpose: &str) -> Result<String, Stop> {
    let pod = pod(context, purpose).await?;
    let config = busybox(context, purpose, TOP).await?;
    Ok(run_container(context, &pod, &config).await?)
}

fn exec_request(id: &str, cmd: &[&str], options: &RemoteCommandOptions) -> ExecRequest {
    ExecRequest {
        container_id: id.to_owned(),
        cmd: strings(cmd),
        tty: options.tty,
        stdin: options.stdin.is_some(),
        stdout: options.stdout,
        stderr: options.stderr,
    }
}

/// The Exec RPC's URL, which must carry a scheme and a host (critest's parseURL).
async fn exec_url(context: &mut Context, request: ExecRequest) -> Result<String, String> {
    let cmd = request.cmd.clone();
    let response = context.client.runtime.exec(request).await;
    let url = response.map_err(|s| rpc_failed(&format!("Exec {cmd:?}"), s))?.into_inner().url;
    ensure_url(&url, "Exec")?;
    Ok(url)
}

fn ensure_url(url: &str, rpc: &str) -> Result<(), String> {
    crate::streaming::StreamUrl::parse(url).map(|_| ()).map_err(|e| format!("{rpc} returned URL {url:?}: {e:#}"))
}

async fn run(
    url: &str,
    transport: Transport,
    options: &RemoteCommandOptions,
    what: &str,
) -> Result<RemoteCommandResult, String> {
    remote_command(url, transport, options, COMMAND_TIMEOUT)
        .await
        .map_err(|e| format!("{what} over {transport}: {e:#}"))
}

/// critest streaming.go "runtime should support exec with tty=false and stdin=false": `echo -n
/// hello` prints exactly `hello` on stdout, nothing on stderr, and succeeds.
async fn exec(context: &mut Context, transport: Transport) -> CaseResult {
    let id = exec_target(context, "stream-exec").await?;
    let options = RemoteCommandOptions { stdout: true, stderr: true, ..Default::default() };
    let url = exec_url(context, exec_request(&id, &["echo", "-n", "hello"], &options)).await?;
    let result = run(&url, transport, &options, "exec `echo -n hello`").await?;
    ensure(result.stdout == b"hello" && result.stderr.is_empty() && result.exit_code == 0, || {
        format!(
            "exec `echo -n hello` over {transport}: stdout {:?}, stderr {:?}, status {:?}; want stdout \"hello\" alone and success",
            result.stdout_text(),
            result.stderr_text(),
            result.status
        )
    })?;
    Ok(())
}

/// critest "runtime should support exec with tty=true and stdin=true": stdout holds `hello`
/// (a terminal may add to it) and the exec ends when the command does, with stdin still open.
async fn exec_tty_stdin(context: &mut Context, transport: Transport) -> CaseResult {
    let id = exec_target(context, "stream-exec-tty").await?;
    let options = RemoteCommandOptions {
        stdin: Some(Vec::new()),
        keep_stdin_open: true,
        stdout: true,
        tty: true,
        ..Default::default()
    };
    let url = exec_url(context, exec_request(&id, &["echo", "-n", "hello"], &options)).await?;
    let result = run(&url, transport, &options, "exec `echo -n hello` with a terminal and stdin left open").await?;
    ensure(result.stdout_text().contains("hello") && result.stderr.is_empty() && result.exit_code == 0, || {
        format!(
            "exec `echo -n hello` with a terminal over {transport}: stdout {:?}, stderr {:?}, status {:?}",
            result.stdout_text(),
            result.stderr_text(),
            result.status
        )
    })?;
    Ok(())
}

/// A command's non-zero exit code comes back as the kubelet reports it: a `NonZeroExitCode`
/// Status whose `ExitCode` cause is the code (crictl exits with it).
async fn exec_exit_code(context: &mut Context, transport: Transport) -> CaseResult {
    let id = exec_target(context, "stream-exec-exit").await?;
    let options = RemoteCommandOptions { stdout: true, stderr: true, ..Default::default() };
    let url = exec_url(context, exec_request(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"], &options)).await?;
    let result = run(&url, transport, &options, "exec `exit 3`").await?;
    let reason = result.status.as_ref().and_then(|s| s.get("reason")).and_then(|r| r.as_str()).map(str::to_owned);
    ensure(
        result.exit_code == 3
            && reason.as_deref() == Some("NonZeroExitCode")
            && result.stdout == b"out\n"
            && result.stderr == b"err\n",
        || {
            format!(
                "exec `echo out; echo err >&2; exit 3` over {transport}: exit code {}, status {:?}, stdout {:?}, \
                 stderr {:?}; want NonZeroExitCode with ExitCode 3, \"out\\n\" and \"err\\n\"",
                result.exit_code,
                result.status,
                result.stdout_text(),
                result.stderr_text()
            )
        },
    )?;
    Ok(())
}

/// critest "runtime should support attach": to a `/bin/sh` with stdin and stdin_once, write
/// `echo -n hello` and see exactly `hello`; closing stdin then ends the shell, and the attach
/// with it, successfully and with nothing on stderr.
async fn attach(context: &mut Context, transport: Transport) -> CaseResult {
    let pod = pod(context, "stream-attach").await?;
    let mut config = busybox(context, "stream-attach", &["/bin/sh"]).await?;
    config.stdin = true;
    config.stdin_once = true;
    config.tty = false;
    let id = run_container(context, &pod, &config).await?;
    let request = AttachRequest { container_id: id.clone(), stdin: true, tty: false, stdout: true, stderr: true };
    let response = context.client.runtime.attach(request).await;
    let url = response.map_err(|s| rpc_failed("Attach", s))?.into_inner().url;
    ensure_url(&url, "Attach")?;

    let options = RemoteCommandOptions {
        stdin: Some(Vec::new()),
        keep_stdin_open: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let attached = async {
        let mut session = RemoteCommandSession::open(&url, transport, &options).await?;
        // critest waits for the output to settle before it writes; a shell without a terminal
        // prints no prompt.
        session.settle(Duration::from_millis(500)).await;
        let before = session.stdout().to_vec();
        anyhow::ensure!(before.is_empty(), "the shell printed {:?} before any input", String::from_utf8_lossy(&before));
        session.send_stdin(b"echo -n hello\n")?;
        session.read_stdout_until(b"hello", EVENTUALLY).await?;
        session.settle(Duration::from_secs(2)).await;
        anyhow::ensure!(
            session.stdout() == b"hello",
            "stdout is {:?} after `echo -n hello`, want exactly \"hello\"",
            String::from_utf8_lossy(session.stdout())
        );
        session.close_stdin()?;
        session.finish(COMMAND_TIMEOUT).await
    };
    let result = attached.await.map_err(|e| format!("attach over {transport}: {e:#}"))?;
    ensure(result.exit_code == 0 && result.stderr.is_empty(), || {
        format!(
            "attach over {transport} after stdin closed: status {:?}, stderr {:?}; want success and no stderr",
            result.status,
            result.stderr_text()
        )
    })?;
    Ok(())
}

/// critest "runtime should support portforward": in a pod with container port 80 mapped, a
/// web server; through PortForward's URL, `GET /` on port 80 answers 200 with the page, within
/// a minute (the server may still be starting).
async fn port_forward(context: &mut Context, transport: Transport) -> CaseResult {
    let mut pod_config: PodSandboxConfig = pod_config(context, "stream-port-forward").await?;
    pod_config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp.into(),
        container_port: WEB_SERVER_PORT.into(),
        ..Default::default()
    }];
    let pod = run_pod(context, pod_config).await?;
    let server = config(context, "stream-web-server", LabImage::WebServer, &[]).await?;
    run_container(context, &pod, &server).await?;
    serves_page(context, &pod.id, WEB_SERVER_PORT, transport).await
}

/// critest "runtime should support portforward in host network": the web server in a pod on
/// the host's network, listening on a free loopback port (critest's nginx has a fixed one, a
/// clash on a shared host); PortForward reaches it there, in the host's namespace.
async fn port_forward_host_network(context: &mut Context, transport: Transport) -> CaseResult {
    let mut pod_config = pod_config(context, "stream-port-forward-host").await?;
    use_host_network(&mut pod_config);
    let pod = run_pod_anywhere(context, pod_config).await?;
    let port = free_port().await?;
    let listen = format!("127.0.0.1:{port}");
    let command = ["httpd", "-f", "-p", &listen, "-h", WEB_SERVER_ROOT];
    let server = config(context, "stream-web-server-host", LabImage::WebServer, &command).await?;
    run_container(context, &pod, &server).await?;
    serves_page(context, &pod.id, port, transport).await
}

/// Through PortForward's URL for the pod, `GET /` on `port` answers 200 with the lab's page
/// within a minute (the server may still be starting).
async fn serves_page(context: &mut Context, pod_id: &str, port: u16, transport: Transport) -> CaseResult {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let request = PortForwardRequest { pod_sandbox_id: pod_id.to_owned(), port: Vec::new() };
        let response = context.client.runtime.port_forward(request).await;
        let url = response.map_err(|s| rpc_failed("PortForward", s))?.into_inner().url;
        ensure_url(&url, "PortForward")?;
        let answer = get_through(&url, transport, port).await;
        match &answer {
            Ok(page) if page.starts_with("HTTP/1.") && page.contains(" 200 ") && page.ends_with(WEB_SERVER_INDEX) => {
                return Ok(());
            }
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "GET / through port-forward over {transport} to port {port} did not answer 200 with \
                     {WEB_SERVER_INDEX:?} within {EVENTUALLY:?}: {answer:?}"
                )
                .into());
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `GET /` through one forwarded connection; the whole response.
async fn get_through(url: &str, transport: Transport, port: u16) -> Result<String, String> {
    let exchange = async {
        let mut forwarder = PortForwarder::open(url, transport).await?;
        let mut connection = forwarder.connect(port).await?;
        connection.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
        let mut response = Vec::new();
        connection.read_to_end(&mut response).await?;
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(15), exchange).await {
        Ok(answer) => answer.map_err(|e| format!("{e:#}")),
        Err(_) => Err("timed out".into()),
    }
}

/// The kubelet's streaming server serves a URL once: used again, it answers 404.
async fn used_url(context: &mut Context, transport: Transport) -> CaseResult {
    let id = exec_target(context, "stream-used-url").await?;
    let options = RemoteCommandOptions { stdout: true, stderr: true, ..Default::default() };
    let url = exec_url(context, exec_request(&id, &["true"], &options)).await?;
    let first = run(&url, transport, &options, "exec `true`").await?;
    ensure(first.exit_code == 0, || format!("exec `true` over {transport}: status {:?}", first.status))?;
    match remote_command(&url, transport, &options, COMMAND_TIMEOUT).await {
        Ok(result) => Err(format!("the used URL {url} ran `true` again over {transport}: {result:?}").into()),
        Err(e) => match e.downcast_ref::<UpgradeRejected>() {
            Some(rejected) if rejected.status == 404 => Ok(()),
            _ => Err(format!("the used URL {url} over {transport}: want HTTP 404, got: {e:#}").into()),
        },
    }
}

/// Exec with both a terminal and stderr is InvalidArgument (a terminal has one output).
async fn exec_tty_and_stderr_refused(context: &mut Context) -> CaseResult {
    let id = exec_target(context, "stream-exec-invalid").await?;
    let options = RemoteCommandOptions { stdout: true, stderr: true, tty: true, ..Default::default() };
    match context.client.runtime.exec(exec_request(&id, &["true"], &options)).await {
        Ok(response) => Err(format!("Exec with tty and stderr returned {:?}", response.into_inner().url).into()),
        Err(status) if status.code() == Code::InvalidArgument => Ok(()),
        Err(status) => {
            Err(format!("Exec with tty and stderr: want InvalidArgument, got {}", rpc_failed("", status)).into())
        }
    }
}

/// Exec and Attach of a container that does not exist are NotFound.
async fn unknown_container_not_found(context: &mut Context) -> CaseResult {
    for id in [fresh_uid(), "0".repeat(64)] {
        let request =
            ExecRequest { container_id: id.clone(), cmd: strings(&["true"]), stdout: true, ..Default::default() };
        match context.client.runtime.exec(request).await {
            Ok(response) => {
                return Err(format!("Exec in unknown container {id} returned {:?}", response.into_inner().url).into());
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => {
                return Err(
                    format!("Exec in unknown container {id}: want NotFound, got {}", rpc_failed("", status)).into()
                );
            }
        }
        let request = AttachRequest { container_id: id.clone(), stdout: true, ..Default::default() };
        match context.client.runtime.attach(request).await {
            Ok(response) => {
                return Err(format!("Attach to unknown container {id} returned {:?}", response.into_inner().url).into());
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => {
                return Err(
                    format!("Attach to unknown container {id}: want NotFound, got {}", rpc_failed("", status)).into()
                );
            }
        }
    }
    Ok(())
}
