//! `Cni` against fake plugins: shell scripts that log the environment and stdin they got and
//! answer what each test tells them to.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::NetworkConfig;

const ID: &str = "0123456789abcdef";

/// A bridge-like result: host interfaces, the pod's eth0, an IPv6 and an IPv4 address on it and
/// one on the host.
fn result_a() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "br0"}, {"name": "veth0"}, {"name": "eth0", "sandbox": "/run/netns/pod"}],
        "ips": [
            {"address": "fd00::2/64", "interface": 2},
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2},
            {"address": "10.0.0.1/24", "interface": 0}
        ]
    })
}

/// What a chained plugin makes of it.
fn result_b() -> Value {
    let mut result = result_a();
    result["routes"] = json!([{"dst": "10.0.0.0/16"}]);
    result
}

struct Lab {
    dir: tempfile::TempDir,
}

/// How a fake plugin answers.
struct Fake {
    name: &'static str,
    versions: &'static str,
    add: String,
    fail_on: &'static str,
    fail_stdout: &'static str,
    fail_stderr: &'static str,
    sleep: bool,
}

impl Fake {
    fn new(name: &'static str, add: Value) -> Fake {
        Fake {
            name,
            versions: r#"["0.3.1","0.4.0","1.0.0"]"#,
            add: add.to_string(),
            fail_on: "never",
            fail_stdout: "",
            fail_stderr: "",
            sleep: false,
        }
    }

    fn versions(self, versions: &'static str) -> Fake {
        Fake { versions, ..self }
    }

    fn fails(self, command: &'static str, stdout: &'static str, stderr: &'static str) -> Fake {
        Fake { fail_on: command, fail_stdout: stdout, fail_stderr: stderr, ..self }
    }

    /// On ADD, starts a background `sleep` in its process group, writes its pid and waits for it.
    fn sleeps(self) -> Fake {
        Fake { sleep: true, ..self }
    }
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab { dir: tempfile::tempdir().unwrap() };
        for d in ["conf", "bin"] {
            fs::create_dir(lab.dir.path().join(d)).unwrap();
        }
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn network(&self, list: Value) {
        fs::write(self.path("conf/10-test.conflist"), list.to_string()).unwrap();
    }

    /// The usual two-plugin chain: `a` makes the interface, `b` takes port mappings.
    fn chain(&self, version: &str) {
        self.install(Fake::new("a", result_a()));
        self.install(Fake::new("b", result_b()));
        self.network(json!({
            "cniVersion": version,
            "name": "pods",
            "plugins": [
                {"type": "a", "bridge": "br0"},
                {"type": "b", "capabilities": {"portMappings": true, "bandwidth": false}}
            ]
        }));
    }

    fn cni(&self) -> Cni {
        let config = NetworkConfig {
            conf_dir: self.path("conf"),
            plugin_dirs: vec![self.path("none"), self.path("bin")],
            default_network: None,
            ..Default::default()
        };
        Cni::new(config, self.path("cache"))
    }

    fn install(&self, fake: Fake) {
        let log = self.path("calls.log");
        let sleep = if fake.sleep {
            format!(
                "if [ \"$CNI_COMMAND\" = ADD ]; then sleep 30 & echo $! > {}; wait; fi",
                self.path("sleep.pid").display()
            )
        } else {
            String::new()
        };
        let script = format!(
            r#"#!/bin/sh
stdin=$(cat)
printf '{{"plugin":"%s","command":"%s","containerId":"%s","netns":"%s","ifname":"%s","args":"%s","path":"%s","stdin":%s}}\n' \
  '{name}' "$CNI_COMMAND" "${{CNI_CONTAINERID-unset}}" "${{CNI_NETNS-unset}}" "${{CNI_IFNAME-unset}}" \
  "${{CNI_ARGS-unset}}" "${{CNI_PATH-unset}}" "${{stdin:-null}}" >> '{log}'
if [ "$CNI_COMMAND" = VERSION ]; then
  printf '%s' '{{"cniVersion":"1.0.0","supportedVersions":{versions}}}'
  exit 0
fi
{sleep}
if [ "$CNI_COMMAND" = '{fail_on}' ]; then
  printf '%s' '{fail_stdout}'
  printf '%s' '{fail_stderr}' >&2
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then printf '%s' '{add}'; fi
"#,
            name = fake.name,
            log = log.display(),
            versions = fake.versions,
            fail_on = fake.fail_on,
            fail_stdout = fake.fail_stdout,
            fail_stderr = fake.fail_stderr,
            add = fake.add,
        );
        let path = self.path("bin").join(fake.name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Every plugin call so far, in order; forgotten afterwards.
    fn calls(&self) -> Vec<Value> {
        let log = self.path("calls.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
    }

    /// `plugin command` of every call, VERSION left out.
    fn commands(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter(|c| c["command"] != "VERSION")
            .map(|c| format!("{} {}", c["plugin"].as_str().unwrap(), c["command"].as_str().unwrap()))
            .collect()
    }

    fn request(&self) -> PodNetworkRequest {
        PodNetworkRequest {
            container_id: ID.into(),
            netns: self.path("netns"),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "uid-1".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            }],
            bandwidth: Some(Bandwidth { ingress_rate: 1, ingress_burst: 2, egress_rate: 3, egress_burst: 4 }),
            dns: None,
        }
    }
}

const ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=0123456789abcdef;K8S_POD_UID=uid-1";

#[tokio::test]
async fn add_runs_the_chain_with_prev_result_and_declared_capabilities() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    fs::write(lab.path("netns"), "").unwrap();
    let attachment = lab.cni().add(&lab.request()).await.unwrap();
    assert_eq!(attachment.network, "pods");
    assert_eq!(attachment.interface, "eth0");
    assert_eq!(attachment.ips, ["10.0.0.2".parse::<std::net::IpAddr>().unwrap(), "fd00::2".parse().unwrap()]);
    assert_eq!(attachment.result, result_b());

    let calls = lab.calls();
    let (versions, adds) = calls.split_at(2);
    for call in versions {
        assert_eq!(call["command"], "VERSION");
        assert_eq!(call["stdin"], json!({"cniVersion": "1.0.0"}));
        assert_eq!(
            (&call["containerId"], &call["netns"], &call["args"]),
            (&json!("unset"), &json!("unset"), &json!("unset"))
        );
    }
    assert_eq!(adds.len(), 2);
    for call in adds {
        assert_eq!(call["command"], "ADD");
        assert_eq!(call["containerId"], ID);
        assert_eq!(call["netns"], lab.path("netns").to_str().unwrap());
        assert_eq!(call["ifname"], "eth0");
        assert_eq!(call["args"], ARGS);
        assert_eq!(call["path"], format!("{}:{}", lab.path("none").display(), lab.path("bin").display()));
    }
    assert_eq!(adds[0]["stdin"], json!({"type": "a", "bridge": "br0", "name": "pods", "cniVersion": "1.0.0"}));
    assert_eq!(
        adds[1]["stdin"],
        json!({
            "type": "b",
            "name": "pods",
            "cniVersion": "1.0.0",
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": result_a(),
        })
    );
    assert_eq!(lab.cni().cached().unwrap(), [ID]);
}

#[tokio::test]
async fn del_uses_the_cache_after_a_restart_and_a_config_change() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    fs::write(lab.path("netns"), "").unwrap();
    lab.cni().add(&lab.request()).await.unwrap();
    lab.calls();
    // Another network now, and the namespace gone: DEL still runs the old chain, as ADD did.
    lab.install(Fake::new("c", result_a()));
    lab.network(json!({"cniVersion": "0.4.0", "name": "other", "plugins": [{"type": "c"}]}));
    fs::remove_file(lab.path("netns")).unwrap();

    let cni = lab.cni();
    cni.del(ID).await.unwrap();
    let calls = lab.calls();
    let order: Vec<_> = calls.iter().map(|c| format!("{} {}", c["plugin"], c["command"])).collect();
    assert_eq!(order, [r#""b" "DEL""#, r#""a" "DEL""#]);
    for call in &calls {
        assert_eq!(call["stdin"]["name"], "pods");
        assert_eq!(call["stdin"]["cniVersion"], "1.0.0");
        assert_eq!(call["stdin"]["prevResult"], result_b());
        assert_eq!(call["args"], ARGS);
        assert_eq!(call["netns"], "");
    }
    assert_eq!(calls[0]["stdin"]["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(cni.cached().unwrap(), Vec::<String>::new());

    cni.del(ID).await.unwrap();
    assert_eq!(lab.commands(), Vec::<String>::new());
}

#[tokio::test]
async fn del_without_an_attachment_runs_nothing() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    lab.cni().del(ID).await.unwrap();
    assert_eq!(lab.calls(), Vec::<Value>::new());
    assert!(matches!(lab.cni().del("../etc").await, Err(CniError::InvalidContainerId(_))));
}

#[tokio::test]
async fn del_before_0_4_0_gets_no_prev_result_and_a_failure_keeps_the_attachment() {
    let lab = Lab::new();
    lab.chain("0.3.1");
    lab.cni().add(&lab.request()).await.unwrap();
    lab.calls();
    lab.install(Fake::new("a", result_a()).fails("DEL", "", "cannot"));
    let err = lab.cni().del(ID).await.unwrap_err();
    assert!(matches!(&err, CniError::Plugin { plugin, command: Command::Del, .. } if plugin == "a"), "{err}");
    let calls = lab.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["stdin"].get("prevResult").is_none()), "{calls:?}");
    assert_eq!(lab.cni().cached().unwrap(), [ID]);
}

#[tokio::test]
async fn a_failed_add_is_deleted_and_leaves_no_attachment() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    let error = r#"{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration","details":"subnet too small"}"#;
    lab.install(Fake::new("b", result_b()).fails("ADD", error, "some log"));
    let err = lab.cni().add(&lab.request()).await.unwrap_err();
    match &err {
        CniError::Plugin { plugin, command: Command::Add, failure } => {
            assert_eq!(plugin, "b");
            let want = PluginFailure::Reported {
                code: 7,
                msg: "Invalid Configuration".into(),
                details: "subnet too small".into(),
            };
            assert_eq!(failure, &want);
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.to_string(), "CNI plugin b ADD failed: Invalid Configuration: subnet too small (code 7)");
    let calls = lab.calls();
    let dels: Vec<_> = calls.iter().filter(|c| c["command"] == "DEL").collect();
    assert_eq!(dels.iter().map(|c| c["plugin"].as_str().unwrap()).collect::<Vec<_>>(), ["b", "a"]);
    assert!(dels.iter().all(|c| c["stdin"]["prevResult"] == result_a()));
    assert_eq!(lab.cni().cached().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_add_whose_del_fails_too_keeps_the_attachment_for_a_later_del() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    lab.install(Fake::new("a", result_a()).fails("DEL", r#"{"cniVersion":"1.0.0","code":11,"msg":"busy"}"#, ""));
    lab.install(Fake::new("b", result_b()).fails("ADD", r#"{"cniVersion":"1.0.0","code":7,"msg":"no"}"#, ""));
    let cni = lab.cni();
    cni.add(&lab.request()).await.unwrap_err();
    assert_eq!(cni.cached().unwrap(), [ID], "what `a` reserved can still be freed");
    lab.install(Fake::new("a", result_a()));
    lab.calls();
    cni.del(ID).await.unwrap();
    assert_eq!(lab.commands(), ["b DEL", "a DEL"]);
    assert!(cni.cached().unwrap().is_empty());
}

#[tokio::test]
async fn failures_without_an_error_object_keep_stderr_and_bad_results_are_refused() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    lab.install(Fake::new("a", result_a()).fails("ADD", "", "boom: no such bridge"));
    let err = lab.cni().add(&lab.request()).await.unwrap_err();
    match &err {
        CniError::Plugin { failure: PluginFailure::Unstructured { status, stdout, stderr }, .. } => {
            assert_eq!(
                (status.as_str(), stdout.as_str(), stderr.as_str()),
                ("exit status: 1", "", "boom: no such bridge")
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(lab.commands(), ["a ADD", "b DEL", "a DEL"]);

    lab.install(Fake::new("a", json!({"ips": [{"address": "10.0.0.300/24"}]})));
    let err = lab.cni().add(&lab.request()).await.unwrap_err();
    assert!(matches!(&err, CniError::BadOutput { plugin, .. } if plugin == "a"), "{err}");
    assert_eq!(lab.cni().cached().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn a_second_add_is_refused() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    let cni = lab.cni();
    cni.add(&lab.request()).await.unwrap();
    lab.calls();
    assert!(matches!(cni.add(&lab.request()).await, Err(CniError::AlreadyAttached(id)) if id == ID));
    assert_eq!(lab.calls(), Vec::<Value>::new());
}

#[tokio::test]
async fn a_plugin_past_its_deadline_is_killed_with_what_it_started() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    lab.install(Fake::new("b", result_b()).sleeps());
    let started = Instant::now();
    let err = lab.cni().with_timeout(Duration::from_millis(500)).add(&lab.request()).await.unwrap_err();
    assert!(matches!(&err, CniError::Timeout { plugin, command: Command::Add, .. } if plugin == "b"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let pid = fs::read_to_string(lab.path("sleep.pid")).unwrap();
    assert_gone(pid.trim());
    assert_eq!(lab.cni().cached().unwrap(), Vec::<String>::new());
}

/// The process is gone, or a zombie waiting for whoever adopted it.
fn assert_gone(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if stat.is_empty() || state == Some('Z') {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} still runs: {stat}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn an_add_cut_short_leaves_what_del_needs() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    lab.install(Fake::new("b", result_b()).sleeps());
    let cni = lab.cni();
    let cut = tokio::time::timeout(Duration::from_millis(500), cni.add(&lab.request())).await;
    assert!(cut.is_err());
    assert_gone(fs::read_to_string(lab.path("sleep.pid")).unwrap().trim());
    assert_eq!(cni.cached().unwrap(), [ID]);
    lab.calls();
    lab.install(Fake::new("b", result_b()));
    cni.del(ID).await.unwrap();
    let calls = lab.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["command"] == "DEL" && c["stdin"].get("prevResult").is_none()), "{calls:?}");
    assert_eq!(cni.cached().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn the_highest_version_every_plugin_supports_is_used() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    lab.install(
        Fake::new("b", json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}))
            .versions(r#"["0.3.1","0.4.0"]"#),
    );
    lab.network(json!({
        "cniVersion": "1.0.0",
        "cniVersions": ["0.3.1", "0.4.0", "1.1.0"],
        "name": "pods",
        "plugins": [{"type": "a"}, {"type": "b"}]
    }));
    let attachment = lab.cni().add(&lab.request()).await.unwrap();
    assert_eq!(attachment.result["cniVersion"], "0.4.0");
    assert_eq!(attachment.ips, ["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]);
    let calls = lab.calls();
    let adds: Vec<_> = calls.iter().filter(|c| c["command"] == "ADD").collect();
    assert!(adds.iter().all(|c| c["stdin"]["cniVersion"] == "0.4.0"), "{adds:?}");
    // a's 1.0.0 result, in the 0.4.0 format b was promised.
    assert_eq!(
        adds[1]["stdin"]["prevResult"]["ips"][1],
        json!({"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2})
    );
    lab.cni().del(ID).await.unwrap();
    assert_eq!(lab.commands(), ["b DEL", "a DEL"]);

    lab.network(json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "a"}, {"type": "b"}]}));
    let err = lab.cni().add(&lab.request()).await.unwrap_err();
    assert!(matches!(&err, CniError::Incompatible { network, .. } if network == "pods"), "{err}");
    assert!(err.to_string().contains("plugin b supports only"), "{err}");
    assert_eq!(lab.commands(), Vec::<String>::new());
    assert_eq!(lab.cni().cached().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn check_runs_the_chain_with_the_result_from_0_4_0_on() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    let cni = lab.cni();
    assert!(matches!(cni.check(ID).await, Err(CniError::NotAttached(_))));
    cni.add(&lab.request()).await.unwrap();
    lab.calls();
    cni.check(ID).await.unwrap();
    let calls = lab.calls();
    assert_eq!(calls.iter().map(|c| c["plugin"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(
        calls.iter().all(|c| c["command"] == "CHECK" && c["stdin"]["prevResult"] == result_b() && c["args"] == ARGS)
    );
    lab.install(Fake::new("a", result_a()).fails("CHECK", r#"{"code":100,"msg":"veth gone"}"#, ""));
    let err = cni.check(ID).await.unwrap_err();
    assert!(err.to_string().ends_with("veth gone (code 100)"), "{err}");
    assert_eq!(lab.commands(), ["a CHECK"]);
    cni.del(ID).await.unwrap();

    lab.network(json!({"cniVersion": "1.0.0", "disableCheck": true, "name": "pods", "plugins": [{"type": "a"}]}));
    cni.add(&lab.request()).await.unwrap();
    lab.calls();
    cni.check(ID).await.unwrap();
    assert_eq!(lab.commands(), Vec::<String>::new());
    cni.del(ID).await.unwrap();

    lab.network(json!({"cniVersion": "0.3.1", "name": "pods", "plugins": [{"type": "a"}]}));
    cni.add(&lab.request()).await.unwrap();
    assert!(matches!(cni.check(ID).await, Err(CniError::CheckUnsupported { .. })));
}

#[tokio::test]
async fn status_and_gc_only_for_1_1_0() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    let cni = lab.cni();
    cni.status().await.unwrap();
    cni.gc(&[ID.into()]).await.unwrap();
    assert_eq!(lab.commands(), Vec::<String>::new());

    let all = r#"["1.0.0","1.1.0"]"#;
    lab.install(Fake::new("a", result_a()).versions(all));
    lab.install(Fake::new("b", result_b()).versions(all));
    lab.network(json!({"cniVersion": "1.1.0", "name": "pods", "plugins": [{"type": "a"}, {"type": "b", "capabilities": {"portMappings": true}}]}));
    cni.status().await.unwrap();
    cni.gc(&[ID.into(), "other".into()]).await.unwrap();
    let calls: Vec<_> = lab.calls().into_iter().filter(|c| c["command"] != "VERSION").collect();
    let order: Vec<_> =
        calls.iter().map(|c| format!("{} {}", c["plugin"].as_str().unwrap(), c["command"].as_str().unwrap())).collect();
    assert_eq!(order, ["a STATUS", "b STATUS", "a GC", "b GC"]);
    assert!(calls.iter().all(|c| c["containerId"] == "unset" && c["netns"] == "unset"), "{calls:?}");
    assert_eq!(calls[1]["stdin"], json!({"type": "b", "name": "pods", "cniVersion": "1.1.0"}));
    assert_eq!(
        calls[3]["stdin"]["cni.dev/valid-attachments"],
        json!([{"containerID": ID, "ifname": "eth0"}, {"containerID": "other", "ifname": "eth0"}])
    );

    lab.install(Fake::new("a", result_a()).versions(all).fails("STATUS", r#"{"code":50,"msg":"no daemon"}"#, ""));
    assert!(cni.status().await.unwrap_err().to_string().contains("no daemon (code 50)"));
    lab.install(Fake::new("a", result_a()).versions(all).fails("GC", "", "a failed"));
    lab.install(Fake::new("b", result_b()).versions(all).fails("GC", "", "b failed"));
    lab.calls();
    match cni.gc(&[]).await {
        Err(CniError::Gc(errors)) => assert_eq!(errors.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(lab.commands(), ["a GC", "b GC"]);

    lab.network(json!({"cniVersion": "1.1.0", "disableGC": true, "name": "pods", "plugins": [{"type": "a"}]}));
    cni.gc(&[]).await.unwrap();
    assert_eq!(lab.commands(), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_network_or_plugin_is_reported() {
    let lab = Lab::new();
    let err = lab.cni().add(&lab.request()).await.unwrap_err();
    assert!(matches!(err, CniError::NotReady(_)), "{err}");
    lab.chain("1.0.0");
    lab.cni().add(&lab.request()).await.unwrap();
    fs::remove_file(lab.path("bin/b")).unwrap();
    let err = lab.cni().del(ID).await.unwrap_err();
    assert!(matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "b"), "{err}");
}

#[tokio::test]
async fn version_is_asked_once_per_plugin_binary() {
    let lab = Lab::new();
    lab.chain("1.0.0");
    fs::write(lab.path("netns"), "").unwrap();
    let cni = lab.cni();
    let versions = |calls: &[Value]| calls.iter().filter(|c| c["command"] == "VERSION").count();

    cni.add(&lab.request()).await.unwrap();
    assert_eq!(versions(&lab.calls()), 2);
    cni.del(ID).await.unwrap();
    cni.add(&lab.request()).await.unwrap();
    cni.status().await.unwrap();
    assert_eq!(versions(&lab.calls()), 0, "answers are kept per binary");

    // A plugin upgraded in place is asked again.
    cni.del(ID).await.unwrap();
    lab.install(Fake::new("b", result_b()).versions(r#"["0.4.0","1.0.0"]"#));
    cni.add(&lab.request()).await.unwrap();
    let calls = lab.calls();
    let asked: Vec<_> = calls.iter().filter(|c| c["command"] == "VERSION").map(|c| c["plugin"].clone()).collect();
    assert_eq!(asked, [json!("b")]);
}
