//! End-to-end: the crisp binary's command line, configuration errors, socket and signals.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{Lab, assert_contains, crisp, is_socket};
use k8s_cri::v1::VersionRequest;

#[test]
fn version_flag() {
    let (status, out, _) = crisp(&["--version"]);
    assert!(status.success());
    assert_eq!(out.trim(), format!("crisp {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_prints_defaults_merged_with_file_and_dropins() {
    let lab = Lab::new();
    let path = lab.write_config("[pod]\npause_image = \"registry.k8s.io/pause:3.10\"\n");
    let dropins = path.parent().unwrap().join("crisp.d");
    fs::create_dir_all(&dropins).unwrap();
    fs::write(dropins.join("50-log.toml"), "[server]\nlog_format = \"json\"\n").unwrap();
    fs::write(dropins.join("60-kata.toml"), "[runtime.handlers.kata]\npath = \"/usr/bin/kata-runtime\"\n").unwrap();

    let (status, out, err) = crisp(&["--config", path.to_str().unwrap(), "config"]);
    assert!(status.success(), "{err}");
    let printed: toml::Table = out.parse().unwrap();
    assert_eq!(printed["server"]["log_format"].as_str(), Some("json"));
    assert_eq!(printed["server"]["listen"].as_str(), lab.socket().to_str());
    assert_eq!(printed["pod"]["pause_image"].as_str(), Some("registry.k8s.io/pause:3.10"));
    assert_eq!(printed["runtime"]["cgroup_manager"].as_str(), Some("cgroupfs"));
    let handlers = printed["runtime"]["handlers"].as_table().unwrap();
    assert_eq!(handlers.keys().collect::<Vec<_>>(), ["crun", "kata", "runc"]);
    assert_eq!(printed["metrics"]["address"].as_str(), Some(""));
    assert_eq!(printed["streaming"]["address"].as_str(), Some("127.0.0.1:0"));
}

#[test]
fn unknown_key_stops_the_daemon_naming_file_and_key() {
    let lab = Lab::new();
    let path = lab.write_config("[runtime]\ncgroup_manger = \"systemd\"\n");
    let (status, _, err) = crisp(&["--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_contains(&err, &format!("{}: key `runtime.cgroup_manger`", path.display()));
    assert!(!lab.socket().exists());
}

#[test]
fn wrong_type_in_a_dropin_names_the_dropin_and_key() {
    let lab = Lab::new();
    let path = lab.write_config("");
    let dropin = path.parent().unwrap().join("crisp.d/10-bad.toml");
    fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    fs::write(&dropin, "[network]\nplugin_dirs = \"/usr/lib/cni\"\n").unwrap();
    let (status, _, err) = crisp(&["--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_contains(&err, &format!("{}: key `network.plugin_dirs`", dropin.display()));
    assert_contains(&err, "expected a sequence");
}

#[test]
fn named_config_file_must_exist() {
    let lab = Lab::new();
    let missing = lab.path("absent.toml");
    let (status, _, err) = crisp(&["--config", missing.to_str().unwrap(), "config"]);
    assert_eq!(status.code(), Some(2));
    assert_contains(&err, &format!("{}: cannot read", missing.display()));
}

#[tokio::test]
async fn sigterm_and_sigint_drain_exit_zero_and_remove_the_socket() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let lab = Lab::new();
        lab.write_config("");
        let mut daemon = lab.start();
        // A client that stays connected, as the kubelet does, must not hold up the exit.
        let mut client = daemon.client().await;
        let mode = fs::metadata(lab.socket()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        client.runtime.version(VersionRequest::default()).await.unwrap();

        daemon.signal(signal);
        let status = daemon.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(status.code(), Some(0), "signal {signal}:\n{}", daemon.logs());
        assert!(!lab.socket().exists(), "socket left behind");
        assert_contains(&daemon.logs(), "draining in-flight RPCs");
        assert!(!daemon.logs().contains("stopping anyway"), "an idle connection held up the drain");
        drop(client);
    }
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let lab = Lab::new();
    lab.write_config("");
    fs::create_dir_all(lab.socket().parent().unwrap()).unwrap();
    drop(UnixListener::bind(lab.socket()).unwrap());
    assert!(is_socket(&lab.socket()));
    let daemon = lab.start();
    daemon.client().await.runtime.version(VersionRequest::default()).await.unwrap();
    assert_contains(&daemon.logs(), "replacing a stale socket");
}

#[tokio::test]
async fn a_live_daemon_is_not_replaced() {
    let lab = Lab::new();
    lab.write_config("");
    let first = lab.start();

    // Same socket, another root: the socket answers, so the second daemon refuses it.
    let other = Lab::new();
    let config = other.write_config("");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("listen = {:?}", other.socket()), &format!("listen = {:?}", lab.socket()));
    fs::write(&config, text).unwrap();
    let (status, _, err) = crisp(&["--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_contains(&err, &format!("another crisp already serves {}", lab.socket().display()));

    // Same root, another socket: the root's lock refuses it.
    let text = fs::read_to_string(lab.config_path())
        .unwrap()
        .replace(&format!("listen = {:?}", lab.socket()), &format!("listen = {:?}", other.socket()));
    fs::write(&config, text).unwrap();
    let (status, _, err) = crisp(&["--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_contains(&err, "another crisp holds the root");
    assert!(!other.socket().exists());

    // Another root and socket on the same state: its start would remove the first one's
    // runtime containers and mounts as no record's, so the state's lock refuses it first.
    let text = fs::read_to_string(other.write_config(""))
        .unwrap()
        .replace(&format!("state = {:?}", other.path("state")), &format!("state = {:?}", lab.path("state")));
    fs::write(&config, text).unwrap();
    let (status, _, err) = crisp(&["--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_contains(&err, &format!("another crisp holds the root or state {}", lab.path("state").display()));
    assert!(!other.socket().exists());

    first.client().await.runtime.version(VersionRequest::default()).await.unwrap();
}

#[test]
fn a_file_in_the_sockets_place_is_not_replaced() {
    let lab = Lab::new();
    lab.write_config("");
    fs::create_dir_all(lab.socket().parent().unwrap()).unwrap();
    fs::write(lab.socket(), "precious").unwrap();
    let (status, _, err) = crisp(&["--config", lab.config_path().to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert_contains(&err, "exists and is not a socket");
    assert_eq!(fs::read_to_string(lab.socket()).unwrap(), "precious");
}

/// The shipped example config is the defaults plus the lab's registry mirrors.
#[test]
fn contrib_config_is_valid() {
    let contrib = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/crisp.toml");
    let (status, out, err) = crisp(&["--config", contrib, "config"]);
    assert!(status.success(), "{err}");
    let (status, defaults, err) = crisp(&["--config", "/dev/null", "config"]);
    assert!(status.success(), "{err}");
    let mut printed: toml::Table = out.parse().unwrap();
    let registries = printed["image"]["registries"].as_array().unwrap().clone();
    let hosts: Vec<_> = registries.iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["docker.io", "registry.k8s.io"]);
    printed["image"].as_table_mut().unwrap().insert("registries".into(), toml::Value::Array(vec![]));
    assert_eq!(printed, defaults.parse::<toml::Table>().unwrap());
}

/// An RPC that cannot finish (a pull from a registry that never answers) holds the drain only
/// up to its cap: crisp still exits 0 and removes its socket.
#[tokio::test]
async fn sigterm_with_an_rpc_stuck_in_flight_exits_after_the_drain_cap() {
    // Accepts connections and never answers them.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stalled.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for connection in stalled.incoming().flatten() {
            keep.lock().unwrap().push(connection);
        }
    });

    let lab = Lab::new();
    lab.write_config("");
    let mut daemon = lab.start();
    let mut client = daemon.client().await;
    let request = k8s_cri::v1::PullImageRequest {
        image: Some(k8s_cri::v1::ImageSpec { image: format!("{addr}/stuck:v1"), ..Default::default() }),
        ..Default::default()
    };
    let pull = tokio::spawn(async move { client.image.pull_image(request).await });
    // The pull is under way once the registry has its connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "crisp never reached the registry:\n{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
    assert_contains(&daemon.logs(), "stopping anyway");
    assert!(!lab.socket().exists());
    assert!(pull.await.unwrap().is_err(), "the stuck pull cannot have succeeded");
}

/// A RunPodSandbox in flight when SIGTERM comes (its CNI ADD takes 2 s) completes for the
/// client; crisp exits 0 after it, its record on disk. The running container lives on across
/// the stop, and after a restart both the pod and the container are there as they were.
#[tokio::test]
async fn sigterm_lets_an_rpc_in_flight_finish_and_leaves_containers_running() {
    use common::containers::{Options, setup_configured};
    use k8s_cri::v1::{ContainerState, PodSandboxState, PodSandboxStatusRequest, RemovePodSandboxRequest};

    // The real bridge plugin, slowed down on ADD once the test asks, saying when it starts.
    let mut s = setup_configured(80, Options::default(), |lab| {
        let bin = lab.path("cni-bin");
        fs::create_dir_all(&bin).unwrap();
        let plugin = bin.join("slowbridge");
        let (slow, started) = (lab.path("slow-add"), lab.path("add-started"));
        fs::write(
            &plugin,
            format!(
                "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ] && [ -e {slow:?} ]; then touch {started:?}; sleep 2; fi\nexec /usr/lib/cni/bridge\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).unwrap();
        let conflist = lab.cni_dir().join("10-e2e.conflist");
        let text = fs::read_to_string(&conflist).unwrap().replace("\"type\": \"bridge\"", "\"type\": \"slowbridge\"");
        fs::write(&conflist, text).unwrap();
        // Into the lab's [network] table, which the config's extra text follows.
        format!("plugin_dirs = [{bin:?}, \"/usr/lib/cni\"]\n")
    })
    .await;
    let sleeper = s.run(s.config("sleeper", &["sleep", "1000"])).await;
    let sleeper_pid = s.pid(&sleeper).await;

    fs::write(s.lab.path("slow-add"), "").unwrap();
    let mut client = s.daemon.client().await;
    let mut late = s.pod_config.clone();
    late.metadata.as_mut().unwrap().name = "late".into();
    late.metadata.as_mut().unwrap().uid = "late-uid".into();
    let request = k8s_cri::v1::RunPodSandboxRequest { config: Some(late), runtime_handler: String::new() };
    let run = tokio::spawn(async move { client.runtime.run_pod_sandbox(request).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !s.lab.path("add-started").exists() {
        assert!(std::time::Instant::now() < deadline, "the CNI ADD never started:\n{}", s.daemon.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    s.daemon.signal(libc::SIGTERM);
    let late_id = match run.await.unwrap() {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(e) => panic!("the RunPodSandbox in flight failed: {e}\n{}", s.daemon.logs()),
    };
    let status = s.daemon.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", s.daemon.logs());
    assert!(!s.daemon.logs().contains("stopping anyway"), "{}", s.daemon.logs());
    let record = s.lab.path(&format!("root/pods/{late_id}/sandbox.json"));
    assert!(record.exists(), "no record of the pod made during the drain");
    // The container's init is still the sleep it was.
    let comm = fs::read_to_string(format!("/proc/{sleeper_pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "sleep", "the container did not outlive the daemon");

    fs::remove_file(s.lab.path("slow-add")).unwrap();
    s.daemon = s.lab.start();
    s.client = s.daemon.client().await;
    let running = s.status(&sleeper).await;
    assert_eq!(running.state, ContainerState::ContainerRunning as i32);
    assert_eq!(s.pid(&sleeper).await, sleeper_pid);
    for id in [&s.pod, &late_id] {
        let request = PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false };
        let pod = s.client.runtime.pod_sandbox_status(request).await.unwrap().into_inner().status.unwrap();
        assert_eq!(pod.state, PodSandboxState::SandboxReady as i32, "pod {id}");
    }
    let request = RemovePodSandboxRequest { pod_sandbox_id: late_id };
    s.client.runtime.remove_pod_sandbox(request).await.unwrap();
    s.teardown().await;
}
