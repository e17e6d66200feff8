//! End-to-end: `crisp-conformance bench` runs every workload against a real crisp daemon, and
//! the floor on the same CNI network, reports sane figures and leaves nothing behind. Figures
//! only: how fast anything is, is never asserted.

mod common;

use std::fs;
use std::path::Path;

use common::Lab;
use k8s_cri::v1::{ListContainersRequest, ListImagesRequest, ListPodSandboxRequest};
use serde_json::Value;

/// A wall-time summary: its percentiles in order, all measured.
fn assert_summary(what: &str, summary: &Value) {
    let at = |key: &str| summary[key].as_f64().unwrap_or_else(|| panic!("{what}: no {key} in {summary}"));
    let (p50, p90, p99, max) = (at("p50"), at("p90"), at("p99"), at("max"));
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{what}: {summary}");
}

/// A report of one endpoint's `iterations` samples, summarized.
fn assert_times(what: &str, report: &Value, iterations: usize) {
    assert_eq!(report["iterations"], iterations, "{what}: {report}");
    let endpoints = report["endpoints"].as_array().unwrap_or_else(|| panic!("{what}: {report}"));
    assert_eq!(endpoints.len(), 1, "{what}: {report}");
    assert_eq!(endpoints[0]["seconds"].as_array().map(Vec::len), Some(iterations), "{what}: {report}");
    assert_summary(what, &endpoints[0]);
    assert!(report["ratio"].is_null(), "{what}: {report}");
}

#[tokio::test]
async fn bench_runs_every_workload_and_leaves_nothing() {
    let runner = Path::new(common::CRISP).with_file_name("crisp-conformance");
    assert!(
        runner.exists(),
        "{} is missing: build the workspace's binaries first (contrib/test.sh does)",
        runner.display()
    );
    let registry = crisp_conformance::lab::Lab::start().await.expect("starting the test registry");
    let lab = Lab::with_network(60);
    lab.write_config("");
    let daemon = lab.start();
    let json = lab.path("bench.json");
    let endpoint = format!("unix://{}", daemon.socket.display());
    let mut command = std::process::Command::new(&runner);
    command
        .args(["bench", "--endpoint", &endpoint, "--count", "2", "--burst", "2", "--density", "2"])
        .args(["--test-registry", &registry.registry().addr().to_string()])
        .arg("--cni-conf-dir")
        .arg(lab.cni_dir())
        .args(["--cni-bin-dir", "/usr/lib/cni", "--runtime", "/usr/sbin/runc", "--json"])
        .arg(&json);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}\n{}", String::from_utf8_lossy(&out.stderr), daemon.logs());
    for section in ["sequential:", "burst:", "density:", "pull:", "floor:", "targets (issue 8"] {
        assert!(stdout.contains(section), "no {section} in:\n{stdout}");
    }
    let report: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();

    let sequential = &report["sequential"];
    let steps = sequential["steps"].as_array().unwrap();
    let names: Vec<_> = steps.iter().map(|s| s["workload"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
            "StopPodSandbox",
            "RemovePodSandbox"
        ]
    );
    for step in steps {
        assert_times(step["workload"].as_str().unwrap(), step, 2);
    }
    assert_times("pod running", &sequential["pod_running"], 2);
    let runtime = &sequential["runtimes"][0];
    assert_eq!(runtime["runtime"], format!("crisp {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(runtime["keeper"]["process"], "crisp-monitor", "{runtime}");
    assert!(runtime["keeper"]["p50_kib"].as_u64().unwrap() > 0, "{runtime}");

    let burst = &report["burst"];
    assert_eq!(burst["pods"], 2);
    assert_times("burst", &burst["wall"], 1);
    assert!(burst["pods_per_second"][0].as_f64().unwrap() > 0.0, "{burst}");

    let density = &report["density"];
    assert_eq!(density["pods"], 2);
    let held = &density["endpoints"][0];
    assert_eq!(held["daemon_pid"], daemon.child.id(), "{held}");
    assert!(held["daemon_rss_before_kib"].as_u64().unwrap() > 0, "{held}");
    assert!(held["daemon_rss_held_kib"].as_u64().unwrap() > 0, "{held}");
    let per_pod = &held["per_pod"];
    assert_eq!(per_pod["keeper"], "crisp-monitor", "{held}");
    assert_eq!((&per_pod["keepers_found"], &per_pod["pauses_found"]), (&Value::from(2), &Value::from(2)), "{held}");
    let overhead = per_pod["overhead_p50_kib"].as_u64().unwrap();
    let parts = per_pod["keeper_p50_kib"].as_u64().unwrap() + per_pod["pause_p50_kib"].as_u64().unwrap();
    assert!(overhead > 0 && overhead <= per_pod["overhead_max_kib"].as_u64().unwrap(), "{held}");
    assert!(parts > 0, "{held}");
    assert_summary("ListContainers", &held["list_containers"]);
    assert_summary("ListPodSandbox", &held["list_pod_sandbox"]);
    assert!(held["daemon_cpu"]["own"].as_f64().unwrap() > 0.0, "{held}");
    // Two monitors that live well under a clock tick may not have used one: present is enough.
    assert!(held["keepers_cpu"]["own"].as_f64().is_some(), "{held}");

    assert_times("pull", &report["pull"], 2);

    let floor = &report["floor"];
    assert_eq!(floor["iterations"], 2, "{floor}");
    let pod = floor["steps"].as_array().unwrap().iter().find(|s| s["step"] == "pod with a running container");
    assert_summary("floor", pod.unwrap_or_else(|| panic!("{floor}")));
    // Without a second endpoint only the floor's target is checked.
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(targets[0]["ratio"].as_f64().unwrap() > 0.0, "{targets:?}");

    let mut client = daemon.client().await;
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap();
    assert!(pods.into_inner().items.is_empty());
    let containers = client.runtime.list_containers(ListContainersRequest { filter: None }).await.unwrap();
    assert!(containers.into_inner().containers.is_empty());
    // What the run pulled, it removed.
    let images = client.image.list_images(ListImagesRequest { filter: None }).await.unwrap();
    assert!(images.into_inner().images.is_empty());
    let net = lab.pod_net(60);
    assert!(net.veths().is_empty(), "{:?}", net.veths());
    assert!(net.reserved_ips().is_empty(), "{:?}", net.reserved_ips());
}
