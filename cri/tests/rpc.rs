//! End-to-end: the CRI RPCs of a real crisp daemon, over its socket.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use common::{BRIDGE_CONFLIST, Lab, assert_contains};
use crisp_conformance::suite::{self, Selection, Verdict};
use k8s_cri::v1::{
    CgroupDriver, CheckpointContainerRequest, NetworkConfig, RuntimeConfig, RuntimeConfigRequest, StatusRequest,
    UpdateRuntimeConfigRequest, VersionRequest,
};
use tonic::Code;

fn condition(response: &k8s_cri::v1::StatusResponse, kind: &str) -> k8s_cri::v1::RuntimeCondition {
    let status = response.status.as_ref().expect("status");
    status.conditions.iter().find(|c| c.r#type == kind).unwrap_or_else(|| panic!("no {kind}")).clone()
}

/// Every case passes against crisp, but for those this host or crisp's handler cannot run: they
/// skip, saying why, and exactly they do. A skip for any other reason fails.
#[tokio::test]
async fn conformance_suite_passes() {
    let lab = Lab::new();
    lab.set_network(11, "");
    // docker.io resolves through the lab, so the short-name cases run too.
    let test_lab = crisp_conformance::lab::Lab::start().await.expect("starting the test registry");
    let mirror = test_lab.registry().addr();
    lab.write_config(&format!("[[image.registries]]\nhost = \"docker.io\"\nmirrors = [\"http://{mirror}\"]\n"));
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let expected = expected_skips(&mut client).await;
    let mut context = suite::Context::new(client, suite::TestImages::from_lab(&test_lab, true));
    let report = suite::run(&mut context, &Selection::default(), |_| {}).await;
    let failed: Vec<_> =
        report.outcomes.iter().filter(|o| matches!(o.verdict, Verdict::Fail(_))).map(|o| o.to_string()).collect();
    assert!(failed.is_empty(), "{}\n{}", failed.join("\n"), daemon.logs());
    let skipped: BTreeMap<String, String> = report
        .outcomes
        .iter()
        .filter_map(|o| match &o.verdict {
            Verdict::Skip(why) => Some((o.name.clone(), why.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, expected, "the cases skipped, and why, are not those this host and crisp can't run");
    assert_eq!(report.passed() + skipped.len(), suite::cases().len());
}

/// What the suite must skip against crisp on this host, by case, with the reason it must give.
async fn expected_skips(client: &mut crisp_conformance::client::CriClient) -> BTreeMap<String, String> {
    let status = client.runtime.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    let default = status.runtime_handlers.iter().find(|h| h.name.is_empty()).and_then(|h| h.features);
    let (userns, rro) = default.map_or((false, false), |f| (f.user_namespaces, f.recursive_read_only_mounts));
    let apparmor = fs::read_to_string(APPARMOR_ENABLED).is_ok_and(|v| v.starts_with('Y'));
    let apparmor_parser = std::process::Command::new("apparmor_parser").arg("--version").output().is_ok();
    let reasons = [
        SkipReason {
            applies: !apparmor,
            cases: |name| name.starts_with("container/apparmor-"),
            why: format!("AppArmor is disabled on this host ({APPARMOR_ENABLED} is not Y)"),
        },
        SkipReason {
            applies: apparmor && !apparmor_parser,
            cases: |name| name.starts_with("container/apparmor-") && !name.ends_with("-unloaded-refused"),
            why: "apparmor_parser is not installed: the test profiles cannot be loaded".into(),
        },
        SkipReason {
            applies: !userns,
            cases: |name| name == "container/userns-pod",
            why: "handler \"\" does not report user namespace support".into(),
        },
        SkipReason {
            applies: !rro,
            cases: |name| name.starts_with("container/recursive-readonly"),
            why: "the runtime's default handler does not declare recursive_read_only_mounts in Status: it cannot make \
                  recursive read-only mounts"
                .into(),
        },
    ];
    let mut expected = BTreeMap::new();
    for case in suite::cases() {
        if let Some(reason) = reasons.iter().find(|r| r.applies && (r.cases)(case.name)) {
            expected.insert(case.name.to_owned(), reason.why.clone());
        }
    }
    expected
}

/// Why some cases cannot run here, when that holds.
struct SkipReason {
    applies: bool,
    cases: fn(&str) -> bool,
    why: String,
}

const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// The runner binary prints a line per case and the closing counts, and writes JSON.
#[tokio::test]
async fn conformance_runner_binary_reports() {
    let runner = std::path::Path::new(common::CRISP).with_file_name("crisp-conformance");
    assert!(
        runner.exists(),
        "{} is missing: build the workspace's binaries first (contrib/test.sh does)",
        runner.display()
    );
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let json = lab.path("report.json");
    let out = std::process::Command::new(&runner)
        .args([
            "--endpoint",
            &format!("unix://{}", daemon.socket.display()),
            "--focus",
            "runtime/",
            "--skip",
            "verbose",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<_> = stdout.lines().collect();
    let ran = suite::cases().iter().filter(|c| c.name.starts_with("runtime/") && !c.name.contains("verbose")).count();
    assert_eq!(lines.len(), ran + 1, "{stdout}");
    assert!(lines.iter().take(ran).all(|l| l.starts_with("PASS runtime/")), "{stdout}");
    assert!(!stdout.contains("verbose"));
    assert_eq!(lines[ran], format!("{ran} passed, 0 failed, 0 skipped"));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["outcomes"].as_array().unwrap().len(), ran);

    // Nothing listens on a socket that does not exist: a clear error, exit 2.
    let out = std::process::Command::new(&runner).args(["--endpoint", "unix:///nonexistent.sock"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_contains(&String::from_utf8_lossy(&out.stderr), "connecting to /nonexistent.sock");
}

/// The shipped CNI conflist is a ready network with Debian's plugins.
#[tokio::test]
async fn contrib_conflist_makes_the_network_ready() {
    let lab = Lab::new();
    let conflist = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/cni/10-crisp-bridge.conflist");
    fs::copy(conflist, lab.cni_dir().join("10-crisp-bridge.conflist")).unwrap();
    lab.write_config("");
    let daemon = lab.start();
    let response = daemon.client().await.runtime.status(StatusRequest::default()).await.unwrap().into_inner();
    let network = condition(&response, "NetworkReady");
    assert!(network.status, "{network:?}");
    let text = fs::read_to_string(conflist).unwrap();
    assert_contains(&text, "\"ipMasq\": false");
}

#[tokio::test]
async fn version_names_crisp() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let v = daemon.client().await.runtime.version(VersionRequest::default()).await.unwrap().into_inner();
    assert_eq!(v.runtime_name, "crisp");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn network_ready_follows_the_conf_dir_without_restart() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let status = || {
        let mut client = client.runtime.clone();
        async move { client.status(StatusRequest { verbose: false }).await.unwrap().into_inner() }
    };

    let network = condition(&status().await, "NetworkReady");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert_contains(&network.message, &format!("no CNI network config in {}", lab.cni_dir().display()));
    assert!(condition(&status().await, "RuntimeReady").status, "{}", daemon.logs());

    let conflist = lab.cni_dir().join("10-test.conflist");
    fs::write(&conflist, BRIDGE_CONFLIST).unwrap();
    let network = condition(&status().await, "NetworkReady");
    assert!(network.status, "{network:?}");
    assert_eq!(network.reason, "");

    // A conflist naming a plugin that is not installed is no network.
    fs::write(&conflist, BRIDGE_CONFLIST.replace("\"portmap\"", "\"no-such-plugin\"")).unwrap();
    let network = condition(&status().await, "NetworkReady");
    assert!(!network.status);
    assert_contains(&network.message, "CNI plugin \"no-such-plugin\" not found");

    fs::remove_file(&conflist).unwrap();
    assert!(!condition(&status().await, "NetworkReady").status);
    client.runtime.version(VersionRequest::default()).await.unwrap();
}

/// A CNI 1.1 network's STATUS answer decides NetworkReady, without a restart.
#[tokio::test]
async fn network_ready_asks_cni_status() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let plugins = lab.path("plugins");
    fs::create_dir_all(&plugins).unwrap();
    let plugin = plugins.join("crisp-status");
    let flag = lab.path("plugin-ready");
    fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\n\
             VERSION) echo '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.0.0\",\"1.1.0\"]}}';;\n\
             STATUS) [ -e {flag:?} ] && exit 0; echo '{{\"cniVersion\":\"1.1.0\",\"code\":50,\"msg\":\"not ready on purpose\"}}'; exit 1;;\n\
             esac\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        lab.cni_dir().join("10-status.conflist"),
        r#"{"cniVersion":"1.1.0","name":"status-net","plugins":[{"type":"crisp-status"}]}"#,
    )
    .unwrap();
    let path = lab.write_config("");
    let dropins = path.parent().unwrap().join("crisp.d");
    fs::create_dir_all(&dropins).unwrap();
    fs::write(dropins.join("10-plugins.toml"), format!("[network]\nplugin_dirs = [{plugins:?}]\n")).unwrap();
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let status = client.runtime.status(StatusRequest::default()).await.unwrap().into_inner();
    let network = condition(&status, "NetworkReady");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert_contains(&network.message, "not ready on purpose");

    fs::write(&flag, "").unwrap();
    let status = client.runtime.status(StatusRequest::default()).await.unwrap().into_inner();
    assert!(condition(&status, "NetworkReady").status, "{}", daemon.logs());
}

#[tokio::test]
async fn runtime_not_ready_without_its_binary() {
    let lab = Lab::new();
    lab.write_config("[runtime.handlers.runc]\npath = \"/nonexistent/runc\"\n");
    let daemon = lab.start();
    let response = daemon.client().await.runtime.status(StatusRequest::default()).await.unwrap().into_inner();
    let runtime = condition(&response, "RuntimeReady");
    assert!(!runtime.status);
    assert_eq!(runtime.reason, "RuntimeNotReady");
    assert_contains(&runtime.message, "/nonexistent/runc");
}

#[tokio::test]
async fn status_lists_handlers_and_verbose_info() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let response = daemon.client().await.runtime.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let names: Vec<_> = response.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["", "crun", "runc"]);
    let config: serde_json::Value = serde_json::from_str(&response.info["config"]).unwrap();
    assert_eq!(config["server"]["listen"], lab.socket().to_str().unwrap());
    assert_eq!(config["runtime"]["default_handler"], "runc");
    // The host's limit on oom_score_adj is probed at start: a process like the daemon (same
    // score, same privileges) that cannot go one below its own score means a floor there.
    let floor: Option<i32> = serde_json::from_str(&response.info["oomScoreAdjFloor"]).unwrap();
    let own: i32 = fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    let lowered = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo {} > /proc/self/oom_score_adj", own - 1))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert_eq!(floor, if lowered { None } else { Some(own) });
}

#[tokio::test]
async fn update_runtime_config_keeps_the_pod_cidr() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let update = |cidr: &str| UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig { network_config: Some(NetworkConfig { pod_cidr: cidr.into() }) }),
    };
    let pod_cidr = |response: k8s_cri::v1::StatusResponse| -> Option<String> {
        serde_json::from_str(&response.info["podCIDR"]).unwrap()
    };

    let status = client.runtime.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    assert_eq!(pod_cidr(status), None);

    client.runtime.update_runtime_config(update("10.88.0.0/16,fd00::/64")).await.unwrap();
    let err = client.runtime.update_runtime_config(update("10.88.0.0/99")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_contains(err.message(), "invalid pod CIDR \"10.88.0.0/99\"");
    // Neither the bad update nor an empty one loses the CIDR.
    client.runtime.update_runtime_config(update("")).await.unwrap();
    let status = client.runtime.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    assert_eq!(pod_cidr(status).as_deref(), Some("10.88.0.0/16,fd00::/64"));
}

#[tokio::test]
async fn runtime_config_reports_the_cgroup_driver() {
    for (manager, driver) in [("cgroupfs", CgroupDriver::Cgroupfs), ("systemd", CgroupDriver::Systemd)] {
        let lab = Lab::new();
        lab.write_config(&format!("[runtime]\ncgroup_manager = \"{manager}\"\n"));
        let daemon = lab.start();
        let response =
            daemon.client().await.runtime.runtime_config(RuntimeConfigRequest {}).await.unwrap().into_inner();
        assert_eq!(response.linux.unwrap().cgroup_driver(), driver);
    }
}

#[tokio::test]
async fn rpcs_not_yet_landed_say_which() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let request = CheckpointContainerRequest { container_id: "c".into(), location: "/tmp/c.tar".into(), timeout: 0 };
    let err = client.runtime.checkpoint_container(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "CheckpointContainer is not implemented by crisp yet");

    // The connection and the daemon are still fine.
    tokio::time::timeout(Duration::from_secs(5), client.runtime.version(VersionRequest::default()))
        .await
        .unwrap()
        .unwrap();
}
