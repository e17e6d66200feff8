//! End-to-end: pod sandboxes over the socket, on Debian's CNI plugins and runc.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::net::{mounts_under, pod_cgroups, processes_mentioning};
use common::{Lab, assert_contains};
use crisp_conformance::client::CriClient;
use k8s_cri::v1::{
    DnsConfig, IdMapping, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatus, PodSandboxStatusRequest, PortMapping, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest, UserNamespace,
};
use tonic::Code;

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["e2e.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: HashMap::from([("app".into(), name.into()), ("tier".into(), "e2e".into())]),
        annotations: HashMap::from([("note".into(), "made by an end-to-end test".into())]),
        ..Default::default()
    }
}

fn with_namespaces(
    mut config: PodSandboxConfig,
    network: NamespaceMode,
    pid: NamespaceMode,
    ipc: NamespaceMode,
) -> PodSandboxConfig {
    let linux = config.linux.get_or_insert_with(LinuxPodSandboxConfig::default);
    linux.security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

fn with_sysctls(mut config: PodSandboxConfig, sysctls: &[(&str, &str)]) -> PodSandboxConfig {
    let linux = config.linux.get_or_insert_with(LinuxPodSandboxConfig::default);
    linux.sysctls = sysctls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    config
}

async fn run(client: &mut CriClient, config: PodSandboxConfig) -> Result<String, tonic::Status> {
    client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn pod_status(client: &mut CriClient, id: &str) -> (PodSandboxStatus, serde_json::Value) {
    let response = client
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: true })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&response.info["info"]).unwrap();
    (response.status.unwrap(), info)
}

async fn stop(client: &mut CriClient, id: &str) {
    client.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
}

async fn remove(client: &mut CriClient, id: &str) {
    client.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
}

fn is_ready(status: &PodSandboxStatus) -> bool {
    status.state == PodSandboxState::SandboxReady as i32
}

fn pause_pid(info: &serde_json::Value) -> u32 {
    info["pause_pid"].as_u64().expect("verbose info holds the pause pid") as u32
}

/// Runs a command in some of a process's namespaces.
fn nsenter(pid: u32, namespaces: &[&str], command: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(namespaces)
        .args(command)
        .output()
        .expect("running nsenter");
    assert!(out.status.success(), "nsenter {namespaces:?} {command:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn namespace_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

/// What a removed pod must not leave: netns mounts, shm mounts, processes, cgroups, records.
fn assert_nothing_left(lab: &Lab, ids: &[String]) {
    let dir = lab.dir.path().to_string_lossy().into_owned();
    // The netns dir itself stays a shared mount, as `ip netns` leaves /run/netns.
    let netns_dir = lab.path("state/netns").to_string_lossy().into_owned();
    let mounts: Vec<String> = mounts_under(&dir).into_iter().filter(|m| *m != netns_dir).collect();
    assert_eq!(mounts, Vec::<String>::new(), "mounts left");
    let netns: Vec<_> = fs::read_dir(lab.path("state/netns")).map(|d| d.count()).into_iter().collect();
    assert!(netns.iter().all(|n| *n == 0), "netns files left");
    for id in ids {
        assert!(!lab.path(&format!("root/pods/{id}")).exists(), "record of {id} left");
        assert!(!lab.path(&format!("state/pods/{id}")).exists(), "state of {id} left");
        assert_eq!(pod_cgroups(id), Vec::<std::path::PathBuf>::new(), "cgroups of {id} left");
    }
    assert_eq!(processes_mentioning(&format!("{dir}/state/pods")), Vec::<i32>::new(), "monitors left");
}

#[tokio::test]
async fn a_pod_gets_an_ip_its_hostname_and_dns() {
    let lab = Lab::with_network(1);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let net = lab.pod_net(1);

    let id = run(&mut client, pod_config("web")).await.unwrap();
    let (status, info) = pod_status(&mut client, &id).await;
    assert!(is_ready(&status), "{status:?}");
    let metadata = status.metadata.unwrap();
    assert_eq!((metadata.name.as_str(), metadata.namespace.as_str(), metadata.attempt), ("web", "e2e", 0));
    assert_eq!(status.labels["app"], "web");
    assert_eq!(status.annotations["note"], "made by an end-to-end test");
    assert!(status.created_at > 0);
    let ip: IpAddr = status.network.unwrap().ip.parse().unwrap();
    assert!(ip.to_string().starts_with(&net.subnet_prefix()), "{ip}");

    // Reachable from the host: a listener in the pod's network namespace answers.
    let pid = pause_pid(&info);
    let netns = info["netns"].as_str().unwrap().to_owned();
    let listener = std::thread::spawn(move || {
        let f = fs::File::open(netns).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(("0.0.0.0", 8080)).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.peer_addr().unwrap()
    });
    let mut connected = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect_timeout(&(ip, 8080).into(), Duration::from_secs(1)) {
            connected = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(connected.is_some(), "could not reach {ip}:8080 from the host");
    listener.join().unwrap();

    // The pause holds the pod's UTS namespace with the pod's hostname, and its own PID 1.
    assert_eq!(nsenter(pid, &["-u"], &["hostname"]), "web-host");
    assert_ne!(namespace_of(&pid.to_string(), "net"), namespace_of("self", "net"));
    assert_ne!(namespace_of(&pid.to_string(), "pid"), namespace_of("self", "pid"));
    assert_ne!(namespace_of(&pid.to_string(), "ipc"), namespace_of("self", "ipc"));
    // The files containers will bind-mount.
    let files = lab.path(&format!("root/pods/{id}"));
    assert_eq!(
        fs::read_to_string(files.join("resolv.conf")).unwrap(),
        "search e2e.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert_eq!(fs::read_to_string(files.join("hostname")).unwrap(), "web-host\n");
    assert_contains(&fs::read_to_string(files.join("hosts")).unwrap(), &format!("{ip}\tweb-host"));
    assert_eq!(net.reserved_ips(), [ip.to_string()]);
    assert_eq!(net.veths().len(), 1);
    // Records are root's alone; the files containers mount are readable.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&lab.path("root/pods")), 0o700);
    assert_eq!(mode(&lab.path("state/pods")), 0o700);
    assert_eq!(mode(&files.join("sandbox.json")), 0o600);
    assert_eq!(mode(&files.join("resolv.conf")), 0o644);

    stop(&mut client, &id).await;
    let (status, _) = pod_status(&mut client, &id).await;
    assert!(!is_ready(&status));
    assert!(net.reserved_ips().is_empty(), "the IP is freed at stop");
    assert!(net.veths().is_empty(), "the veth is gone at stop");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pause still runs after stop");

    remove(&mut client, &id).await;
    let err = client
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn host_namespaces_are_the_hosts() {
    let lab = Lab::with_network(2);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let config = with_namespaces(pod_config("hostns"), NamespaceMode::Node, NamespaceMode::Node, NamespaceMode::Node);
    let id = run(&mut client, config).await.unwrap();
    let (status, info) = pod_status(&mut client, &id).await;
    assert!(is_ready(&status));
    assert_eq!(status.network.unwrap().ip, "", "a host-network pod has no pod IP of its own");
    let options = status.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(options.network, NamespaceMode::Node as i32);
    let pid = pause_pid(&info).to_string();
    for kind in ["net", "pid", "ipc", "uts"] {
        assert_eq!(namespace_of(&pid, kind), namespace_of("self", kind), "{kind}");
    }
    assert!(lab.pod_net(2).veths().is_empty());

    // POD PID mode: pause is PID 1 of the pod's own PID namespace.
    let config = with_namespaces(pod_config("podpid"), NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let id2 = run(&mut client, config).await.unwrap();
    let (_, info) = pod_status(&mut client, &id2).await;
    let pid2 = pause_pid(&info);
    let nspid = fs::read_to_string(format!("/proc/{pid2}/status")).unwrap();
    let line = nspid.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(line.split_whitespace().last(), Some("1"), "{line}");

    for id in [&id, &id2] {
        remove(&mut client, id).await;
    }
    assert_nothing_left(&lab, &[id, id2]);
}

/// crisp has no user namespaces of its own: a pod in the host's (NODE, or none asked for) runs
/// there, and one that asks for its own is refused, never run with the host's IDs.
#[tokio::test]
async fn user_namespaces_only_the_hosts() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let with_userns = |name: &str, mode: NamespaceMode, ids: Vec<IdMapping>| {
        let mut config = with_namespaces(pod_config(name), NamespaceMode::Node, NamespaceMode::Pod, NamespaceMode::Pod);
        let options = config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut();
        options.unwrap().userns_options = Some(UserNamespace { mode: mode as i32, uids: ids.clone(), gids: ids });
        config
    };
    let mapping = |container_id, host_id| IdMapping { container_id, host_id, length: 100000 };

    let id = run(&mut client, with_userns("userns-node", NamespaceMode::Node, vec![])).await.unwrap();
    let (_, info) = pod_status(&mut client, &id).await;
    assert_eq!(namespace_of(&pause_pid(&info).to_string(), "user"), namespace_of("self", "user"));

    let refused = [
        ("pod", with_userns("userns-pod", NamespaceMode::Pod, vec![mapping(0, 1000)]), Code::Unimplemented),
        (
            "two mappings",
            with_userns("userns-two", NamespaceMode::Pod, vec![mapping(0, 1000), mapping(0, 2000)]),
            Code::InvalidArgument,
        ),
        (
            "0 unmapped",
            with_userns("userns-unmapped", NamespaceMode::Pod, vec![mapping(1, 1000)]),
            Code::InvalidArgument,
        ),
        ("container", with_userns("userns-container", NamespaceMode::Container, vec![]), Code::InvalidArgument),
        ("target", with_userns("userns-target", NamespaceMode::Target, vec![]), Code::InvalidArgument),
        (
            "node mapped",
            with_userns("userns-node-mapped", NamespaceMode::Node, vec![mapping(0, 1000)]),
            Code::InvalidArgument,
        ),
    ];
    for (what, config, code) in refused {
        let err = run(&mut client, config).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert_contains(err.message(), "user namespace");
    }
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    assert_eq!(pods.len(), 1, "refused pods leave no sandbox");

    remove(&mut client, &id).await;
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn sysctls_namespaced_only_and_never_injected() {
    let lab = Lab::with_network(3);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let safe = with_sysctls(
        pod_config("sysctl"),
        &[("kernel.shm_rmid_forced", "1"), ("net.ipv4.ip_unprivileged_port_start", "0")],
    );
    let id = run(&mut client, safe).await.unwrap();
    let (_, info) = pod_status(&mut client, &id).await;
    let pid = pause_pid(&info);
    assert_eq!(nsenter(pid, &["-n"], &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]), "0");
    assert_eq!(nsenter(pid, &["-i"], &["cat", "/proc/sys/kernel/shm_rmid_forced"]), "1");
    let host_port_start = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host_port_start.trim(), "0", "the host's value changed");

    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let refused = [
        ("unsafe", with_sysctls(pod_config("unsafe"), &[("kernel.core_pattern", "/tmp/core")]), "not namespaced"),
        (
            "injection",
            with_sysctls(pod_config("inject"), &[("kernel.shm_rmid_forced", "1+kernel.core_pattern=|/tmp/pwn")]),
            "'=' and '+' are not allowed",
        ),
        (
            "host network",
            with_namespaces(
                with_sysctls(pod_config("hostnet-sysctl"), &[("net.ipv4.ip_forward", "1")]),
                NamespaceMode::Node,
                NamespaceMode::Pod,
                NamespaceMode::Pod,
            ),
            "shares the host's network namespace",
        ),
    ];
    for (what, config, message) in refused {
        let err = run(&mut client, config).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert_contains(err.message(), message);
    }
    assert_eq!(fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), core_pattern);
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    assert_eq!(pods.len(), 1, "refused pods leave no sandbox");

    remove(&mut client, &id).await;
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn host_port_reaches_the_pod_on_loopback() {
    let lab = Lab::with_network(4);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let host_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = pod_config("ports");
    config.port_mappings =
        vec![PortMapping { protocol: 0, container_port: 80, host_port: host_port as i32, host_ip: "127.0.0.1".into() }];
    let id = run(&mut client, config).await.unwrap();
    let (_, info) = pod_status(&mut client, &id).await;
    let netns = info["netns"].as_str().unwrap().to_owned();
    let listener = std::thread::spawn(move || {
        let f = fs::File::open(netns).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(("0.0.0.0", 80)).unwrap();
        listener.accept().map(|_| ()).unwrap();
    });
    let mut reached = false;
    for _ in 0..100 {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], host_port).into(), Duration::from_secs(1)).is_ok() {
            reached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reached, "127.0.0.1:{host_port} did not reach the pod's port 80");
    listener.join().unwrap();
    remove(&mut client, &id).await;
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn twenty_pods_in_parallel_get_distinct_ips() {
    let lab = Lab::with_network(5);
    lab.write_config("");
    let daemon = lab.start();
    let client = daemon.client().await;

    let runs = (0..20).map(|i| {
        let mut client = client.clone();
        async move { run(&mut client, pod_config(&format!("par-{i}"))).await.unwrap() }
    });
    let ids = futures::future::join_all(runs).await;
    let mut client = client.clone();
    let mut ips = HashSet::new();
    for id in &ids {
        let (status, _) = pod_status(&mut client, id).await;
        assert!(is_ready(&status));
        assert!(ips.insert(status.network.unwrap().ip), "an IP was given twice");
    }
    assert_eq!(lab.pod_net(5).reserved_ips().len(), 20);
    let removals = ids.iter().map(|id| {
        let mut client = client.clone();
        async move { remove(&mut client, id).await }
    });
    futures::future::join_all(removals).await;
    assert!(lab.pod_net(5).reserved_ips().is_empty());
    assert!(lab.pod_net(5).veths().is_empty());
    assert_nothing_left(&lab, &ids);
}

#[tokio::test]
async fn run_stop_remove_cycles_leak_nothing() {
    let lab = Lab::with_network(6);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let net = lab.pod_net(6);
    let fds_before = fs::read_dir(format!("/proc/{}/fd", daemon.child.id())).unwrap().count();

    let mut ids = Vec::new();
    for i in 0..200 {
        let id = run(&mut client, pod_config(&format!("cycle-{i}"))).await.unwrap();
        stop(&mut client, &id).await;
        remove(&mut client, &id).await;
        ids.push(id);
    }
    assert!(net.reserved_ips().is_empty());
    assert!(net.veths().is_empty());
    assert_nothing_left(&lab, &ids);
    let fds_after = fs::read_dir(format!("/proc/{}/fd", daemon.child.id())).unwrap().count();
    assert!(fds_after <= fds_before + 4, "crisp's open files grew from {fds_before} to {fds_after}");
}

#[tokio::test]
async fn cni_failing_mid_add_leaves_nothing() {
    let lab = Lab::new();
    let plugins = lab.path("plugins");
    fs::create_dir_all(&plugins).unwrap();
    // A third plugin in the chain that fails ADD after bridge and portmap succeeded.
    let fail = plugins.join("crisp-fail");
    fs::write(
        &fail,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"refused on purpose\"}'\n  exit 1\nfi\nif [ \"$CNI_COMMAND\" = VERSION ]; then echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}'; fi\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fail, fs::Permissions::from_mode(0o755)).unwrap();
    let net = lab.set_network(7, r#", {"type": "crisp-fail"}"#);
    let path = lab.write_config("");
    let dropins = path.parent().unwrap().join("crisp.d");
    fs::create_dir_all(&dropins).unwrap();
    fs::write(dropins.join("10-plugins.toml"), format!("[network]\nplugin_dirs = [\"/usr/lib/cni\", {plugins:?}]\n"))
        .unwrap();
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let err = run(&mut client, pod_config("doomed")).await.unwrap_err();
    // The plugin, its command and its own error object, code and message.
    assert_contains(err.message(), "CNI plugin crisp-fail ADD failed");
    assert_contains(err.message(), "refused on purpose");
    assert!(net.reserved_ips().is_empty(), "the IP bridge reserved was freed");
    assert!(net.veths().is_empty());
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    assert!(pods.is_empty());
    let records: Vec<_> = fs::read_dir(lab.path("root/pods")).unwrap().collect();
    assert!(records.is_empty(), "records left: {records:?}");
    assert_nothing_left(&lab, &[]);
}

#[tokio::test]
async fn idempotent_run_stop_remove() {
    let lab = Lab::with_network(8);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let id = run(&mut client, pod_config("same")).await.unwrap();
    assert_eq!(run(&mut client, pod_config("same")).await.unwrap(), id, "a retry gets the same sandbox");
    let mut different = pod_config("same");
    different.hostname = "other".into();
    let err = run(&mut client, different).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // Concurrent retries of a new pod all wait for the one sandbox.
    let racers = (0..5).map(|_| {
        let mut client = client.clone();
        async move { run(&mut client, pod_config("racer")).await.unwrap() }
    });
    let raced: HashSet<String> = futures::future::join_all(racers).await.into_iter().collect();
    assert_eq!(raced.len(), 1, "{raced:?}");

    let err = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod_config("h")), runtime_handler: "nonesuch".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_contains(err.message(), "nonesuch");

    stop(&mut client, &id).await;
    stop(&mut client, &id).await;
    let err = run(&mut client, pod_config("same")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "a stopped sandbox holds its name until removed: {err:?}");
    remove(&mut client, &id).await;
    remove(&mut client, &id).await;
    let unknown = "0".repeat(64);
    stop(&mut client, &unknown).await;
    remove(&mut client, &unknown).await;

    // Short IDs work where crictl passes them.
    let racer = raced.into_iter().next().unwrap();
    let listed = client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: racer[..12].into(),
                state: Some(PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 }),
                label_selector: HashMap::from([("app".into(), "racer".into())]),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1);
    let (status, _) = pod_status(&mut client, &racer[..12]).await;
    assert_eq!(status.id, racer);
    remove(&mut client, &racer[..12]).await;
    assert_nothing_left(&lab, &[id, racer]);
}

#[tokio::test]
async fn restart_restores_states_and_cleans_after() {
    let lab = Lab::with_network(9);
    lab.write_config("");
    let mut daemon = lab.start();
    let mut client = daemon.client().await;
    let ready = run(&mut client, pod_config("survivor")).await.unwrap();
    let stopped = run(&mut client, pod_config("stopped")).await.unwrap();
    let dies = run(&mut client, pod_config("dies")).await.unwrap();
    stop(&mut client, &stopped).await;
    let (_, info) = pod_status(&mut client, &dies).await;
    let dies_pid = pause_pid(&info);

    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(Duration::from_secs(10)).await;
    // While crisp is down, one pause dies.
    unsafe { libc::kill(dies_pid as i32, libc::SIGKILL) };
    let daemon = lab.start();
    let mut client = daemon.client().await;

    assert!(is_ready(&pod_status(&mut client, &ready).await.0), "the pause outlived crisp");
    assert!(!is_ready(&pod_status(&mut client, &stopped).await.0));
    let mut dead = false;
    for _ in 0..100 {
        if !is_ready(&pod_status(&mut client, &dies).await.0) {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead, "a pod whose pause died is not ready");

    for id in [&ready, &stopped, &dies] {
        stop(&mut client, id).await;
        remove(&mut client, id).await;
    }
    assert!(lab.pod_net(9).reserved_ips().is_empty());
    assert!(lab.pod_net(9).veths().is_empty());
    assert_nothing_left(&lab, &[ready, stopped, dies]);
}

#[tokio::test]
async fn a_runtime_that_refuses_the_host_fails_only_its_pods() {
    let lab = Lab::with_network(10);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    // Debian's crun 1.8 refuses cgroup v1 hybrid hosts; where it works, the pod simply runs.
    let result = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod_config("crun-pod")), runtime_handler: "crun".into() })
        .await;
    let mut ids = Vec::new();
    match result {
        Ok(r) => ids.push(r.into_inner().pod_sandbox_id),
        Err(err) => {
            // The handler named, with the runtime's own reason: nothing is probed at start for this.
            assert_contains(err.message(), "runtime handler \"crun\" refused the pod's pause container");
            assert_contains(err.message(), "with /usr/bin/crun: ");
            if std::path::Path::new("/sys/fs/cgroup/unified").exists() {
                assert_contains(err.message(), "cgroups in hybrid mode not supported");
            }
            assert!(lab.pod_net(10).reserved_ips().is_empty());
        }
    }
    // runc pods are unaffected.
    let id = run(&mut client, pod_config("runc-pod")).await.unwrap();
    assert!(is_ready(&pod_status(&mut client, &id).await.0));
    ids.push(id);
    for id in &ids {
        remove(&mut client, id).await;
    }
    assert_nothing_left(&lab, &ids);
}

#[tokio::test]
async fn the_pause_image_is_pulled_on_first_use_and_runs_read_only() {
    use crisp_conformance::lab::Lab as ImageLab;
    use crisp_conformance::lab::image::LabImage;
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::with_network(12);
    let pause = format!("{}/{}", registry.registry().addr(), LabImage::Pause);
    lab.write_config(&format!("[pod]\npause_image = {pause:?}\n"));
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let id = run(&mut client, pod_config("imagepause")).await.unwrap();
    let (status, info) = pod_status(&mut client, &id).await;
    assert!(is_ready(&status), "{status:?}");
    let images = client.image.list_images(k8s_cri::v1::ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert_eq!(images.len(), 1, "the pause image was pulled");
    assert!(images[0].pinned);
    // The pause runs from the image's layers, mounted read-only for this pod alone.
    let rootfs = lab.path(&format!("state/pods/{id}/rootfs"));
    let mounts = mounts_under(&rootfs.to_string_lossy());
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let pid = pause_pid(&info);
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::path::Path::new("/pause"), "the image's own pause program");

    // A second pod reuses the image without pulling it again.
    let id2 = run(&mut client, pod_config("imagepause2")).await.unwrap();
    for id in [&id, &id2] {
        remove(&mut client, id).await;
    }
    assert_nothing_left(&lab, &[id, id2]);
}

#[tokio::test]
async fn cgroup_parent_resources_shm_and_oom_score() {
    let lab = Lab::with_network(13);
    lab.write_config("[pod]\nshm_size = 16777216\n");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let parent = format!("/crisp-e2e-{}", std::process::id());
    let mut config = pod_config("limits");
    let linux = config.linux.get_or_insert_with(LinuxPodSandboxConfig::default);
    linux.cgroup_parent = parent.clone();
    linux.resources = Some(k8s_cri::v1::LinuxContainerResources {
        memory_limit_in_bytes: 256 << 20,
        cpu_shares: 512,
        ..Default::default()
    });
    linux.overhead = Some(k8s_cri::v1::LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        cpu_shares: 10,
        ..Default::default()
    });
    let id = run(&mut client, config).await.unwrap();
    let (_, info) = pod_status(&mut client, &id).await;
    let pid = pause_pid(&info);
    let cgroup = format!("/sys/fs/cgroup/memory{parent}/crisp-{id}");
    let cleanup = Parent(parent.clone());

    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_contains(&own, &format!("memory:{parent}/crisp-{id}"));
    assert_eq!(
        fs::read_to_string(format!("{cgroup}/memory.limit_in_bytes")).unwrap().trim(),
        ((256 + 16) << 20).to_string()
    );
    let cpu = format!("/sys/fs/cgroup/cpu{parent}/crisp-{id}/cpu.shares");
    assert_eq!(fs::read_to_string(cpu).unwrap().trim(), "522");

    // The kubelet's -998 for pause, clamped to what this host lets crisp set.
    let status = client.runtime.status(k8s_cri::v1::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let floor: Option<i32> = serde_json::from_str(&status.info["oomScoreAdjFloor"]).unwrap();
    let expected = floor.map_or(-998, |f| f.max(-998));
    let score = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(score.trim(), expected.to_string());

    // The pod's own /dev/shm, of the configured size.
    let shm = lab.path(&format!("state/pods/{id}/shm"));
    let stat = nix::sys::statvfs::statvfs(&shm).unwrap();
    assert_eq!(stat.blocks() * stat.fragment_size(), 16 << 20);
    assert!(mounts_under(&shm.to_string_lossy()).len() == 1);

    remove(&mut client, &id).await;
    assert!(!std::path::Path::new(&cgroup).exists(), "the pause's cgroup is removed with it");
    drop(cleanup);
    assert_nothing_left(&lab, &[id]);
}

/// Removes a test's cgroup parent in every hierarchy, also when the test fails.
struct Parent(String);

impl Drop for Parent {
    fn drop(&mut self) {
        for hierarchy in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let dir = hierarchy.path().join(self.0.trim_start_matches('/'));
            for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    let _ = fs::remove_dir(child.path());
                }
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A bridge plugin that takes `delay` seconds over ADD and fails DEL while `fail_del` exists:
/// a CNI network slow and broken on demand.
fn slow_bridge(lab: &Lab, n: u8, delay: u32, fail_del: &std::path::Path) -> common::net::PodNet {
    use std::os::unix::fs::PermissionsExt;
    let plugins = lab.path("plugins");
    fs::create_dir_all(&plugins).unwrap();
    let script = plugins.join("crisp-slow");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then sleep {delay}; fi\n\
             if [ \"$CNI_COMMAND\" = DEL ] && [ -e {fail_del:?} ]; then\n\
               cat >/dev/null; echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"DEL refused on purpose\"}}'; exit 1\n\
             fi\n\
             exec /usr/lib/cni/bridge\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let net = lab.set_network(n, "");
    let path = lab.cni_dir().join("10-e2e.conflist");
    let text = fs::read_to_string(&path).unwrap().replacen("\"type\": \"bridge\"", "\"type\": \"crisp-slow\"", 1);
    fs::write(&path, text).unwrap();
    let config = lab.write_config("");
    let dropins = config.parent().unwrap().join("crisp.d");
    fs::create_dir_all(&dropins).unwrap();
    fs::write(dropins.join("10-plugins.toml"), format!("[network]\nplugin_dirs = [\"/usr/lib/cni\", {plugins:?}]\n"))
        .unwrap();
    net
}

async fn list_ids(client: &mut CriClient) -> Vec<(String, bool)> {
    let items = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    items.into_iter().map(|p| (p.id, p.state == PodSandboxState::SandboxReady as i32)).collect()
}

#[tokio::test]
async fn kill_mid_creation_with_a_failing_del_is_cleaned_up_later() {
    let lab = Lab::new();
    let fail_del = lab.path("fail-del");
    let net = slow_bridge(&lab, 14, 3, &fail_del);
    let mut daemon = lab.start();
    let client = daemon.client().await;

    // A sandbox being created is not listed yet: the kubelet retries RunPodSandbox instead.
    let pending = tokio::spawn({
        let mut client = client.clone();
        async move { run(&mut client, pod_config("interrupted")).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(list_ids(&mut client.clone()).await, vec![], "a half-made sandbox is listed");

    // crisp dies in the middle of the ADD; on restart the DEL of its undo fails.
    fs::write(&fail_del, "").unwrap();
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(Duration::from_secs(10)).await;
    assert!(pending.await.unwrap().is_err());
    tokio::time::sleep(Duration::from_secs(3)).await; // the orphaned ADD finishes
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let listed = list_ids(&mut client).await;
    assert_eq!(listed.len(), 1, "the sandbox whose undo failed stays for Stop/Remove: {}", daemon.logs());
    assert!(!listed[0].1, "and is not ready");
    let id = listed[0].0.clone();
    let err = client.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await;
    assert_contains(err.unwrap_err().message(), "DEL refused on purpose");

    fs::remove_file(&fail_del).unwrap();
    remove(&mut client, &id).await;
    assert!(net.reserved_ips().is_empty(), "the address the interrupted ADD got is freed");
    assert!(net.veths().is_empty());
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn stop_and_remove_racing_both_succeed() {
    let lab = Lab::with_network(15);
    lab.write_config("");
    let daemon = lab.start();
    let client = daemon.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = run(&mut client.clone(), pod_config(&format!("race-{i}"))).await.unwrap();
        let (mut a, mut b) = (client.clone(), client.clone());
        let (stopped, removed) = tokio::join!(
            a.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }),
            b.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.clone() }),
        );
        stopped.unwrap();
        removed.unwrap();
        ids.push(id);
    }
    assert_eq!(list_ids(&mut client.clone()).await, vec![]);
    assert_nothing_left(&lab, &ids);
}

#[tokio::test]
async fn a_pod_outlives_its_handler_leaving_the_config() {
    let lab = Lab::with_network(16);
    lab.write_config("[runtime.handlers.second]\npath = \"/usr/sbin/runc\"\n");
    let mut daemon = lab.start();
    let mut client = daemon.client().await;
    let id = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod_config("second")), runtime_handler: "second".into() })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let (status, info) = pod_status(&mut client, &id).await;
    assert_eq!(status.runtime_handler, "second");
    let pid = pause_pid(&info);

    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(15)).await;
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    assert!(is_ready(&pod_status(&mut client, &id).await.0));
    remove(&mut client, &id).await;
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the pause was stopped with its old runtime");
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn bandwidth_annotations_shape_the_pods_traffic() {
    let lab = Lab::new();
    lab.set_network(17, r#", {"type": "bandwidth", "capabilities": {"bandwidth": true}}"#);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let mut config = pod_config("shaped");
    config.annotations.insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    config.annotations.insert("kubernetes.io/egress-bandwidth".into(), "2M".into());
    let id = run(&mut client, config).await.unwrap();

    // The bandwidth plugin shapes what enters the pod on its host-side veth.
    let veths = lab.pod_net(17).veths();
    assert_eq!(veths.len(), 1);
    let out = Command::new("tc").args(["qdisc", "show", "dev", &veths[0]]).output().unwrap();
    let qdiscs = String::from_utf8_lossy(&out.stdout);
    assert_contains(&qdiscs, "tbf");
    assert_contains(&qdiscs, "rate 1Mbit");

    let mut bad = pod_config("badly-shaped");
    bad.annotations.insert("kubernetes.io/ingress-bandwidth".into(), "lots".into());
    let err = run(&mut client, bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_contains(err.message(), "kubernetes.io/ingress-bandwidth");

    remove(&mut client, &id).await;
    assert_nothing_left(&lab, &[id]);
}

#[tokio::test]
async fn a_pod_whose_monitor_died_is_not_ready() {
    let lab = Lab::with_network(18);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let id = run(&mut client, pod_config("orphaned")).await.unwrap();
    assert!(is_ready(&pod_status(&mut client, &id).await.0));
    let pid_file = lab.path(&format!("state/pods/{id}/monitor/monitor.pid"));
    let monitor: i32 = fs::read_to_string(pid_file).unwrap().trim().parse().unwrap();
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let mut ready = true;
    for _ in 0..100 {
        ready = is_ready(&pod_status(&mut client, &id).await.0);
        if !ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!ready, "a pod without its monitor can run no container: the kubelet must make a new one");
    remove(&mut client, &id).await;
    assert_nothing_left(&lab, &[id]);
}
