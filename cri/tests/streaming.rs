//! End-to-end: Exec, Attach and PortForward through the daemon's streaming server, with the
//! conformance crate's SPDY and WebSocket clients (client-go's behaviour, checked strictly).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::containers::setup;
use crisp_conformance::lab::image::{LabImage, WEB_SERVER_INDEX};
use crisp_conformance::streaming::{
    RemoteCommandOptions, RemoteCommandSession, Transport, UpgradeRejected, port_forward, remote_command,
};
use k8s_cri::v1::{
    AttachRequest, ExecRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PortForwardRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopContainerRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const TIMEOUT: Duration = Duration::from_secs(30);

fn exec_request(id: &str, cmd: &[&str], tty: bool, stdin: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

fn options(tty: bool, stdin: Option<&[u8]>) -> RemoteCommandOptions {
    RemoteCommandOptions {
        stdin: stdin.map(<[u8]>::to_vec),
        stdout: true,
        stderr: !tty,
        tty,
        ..RemoteCommandOptions::default()
    }
}

/// Processes whose command line is exactly `cmdline` (NUL-separated, as /proc has it).
fn processes(cmdline: &[u8]) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline))
        .count()
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn exec_and_attach_over_spdy_and_websocket() {
    let mut s = setup(25).await;
    let sleeper = s.run(s.config("sleeper", &["sleep", "1000"])).await;
    for transport in Transport::ALL {
        // Output apart, and a non-zero exit code as the kubelet reports it.
        let url = s
            .client
            .runtime
            .exec(exec_request(&sleeper, &["sh", "-c", "echo out; echo err >&2; exit 3"], false, false))
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let result = remote_command(&url, transport, &options(false, None), TIMEOUT).await.unwrap();
        assert_eq!((result.stdout_text().as_str(), result.stderr_text().as_str()), ("out\n", "err\n"), "{transport}");
        assert_eq!(result.exit_code, 3, "{transport}");
        assert_eq!(result.status.as_ref().unwrap()["reason"], "NonZeroExitCode");

        // stdin through to its end.
        let url = s.client.runtime.exec(exec_request(&sleeper, &["cat"], false, true)).await.unwrap().into_inner().url;
        let result = remote_command(&url, transport, &options(false, Some(b"piped through\n")), TIMEOUT).await.unwrap();
        assert_eq!((result.stdout_text().as_str(), result.exit_code), ("piped through\n", 0), "{transport}");
        assert_eq!(result.status.unwrap()["status"], "Success");

        // A terminal: its size follows the client's, input echoes through it, and the exec ends
        // with its process although the client keeps stdin open.
        let script = r#"read l; echo "got $l in $(stty size) as $TERM"; exit 0"#;
        let url = s
            .client
            .runtime
            .exec(exec_request(&sleeper, &["sh", "-c", script], true, true))
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut tty = options(true, Some(b"x\n"));
        (tty.keep_stdin_open, tty.resize) = (true, Some((91, 21)));
        let result = remote_command(&url, transport, &tty, TIMEOUT).await.unwrap();
        assert!(result.stdout_text().contains("got x in 21 91 as xterm"), "{transport}: {:?}", result.stdout_text());
        assert!(result.stderr.is_empty());
        assert_eq!(result.exit_code, 0);

        // A command the container lacks is the runtime's failure, not a hang.
        let url = s
            .client
            .runtime
            .exec(exec_request(&sleeper, &["/no/such/binary"], false, false))
            .await
            .unwrap()
            .into_inner()
            .url;
        let result = remote_command(&url, transport, &options(false, None), TIMEOUT).await.unwrap();
        assert_ne!(result.exit_code, 0, "{transport}: {result:?}");
    }

    // Attach to a shell with stdin_once: what is typed runs; the end of the client's input is
    // the shell's, which ends the attach.
    for transport in Transport::ALL {
        let mut config = s.config(&format!("shell-{transport}"), &["/bin/sh"]);
        (config.stdin, config.stdin_once) = (true, true);
        let shell = s.run(config).await;
        let request =
            AttachRequest { container_id: shell.clone(), stdin: true, stdout: true, stderr: true, tty: false };
        let url = s.client.runtime.attach(request).await.unwrap().into_inner().url;
        let mut session = RemoteCommandSession::open(
            &url,
            transport,
            &RemoteCommandOptions {
                stdin: Some(Vec::new()),
                keep_stdin_open: true,
                stdout: true,
                stderr: true,
                ..RemoteCommandOptions::default()
            },
        )
        .await
        .unwrap();
        session.send_stdin(b"echo -n hello\n").unwrap();
        session.read_stdout_until(b"hello", TIMEOUT).await.unwrap();
        session.close_stdin().unwrap();
        let result = session.finish(TIMEOUT).await.unwrap();
        assert_eq!((result.stdout_text().as_str(), result.exit_code), ("hello", 0), "{transport}");
        let status = s.wait_exited(&shell).await;
        assert_eq!(status.exit_code, 0);
    }

    // What is refused before a URL is made, and a URL used twice.
    let err =
        s.client.runtime.exec(ExecRequest { stderr: true, ..exec_request(&sleeper, &["true"], true, false) }).await;
    assert_eq!(err.unwrap_err().code(), Code::InvalidArgument);
    let err = s.client.runtime.exec(exec_request(&sleeper, &[], false, false)).await;
    assert_eq!(err.unwrap_err().code(), Code::InvalidArgument);
    let neither = ExecRequest { stdout: false, stderr: false, ..exec_request(&sleeper, &["true"], false, false) };
    assert_eq!(s.client.runtime.exec(neither).await.unwrap_err().code(), Code::InvalidArgument);
    let err = s.client.runtime.exec(exec_request(&"f".repeat(64), &["true"], false, false)).await;
    assert_eq!(err.unwrap_err().code(), Code::NotFound);
    let url = s.client.runtime.exec(exec_request(&sleeper, &["true"], false, false)).await.unwrap().into_inner().url;
    remote_command(&url, Transport::Spdy, &options(false, None), TIMEOUT).await.unwrap();
    for transport in Transport::ALL {
        let err = remote_command(&url, transport, &options(false, None), TIMEOUT).await.unwrap_err();
        assert_eq!(err.downcast_ref::<UpgradeRejected>().map(|r| r.status), Some(404), "{transport}: {err:#}");
    }
    let forged = format!("{}/exec/{}", url.rsplit_once("/exec/").unwrap().0, "0".repeat(64));
    let err = remote_command(&forged, Transport::Spdy, &options(false, None), TIMEOUT).await.unwrap_err();
    assert_eq!(err.downcast_ref::<UpgradeRejected>().map(|r| r.status), Some(404));
    // A stopped container gets no URL.
    let stop = StopContainerRequest { container_id: sleeper.clone(), timeout: 0 };
    s.client.runtime.stop_container(stop).await.unwrap();
    let err = s.client.runtime.exec(exec_request(&sleeper, &["true"], false, false)).await;
    assert_eq!(err.unwrap_err().code(), Code::FailedPrecondition);
    s.teardown().await;
}

#[tokio::test]
async fn clients_that_leave_take_their_execs_and_many_run_at_once() {
    let mut s = setup(26).await;
    let sleeper = s.run(s.config("sleeper", &["sleep", "1000"])).await;
    let daemon_pid = s.daemon.child.id();
    // Settle: the first exec opens what stays open (connections, the monitor's socket).
    let url = s.client.runtime.exec(exec_request(&sleeper, &["true"], false, false)).await.unwrap().into_inner().url;
    remote_command(&url, Transport::Spdy, &options(false, None), TIMEOUT).await.unwrap();
    let fds_before = open_fds(daemon_pid);

    for (n, transport) in Transport::ALL.into_iter().enumerate() {
        let marker = format!("{}", 4240 + n);
        let cmdline = format!("sleep\0{marker}\0");
        let cmd = ["sh", "-c", &format!("echo started; exec sleep {marker}")];
        let url = s.client.runtime.exec(exec_request(&sleeper, &cmd, false, true)).await.unwrap().into_inner().url;
        let opts = RemoteCommandOptions { keep_stdin_open: true, ..options(false, Some(b"")) };
        let mut session = RemoteCommandSession::open(&url, transport, &opts).await.unwrap();
        session.read_stdout_until(b"started", TIMEOUT).await.unwrap();
        assert_eq!(processes(cmdline.as_bytes()), 1, "{transport}");
        drop(session);
        wait_for(&format!("the {transport} exec is killed"), || processes(cmdline.as_bytes()) == 0).await;
    }

    // Twenty at once, over both transports.
    let mut runs = Vec::new();
    for n in 0..20 {
        let transport = Transport::ALL[n % 2];
        let cmd = ["sh", "-c", &format!("sleep 1; echo {n}")];
        let url = s.client.runtime.exec(exec_request(&sleeper, &cmd, false, false)).await.unwrap().into_inner().url;
        runs.push(tokio::spawn(async move { remote_command(&url, transport, &options(false, None), TIMEOUT).await }));
    }
    for (n, run) in runs.into_iter().enumerate() {
        let result = run.await.unwrap().unwrap();
        assert_eq!((result.stdout_text(), result.exit_code), (format!("{n}\n"), 0));
    }

    // Nothing left behind: no exec dirs, no daemon descriptors beyond what it had.
    let state = s.lab.path("state/containers").join(&sleeper);
    wait_for("the execs' files are removed", || {
        fs::read_dir(&state)
            .map(|d| d.flatten().all(|e| !e.file_name().to_string_lossy().starts_with("exec-")))
            .unwrap_or(true)
    })
    .await;
    wait_for("the daemon's descriptors are back", || open_fds(daemon_pid) <= fds_before).await;
    s.teardown().await;
}

#[tokio::test]
async fn port_forward_reaches_a_pods_web_server_and_a_host_network_pods_port() {
    let mut s = setup(27).await;
    let web = s.pull(LabImage::WebServer).await;
    let mut config = s.config("web", &[]);
    config.image.as_mut().unwrap().image = web.clone();
    config.command.clear();
    s.run(config).await;
    for transport in Transport::ALL {
        let request = PortForwardRequest { pod_sandbox_id: s.pod.clone(), port: Vec::new() };
        let url = s.client.runtime.port_forward(request).await.unwrap().into_inner().url;
        let mut page = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        // httpd may take a moment to listen.
        while !page.contains("200 OK") {
            assert!(Instant::now() < deadline, "{transport}: no page: {page:?}");
            let url = s
                .client
                .runtime
                .port_forward(PortForwardRequest { pod_sandbox_id: s.pod.clone(), port: Vec::new() })
                .await
                .unwrap()
                .into_inner()
                .url;
            let mut connection = port_forward(&url, transport, 80).await.unwrap();
            connection.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await.unwrap();
            page.clear();
            let _ = connection.read_to_string(&mut page).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(page.ends_with(WEB_SERVER_INDEX), "{transport}: {page:?}");
        // A port nothing listens on: the error comes back on the error stream, not a hang.
        let mut refused = port_forward(&url, transport, 81).await;
        if let Ok(connection) = refused.as_mut() {
            let mut rest = Vec::new();
            let read = connection.read_to_end(&mut rest).await;
            assert!(read.is_err() || connection.failure().is_some(), "{transport}: port 81 answered {rest:?}");
        }
    }
    let unknown = PortForwardRequest { pod_sandbox_id: "f".repeat(64), port: Vec::new() };
    assert_eq!(s.client.runtime.port_forward(unknown).await.unwrap_err().code(), Code::NotFound);
    let missing = PortForwardRequest { pod_sandbox_id: String::new(), port: Vec::new() };
    assert_eq!(s.client.runtime.port_forward(missing).await.unwrap_err().code(), Code::InvalidArgument);

    // A host-network pod: its ports are the host's loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"from the host\n").await;
        }
    });
    let host_pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "hostnet".into(),
            uid: "hostnet-uid".into(),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        linux: Some(k8s_cri::v1::LinuxPodSandboxConfig {
            security_context: Some(k8s_cri::v1::LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let run = RunPodSandboxRequest { config: Some(host_pod), runtime_handler: String::new() };
    let host_pod = s.client.runtime.run_pod_sandbox(run).await.unwrap().into_inner().pod_sandbox_id;
    for transport in Transport::ALL {
        let request = PortForwardRequest { pod_sandbox_id: host_pod.clone(), port: Vec::new() };
        let url = s.client.runtime.port_forward(request).await.unwrap().into_inner().url;
        let mut connection = port_forward(&url, transport, port).await.unwrap();
        let mut text = String::new();
        connection.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "from the host\n", "{transport}");
    }
    s.client.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: host_pod }).await.unwrap();
    s.teardown().await;
}

#[tokio::test]
async fn the_streaming_server_speaks_tls_when_given_a_certificate() {
    use futures::StreamExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut s = common::containers::setup_configured(28, Default::default(), |lab| {
        let (cert, key) = (lab.path("streaming.crt"), lab.path("streaming.key"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            // An end entity, trusted as itself: webpki refuses a CA certificate there.
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (contrib/install-deps.sh installs it) makes the test certificate");
        assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
        format!("[streaming]\naddress = \"127.0.0.1:0\"\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n")
    })
    .await;
    let sleeper = s.run(s.config("sleeper", &["sleep", "1000"])).await;
    let cmd = ["sh", "-c", "echo hello over tls"];
    let url = s.client.runtime.exec(exec_request(&sleeper, &cmd, false, false)).await.unwrap().into_inner().url;
    let rest = url.strip_prefix("https://").unwrap_or_else(|| panic!("not an https URL: {url}"));
    let authority = rest.split('/').next().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(s.lab.path("streaming.crt")).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let server = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(server, tcp).await.unwrap();

    let mut request = format!("wss://{rest}").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    let (mut stdout, mut status) = (Vec::new(), Vec::new());
    while let Some(message) = tokio::time::timeout(TIMEOUT, socket.next()).await.unwrap() {
        match message.unwrap() {
            Message::Binary(data) if data.first() == Some(&1) => stdout.extend_from_slice(&data[1..]),
            Message::Binary(data) if data.first() == Some(&3) => status.extend_from_slice(&data[1..]),
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    assert_eq!(String::from_utf8_lossy(&stdout), "hello over tls\n");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&status).unwrap()["status"], "Success");

    // The same port in the clear is no way in.
    let clear = url.replacen("https://", "http://", 1);
    assert!(remote_command(&clear, Transport::Spdy, &options(false, None), TIMEOUT).await.is_err());
    s.teardown().await;
}
