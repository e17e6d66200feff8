//! End-to-end: who can reach crisp and what leaks from it: the CRI socket's owner, group and
//! mode; runtime handlers found broken at start; descriptors seen in containers; the monitors'
//! sockets; the listeners' addresses.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::containers::{Options, setup_configured};
use common::net::processes_mentioning;
use common::{Lab, assert_contains, crisp};
use k8s_cri::v1::{
    ExecRequest, ListImagesRequest, ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest,
    StatusRequest, VersionRequest,
};
use tonic::Code;

/// A group's ID from the host's group database; the test needs the group to exist.
fn gid_of(group: &str) -> u32 {
    let groups = fs::read_to_string("/etc/group").unwrap();
    let line = groups.lines().find(|l| l.split(':').next() == Some(group));
    let line = line.unwrap_or_else(|| panic!("this test needs the system group {group:?} in /etc/group"));
    line.split(':').nth(2).unwrap().parse().unwrap()
}

/// `[server] group` through a drop-in, as an operator would set it.
fn set_group(lab: &Lab, group: &str) {
    let dropins = lab.config_path().parent().unwrap().join("crisp.d");
    fs::create_dir_all(&dropins).unwrap();
    fs::write(dropins.join("10-group.toml"), format!("[server]\ngroup = {group:?}\n")).unwrap();
}

#[tokio::test]
async fn the_socket_is_roots_and_its_groups_alone() {
    let adm = gid_of("adm");
    for (group, gid) in [(None, 0), (Some("adm"), adm), (Some("6"), 6)] {
        let lab = Lab::new();
        lab.write_config("");
        if let Some(group) = group {
            set_group(&lab, group);
        }
        let daemon = lab.start();
        let meta = fs::symlink_metadata(lab.socket()).unwrap();
        assert_eq!(
            (meta.permissions().mode() & 0o777, meta.uid(), meta.gid()),
            (0o660, 0, gid),
            "socket of group {group:?}"
        );
        // Nothing is left of where it was made.
        let mut names: Vec<_> =
            fs::read_dir(lab.socket().parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["crisp.sock"]);
        daemon.client().await.runtime.version(VersionRequest::default()).await.unwrap();
    }

    let lab = Lab::new();
    lab.write_config("");
    set_group(&lab, "no-such-group-crisp");
    let (status, _, err) = crisp(&["--config", lab.config_path().to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_contains(&err, "server.group \"no-such-group-crisp\": no such group on this host");
    assert!(!lab.socket().exists());
}

fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

/// Handlers whose runtime is missing, not executable, fails `--version` or never answers it:
/// crisp starts (the hung one bounded), says what is wrong with each, lists them as offering
/// nothing, is not ready when the default is one of them, and refuses their pods saying why.
#[tokio::test]
async fn broken_runtime_handlers_fail_their_pods_not_the_daemon() {
    let lab = Lab::new();
    let script = |name: &str, body: &str, mode: u32| {
        let path = lab.path(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    // The hung runtime is a sleep whose command line names the lab, to see it is gone after.
    let hung_sleep = lab.path("hung-sleep");
    std::os::unix::fs::symlink("/bin/sleep", &hung_sleep).unwrap();
    let broken = [
        ("gone", lab.path("absent"), "No such file or directory"),
        ("plain", script("plain", "exit 0", 0o644), "not executable"),
        (
            "failing",
            script("failing", "echo 'error while loading libseccomp.so.2' >&2; exit 1", 0o755),
            "`--version` failed (exit status: 1): error while loading libseccomp.so.2",
        ),
        (
            "hung",
            script("hung", &format!("exec {} 600", hung_sleep.display()), 0o755),
            "`--version` did not answer within 5s",
        ),
    ];
    let handlers: String =
        broken.iter().map(|(name, path, _)| format!("[runtime.handlers.{name}]\npath = {path:?}\n")).collect();
    lab.write_config(&format!("[runtime]\ndefault_handler = \"gone\"\n\n{handlers}"));
    let daemon = lab.start();
    let mut client = daemon.client().await;
    assert!(processes_mentioning(hung_sleep.to_str().unwrap()).is_empty(), "the hung runtime was left running");

    let logs = daemon.logs();
    for (name, path, reason) in &broken {
        assert_contains(&logs, &format!("runtime handler {name}: {} is not usable: {reason}", path.display()));
    }
    let status = client.runtime.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let mut names: Vec<_> = status.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["", "crun", "failing", "gone", "hung", "plain", "runc"]);
    let ready = status.status.unwrap().conditions.into_iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(!ready.status);
    assert_eq!(ready.reason, "RuntimeNotReady");
    assert_contains(&ready.message, "runtime handler gone");
    assert_contains(&ready.message, "No such file or directory");
    let info: serde_json::Value = serde_json::from_str(&status.info["runtimeHandlers"]).unwrap();
    assert_eq!(info["runc"]["usable"], true, "{info}");
    for (name, _, reason) in &broken {
        assert_eq!(info[name]["usable"], false, "{info}");
        assert_contains(info[name]["error"].as_str().unwrap(), reason);
    }

    for (name, _, reason) in &broken {
        let request = RunPodSandboxRequest { config: Some(pod(name)), runtime_handler: name.to_string() };
        let err = client.runtime.run_pod_sandbox(request).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert_contains(err.message(), &format!("runtime handler {name}"));
        assert_contains(err.message(), reason);
    }
    // A pod without a handler gets the default, which is broken.
    let request = RunPodSandboxRequest { config: Some(pod("default")), runtime_handler: String::new() };
    let err = client.runtime.run_pod_sandbox(request).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_contains(err.message(), "runtime handler gone");
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner();
    assert!(pods.items.is_empty());
}

/// The unix sockets `pid` holds, as `/proc/net/unix` names them (empty for unnamed ones).
fn unix_socket_names(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    fs::read_to_string(format!("/proc/{pid}/net/unix"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            inodes.contains(&fields[6].to_owned()).then(|| fields.get(7).copied().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The local addresses of the TCP sockets `pid` listens on (IPv4, as /proc/net/tcp prints them).
fn tcp_listen_addresses(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut addresses = Vec::new();
    for table in ["tcp", "tcp6"] {
        for line in fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields[3] == "0A" && inodes.contains(&fields[9].to_owned()) {
                addresses.push(fields[1].to_owned());
            }
        }
    }
    addresses
}

fn fd_names(pid: u32) -> Vec<String> {
    let mut fds: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    fds.iter().map(u32::to_string).collect()
}

/// With the daemon holding many descriptors (clients, the streaming and metrics listeners, a
/// metrics connection), a container and the processes exec'd in it hold only their stdio; the
/// listeners are on loopback; the pod's monitor serves a path-based socket only root can reach.
#[tokio::test]
async fn containers_see_no_daemon_descriptors_and_monitors_are_root_only() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut s =
        setup_configured(81, Options::default(), |_| format!("[metrics]\naddress = \"127.0.0.1:{metrics_port}\"\n"))
            .await;
    let daemon_pid = s.daemon.child.id();
    let listening = tcp_listen_addresses(daemon_pid);
    // The streaming server's default and the metrics: 127.0.0.1 as /proc/net/tcp prints it.
    assert!(listening.len() >= 2 && listening.iter().all(|a| a.starts_with("0100007F:")), "{listening:?}");
    let _metrics_connection = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut client = s.daemon.client().await;
        client.runtime.version(VersionRequest::default()).await.unwrap();
        client.image.list_images(ListImagesRequest::default()).await.unwrap();
        client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap();
        clients.push(client);
    }
    let daemon_fds = fd_names(daemon_pid).len();
    assert!(daemon_fds > 10, "the daemon holds only {daemon_fds} descriptors: the test proves nothing");

    let sleeper = s.run(s.config("sleeper", &["sleep", "1000"])).await;
    // A streaming URL outstanding while the exec runs.
    let exec =
        ExecRequest { container_id: sleeper.clone(), cmd: vec!["true".into()], stdout: true, ..Default::default() };
    s.client.runtime.exec(exec).await.unwrap();
    let pid = s.pid(&sleeper).await;
    assert_eq!(fd_names(pid), ["0", "1", "2"], "the container's init");
    // The shell lists its own descriptors (the `true` after keeps it from exec'ing the `ls`).
    let exec_fds = s.exec_ok(&sleeper, &["sh", "-c", "ls /proc/$$/fd; true"]).await;
    assert_eq!(exec_fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"], "an exec'd process");

    // The monitor: a socket by path (no abstract names), 0600 and root's, under root-only dirs.
    let monitor_dir = s.lab.path(&format!("state/pods/{}/monitor", s.pod));
    let socket = monitor_dir.join("monitor.sock");
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid()), (0o600, 0));
    let pods_dir = fs::metadata(s.lab.path("state/pods")).unwrap();
    assert_eq!((pods_dir.permissions().mode() & 0o777, pods_dir.uid()), (0o700, 0));
    let monitor_pid: u32 = fs::read_to_string(monitor_dir.join("monitor.pid")).unwrap().trim().parse().unwrap();
    let names = unix_socket_names(monitor_pid);
    assert!(names.iter().any(|n| n.ends_with("/monitor.sock")), "{names:?}");
    assert!(names.iter().all(|n| n.is_empty() || n.starts_with('/')), "abstract sockets: {names:?}");
    assert!(unix_socket_names(daemon_pid).iter().all(|n| n.is_empty() || n.starts_with('/')));
    assert!(Path::new(&socket).exists());

    drop(clients);
    s.teardown().await;
}
