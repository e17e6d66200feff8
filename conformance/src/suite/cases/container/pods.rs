//! What containers see of their pod: its namespaces (critest security_context_linux.go
//! "NamespaceOption"), its DNS config, hostname and port mappings (networking.go), and the other
//! containers of the pod (multi_container_linux.go).

use std::time::{Duration, Instant};

use k8s_cri::v1::{DnsConfig, NamespaceMode, NamespaceOption, PortMapping, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    DEFAULT_LOG, Pod, SH_TOP, TOP, busybox, ensure_logged, exec, exec_ok, pod, pod_config, pod_security, run_container,
    run_pod, run_pod_anywhere, run_to_exit, security, status, text,
};
use crate::suite::cases::ensure;
use crate::suite::cases::pod::{DNS_OPTION, DNS_SEARCH, DNS_SERVER, free_port, status as pod_status};
use crate::suite::pod_config::fresh_token;
use crate::suite::{CaseResult, Context, Stop};

/// critest :82 "runtime should support HostPID" watches an nginx of another container from a
/// host-PID one; here the host's own PID 1 is what a host-PID container sees as its PID 1
/// (this suite runs in the host's PID namespace, as critest's checks of host state assume).
pub async fn host_pid(context: &mut Context) -> CaseResult {
    let host = tokio::fs::read("/proc/1/cmdline").await.map_err(|e| format!("reading /proc/1/cmdline: {e}"))?;
    let id = pid_container(context, NamespaceMode::Node).await?;
    let inside = exec_ok(context, &id, &["cat", "/proc/1/cmdline"]).await?;
    ensure(inside.as_bytes() == host, || {
        format!("PID 1 of a host-PID container runs {inside:?}, the host's {:?}", text(&host))
    })?;
    Ok(())
}

/// critest :184 "runtime should support PodPID": the container's PID 1 is not its own process
/// (critest: not nginx's master) but the pod's.
pub async fn pod_pid(context: &mut Context) -> CaseResult {
    let id = pid_container(context, NamespaceMode::Pod).await?;
    let inside = exec_ok(context, &id, &["cat", "/proc/1/cmdline"]).await?;
    ensure(inside != PID_COMMAND.join("\0") + "\0", || {
        "in a pod-PID pod, the container's own command is PID 1".into()
    })?;
    Ok(())
}

/// critest :210 "runtime should support ContainerPID": the container's PID 1 is its own command.
pub async fn container_pid(context: &mut Context) -> CaseResult {
    let id = pid_container(context, NamespaceMode::Container).await?;
    let inside = exec_ok(context, &id, &["cat", "/proc/1/cmdline"]).await?;
    let own = PID_COMMAND.join("\0") + "\0";
    ensure(inside == own, || format!("the container's PID 1 runs {inside:?}, want its own {own:?}"))?;
    Ok(())
}

const PID_COMMAND: &[&str] = &["sleep", "3601"];

/// critest's createNamespacePodSandbox and createNamespaceContainer with PID `mode` (network
/// and IPC of the pod).
async fn pid_container(context: &mut Context, mode: NamespaceMode) -> Result<String, Stop> {
    let options = NamespaceOption {
        network: NamespaceMode::Pod.into(),
        pid: mode.into(),
        ipc: NamespaceMode::Pod.into(),
        ..Default::default()
    };
    let mut config = pod_config(context, "pid-namespace").await?;
    pod_security(&mut config).namespace_options = Some(options.clone());
    let pod = run_pod(context, config).await?;
    let mut container = busybox(context, "pid-namespace", PID_COMMAND).await?;
    security(&mut container).namespace_options = Some(options);
    Ok(run_container(context, &pod, &container).await?)
}

/// critest :234 "runtime should support HostNetwork is true": a port this process listens on
/// is in a host-network container's `netstat -ln`. Needs no pod network.
pub async fn host_network(context: &mut Context) -> CaseResult {
    network_mode(context, true).await
}

/// critest :256 "runtime should support HostNetwork is false": it is not in a pod-network one.
pub async fn pod_network(context: &mut Context) -> CaseResult {
    network_mode(context, false).await
}

async fn network_mode(context: &mut Context, host: bool) -> CaseResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("listening: {e}"))?;
    let port = listener.local_addr().map_err(|e| format!("listening: {e}"))?.port();
    let mode = if host { NamespaceMode::Node } else { NamespaceMode::Pod };
    let options = NamespaceOption {
        network: mode.into(),
        pid: NamespaceMode::Pod.into(),
        ipc: NamespaceMode::Pod.into(),
        ..Default::default()
    };
    let mut config = pod_config(context, "network-namespace").await?;
    pod_security(&mut config).namespace_options = Some(options.clone());
    let pod = if host { run_pod_anywhere(context, config).await? } else { run_pod(context, config).await? };
    let mut container = busybox(context, "network-namespace", &["netstat", "-lnt"]).await?;
    security(&mut container).namespace_options = Some(options);
    run_to_exit(context, &pod, &container).await?;
    let needle = format!("127.0.0.1:{port} ");
    // The log holds netstat's whole output once the container has exited.
    let listed = super::log_messages(&pod, &container).await?;
    let seen = listed.iter().any(|m| m.stream == "stdout" && m.log.contains(&needle));
    ensure(seen == host, || {
        let verb = if host { "lacks" } else { "shows" };
        format!(
            "`netstat -lnt` in a {} container {verb} this host's 127.0.0.1:{port}: {listed:?}",
            if host { "host-network" } else { "pod-network" }
        )
    })?;
    drop(listener);
    Ok(())
}

/// critest networking.go:56 "runtime should support DNS config": `/etc/resolv.conf` inside
/// has the pod's server, search and option.
pub async fn dns_config(context: &mut Context) -> CaseResult {
    let mut config = pod_config(context, "dns-config").await?;
    config.dns_config = Some(DnsConfig {
        servers: vec![DNS_SERVER.into()],
        searches: vec![DNS_SEARCH.into()],
        options: vec![DNS_OPTION.into()],
    });
    let pod = run_pod(context, config).await?;
    let container = busybox(context, "dns-config", TOP).await?;
    let id = run_container(context, &pod, &container).await?;
    let resolv = exec_ok(context, &id, &["cat", "/etc/resolv.conf"]).await?;
    for line in [format!("nameserver {DNS_SERVER}"), format!("search {DNS_SEARCH}"), format!("options {DNS_OPTION}")] {
        ensure(resolv.contains(&line), || format!("/etc/resolv.conf lacks {line:?}: {resolv:?}"))?;
    }
    Ok(())
}

/// critest networking.go:72 "runtime should support set hostname": `hostname` inside is the
/// pod's (and so is `/etc/hostname`, which the kubelet's pods have too).
pub async fn hostname(context: &mut Context) -> CaseResult {
    const HOSTNAME: &str = "test-hostname";
    let mut config = pod_config(context, "hostname").await?;
    config.hostname = HOSTNAME.into();
    let pod = run_pod(context, config).await?;
    let container = busybox(context, "hostname", TOP).await?;
    let id = run_container(context, &pod, &container).await?;
    let name = exec_ok(context, &id, &["hostname"]).await?;
    ensure(name.trim().eq_ignore_ascii_case(HOSTNAME), || format!("`hostname` is {name:?}, want {HOSTNAME}"))?;
    let file = exec_ok(context, &id, &["cat", "/etc/hostname"]).await?;
    ensure(file.trim() == HOSTNAME, || format!("/etc/hostname holds {file:?}, want {HOSTNAME}"))?;
    Ok(())
}

/// critest's web server image stands in as busybox `httpd` serving a page of its own.
const WEB_PORT: u16 = 80;

async fn web_server(context: &mut Context, pod: &Pod, page: &str) -> Result<String, Stop> {
    let script = format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p {WEB_PORT} -h /www");
    let config = busybox(context, "web-server", &["sh", "-c", &script]).await?;
    Ok(run_container(context, pod, &config).await?)
}

/// critest networking.go:88 "runtime should support port mapping with only container port":
/// the server is reached at the pod's IP and the container port.
pub async fn port_mapping_container_port(context: &mut Context) -> CaseResult {
    let mut config = pod_config(context, "container-port").await?;
    config.port_mappings =
        vec![PortMapping { protocol: Protocol::Tcp.into(), container_port: WEB_PORT.into(), ..Default::default() }];
    let pod = run_pod(context, config).await?;
    let page = format!("crisp-conformance-{}", fresh_token());
    web_server(context, &pod, &page).await?;
    let ip = pod_status(context, &pod.id).await?.network.map(|n| n.ip).unwrap_or_default();
    ensure(!ip.is_empty(), || "the pod has no IP".into())?;
    expect_page(&format!("{ip}:{WEB_PORT}"), &page).await?;
    Ok(())
}

/// critest networking.go:108 "runtime should support port mapping with host port and container
/// port": reached at the host port (on 127.0.0.1 here, so that nothing leaves the host).
pub async fn port_mapping_host_port(context: &mut Context) -> CaseResult {
    let host_port = free_port().await?;
    let mut config = pod_config(context, "host-port").await?;
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp.into(),
        container_port: WEB_PORT.into(),
        host_port: host_port.into(),
        host_ip: "127.0.0.1".into(),
    }];
    let pod = run_pod(context, config).await?;
    let page = format!("crisp-conformance-{}", fresh_token());
    web_server(context, &pod, &page).await?;
    expect_page(&format!("127.0.0.1:{host_port}"), &page).await?;
    Ok(())
}

/// critest's checkMainPage: within a minute, GET / at `address` answers 200, here with `page`.
async fn expect_page(address: &str, page: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(address).await;
        match &answer {
            Ok(response)
                if response.starts_with("HTTP/1.") && response.contains(" 200 ") && response.contains(page) =>
            {
                return Ok(());
            }
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "GET http://{address}/ did not answer 200 with {page:?} within a minute: {answer:?}"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn get(address: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|e| e.to_string())?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.unwrap_or_else(|_| Err("timed out".into()))
}

/// critest multi_container_linux.go:78 "should support network" reaches an httpd container of
/// a two-container pod from the host; here the containers reach each other: one serves a token
/// with busybox `nc -l -p PORT` and the other reads it from 127.0.0.1:PORT, which only a
/// shared network namespace makes one address.
pub async fn multi_container_network(context: &mut Context) -> CaseResult {
    const PORT: u16 = 8080;
    let pod = pod(context, "multi-container-network").await?;
    let token = format!("crisp-conformance-{}", fresh_token());
    let serve = format!("while true; do echo {token} | nc -l -p {PORT}; done");
    let server = busybox(context, "server", &["sh", "-c", &serve]).await?;
    run_container(context, &pod, &server).await?;
    let client = busybox(context, "client", SH_TOP).await?;
    let client = run_container(context, &pod, &client).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = format!("127.0.0.1 {PORT}");
    loop {
        let out = exec(context, &client, &["sh", "-c", &format!("nc {address} </dev/null")]).await?;
        if out.exit_code == 0 && text(&out.stdout) == format!("{token}\n") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "`nc {address}` in the other container: exit code {}, stdout {:?}, stderr {:?}, want {token:?}",
                out.exit_code,
                text(&out.stdout),
                text(&out.stderr)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// critest multi_container_linux.go:82 "should support container log" and :103 "should support
/// container exec": each container of the pod logs to its own file (ContainerStatus names it)
/// and execs on its own.
pub async fn multi_container_exec_and_logs(context: &mut Context) -> CaseResult {
    let pod = pod(context, "multi-container").await?;
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let command = format!("echo {DEFAULT_LOG} {name}; sleep 1000");
        let config = busybox(context, name, &["sh", "-c", &command]).await?;
        let id = run_container(context, &pod, &config).await?;
        ensure_logged(&pod, &config, "stdout", &format!("{DEFAULT_LOG} {name}\n")).await?;
        let log_path = status(context, &id).await?.log_path;
        let reported = std::path::Path::new(&log_path);
        let reported = if reported.is_absolute() { reported.to_owned() } else { pod.log_file(&config) };
        ensure(reported == pod.log_file(&config), || {
            format!("ContainerStatus log_path {log_path:?} is not {}", pod.log_file(&config).display())
        })?;
        ids.push((name, id));
    }
    for (name, id) in ids {
        let echoed = exec_ok(context, &id, &["echo", name]).await?;
        ensure(echoed == format!("{name}\n"), || format!("`echo {name}` in container {name} printed {echoed:?}"))?;
    }
    Ok(())
}
