//! End-to-end: container and pod stats read from the real kernel's cgroups and procfs.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use common::containers::{Setup, setup};
use k8s_cri::v1::{
    ContainerStats, ContainerStatsFilter, ContainerStatsRequest, ListContainerStatsRequest, ListPodSandboxStatsRequest,
    PodSandboxStats, PodSandboxStatsFilter, PodSandboxStatsRequest, PodSandboxStatusRequest, StopContainerRequest,
};
use tonic::Code;

const MIB: u64 = 1 << 20;

/// One test at a time: on a small host, the others' daemons and busy containers would take the
/// CPU burner's core.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn container_stats(s: &mut Setup, id: &str) -> ContainerStats {
    let request = ContainerStatsRequest { container_id: id.into() };
    match s.client.runtime.container_stats(request).await {
        Ok(r) => r.into_inner().stats.unwrap(),
        Err(e) => panic!("ContainerStats: {e}\n{}", s.daemon.logs()),
    }
}

async fn list_stats(s: &mut Setup, filter: ContainerStatsFilter) -> Vec<String> {
    let request = ListContainerStatsRequest { filter: Some(filter) };
    let stats = s.client.runtime.list_container_stats(request).await.unwrap().into_inner().stats;
    let mut ids: Vec<String> = stats.into_iter().map(|s| s.attributes.unwrap().id).collect();
    ids.sort();
    ids
}

async fn pod_stats(s: &mut Setup) -> PodSandboxStats {
    let request = PodSandboxStatsRequest { pod_sandbox_id: s.pod.clone() };
    match s.client.runtime.pod_sandbox_stats(request).await {
        Ok(r) => r.into_inner().stats.unwrap(),
        Err(e) => panic!("PodSandboxStats: {e}\n{}", s.daemon.logs()),
    }
}

#[tokio::test]
async fn a_container_holding_64_mib_shows_it_in_its_working_set() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = setup(41).await;
    // The shell keeps the 64 MiB it read in a variable, resident (zeros would not be: NULs are
    // dropped from command substitutions). A command after the sleep keeps the shell: busybox
    // sh execs its last command, which would drop the variable.
    let script = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo held; sleep 1000; echo ${#x}";
    let id = s.run(s.config("hog", &["sh", "-c", script])).await;
    let mut working_set = 0;
    for _ in 0..300 {
        let stats = container_stats(&mut s, &id).await;
        let memory = stats.memory.unwrap();
        working_set = memory.working_set_bytes.unwrap().value;
        if working_set >= 64 * MIB {
            assert!(memory.timestamp > 0);
            assert!(memory.usage_bytes.unwrap().value >= working_set);
            assert!(memory.rss_bytes.unwrap().value >= 32 * MIB, "mostly anonymous: {memory:?}");
            assert!(memory.page_faults.unwrap().value > 0);
            let attributes = stats.attributes.unwrap();
            assert_eq!((attributes.id.as_str(), attributes.metadata.unwrap().name.as_str()), (id.as_str(), "hog"));
            assert_eq!(attributes.labels["name"], "hog");
            let layer = stats.writable_layer.unwrap();
            assert!(layer.timestamp > 0 && layer.inodes_used.unwrap().value >= 1, "{layer:?}");
            assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(working_set >= 64 * MIB, "working set {working_set} bytes\n{}", s.daemon.logs());

    // The pod's memory holds its containers'. The shell may still be building its string (its
    // old and new buffers together passed 64 MiB above), so the pod's is awaited too.
    let mut pod = pod_stats(&mut s).await;
    let pod_working_set = |pod: &PodSandboxStats| {
        pod.linux.as_ref().and_then(|l| l.memory.as_ref()).and_then(|m| m.working_set_bytes).map_or(0, |w| w.value)
    };
    for _ in 0..300 {
        if pod_working_set(&pod) >= 64 * MIB {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pod = pod_stats(&mut s).await;
    }
    assert!(pod_working_set(&pod) >= 64 * MIB, "pod working set {} bytes", pod_working_set(&pod));
    let linux = pod.linux.unwrap();
    assert_eq!(pod.attributes.unwrap().id, s.pod);
    assert_eq!(linux.containers.len(), 1);
    let processes = linux.process.unwrap().process_count.unwrap().value;
    assert!(processes >= 2, "the shell and its sleep: {processes}");
    s.teardown().await;
}

#[tokio::test]
async fn a_cpu_burner_uses_about_one_core() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = setup(42).await;
    let id = s.run(s.config("burner", &["sh", "-c", "while :; do :; done"])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = container_stats(&mut s, &id).await.cpu.unwrap();
    assert!(first.timestamp > 0);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let second = container_stats(&mut s, &id).await.cpu.unwrap();
    let cores = second.usage_nano_cores.expect("a rate on the second read").value as f64 / 1e9;
    assert!((0.5..=1.2).contains(&cores), "{cores} cores\n{first:?}\n{second:?}");
    assert!(second.usage_core_nano_seconds.unwrap().value > first.usage_core_nano_seconds.unwrap().value);

    // The pod's rate is its own, from two reads of the pod.
    assert!(pod_stats(&mut s).await.linux.unwrap().cpu.unwrap().usage_nano_cores.is_none());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pod = pod_stats(&mut s).await.linux.unwrap().cpu.unwrap();
    let pod_cores = pod.usage_nano_cores.expect("a rate on the pod's second read").value as f64 / 1e9;
    assert!((0.5..=1.2).contains(&pod_cores), "pod: {pod_cores} cores");
    s.teardown().await;
}

#[tokio::test]
async fn a_pod_that_receives_n_bytes_counts_them() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = setup(43).await;
    s.run(s.config("sink", &["sh", "-c", "nc -l -p 8080 >/dev/null; sleep 1000"])).await;
    let request = PodSandboxStatusRequest { pod_sandbox_id: s.pod.clone(), verbose: false };
    let status = s.client.runtime.pod_sandbox_status(request).await.unwrap().into_inner().status.unwrap();
    let ip: IpAddr = status.network.unwrap().ip.parse().unwrap();

    let before = pod_stats(&mut s).await.linux.unwrap().network.unwrap();
    let rx_before = before.default_interface.as_ref().unwrap().rx_bytes.unwrap().value;
    assert_eq!(before.default_interface.unwrap().name, "eth0");
    assert!(before.interfaces.iter().all(|i| i.name != "lo"));

    const N: u64 = 4 * MIB;
    common::send_to_pod(ip, 8080, N).await;

    let mut rx = 0;
    for _ in 0..50 {
        let network = pod_stats(&mut s).await.linux.unwrap().network.unwrap();
        rx = network.default_interface.unwrap().rx_bytes.unwrap().value - rx_before;
        if rx >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rx >= N, "received {rx} bytes of {N}");

    let listed = s.client.runtime.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default()).await.unwrap();
    assert_eq!(listed.into_inner().stats.len(), 1);
    let by_label =
        PodSandboxStatsFilter { label_selector: HashMap::from([("no".into(), "such".into())]), ..Default::default() };
    let request = ListPodSandboxStatsRequest { filter: Some(by_label) };
    assert!(s.client.runtime.list_pod_sandbox_stats(request).await.unwrap().into_inner().stats.is_empty());
    s.teardown().await;
}

#[tokio::test]
async fn the_list_filters_and_leaves_out_stopped_containers() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = setup(44).await;
    let mut config = s.config("one", &["sleep", "1000"]);
    config.labels.insert("tier".into(), "front".into());
    let one = s.run(config).await;
    let two = s.run(s.config("two", &["sleep", "1000"])).await;
    let stopped = s.run(s.config("stopped", &["sleep", "1000"])).await;
    let request = StopContainerRequest { container_id: stopped.clone(), timeout: 0 };
    s.client.runtime.stop_container(request).await.unwrap();
    let created = s.create(s.config("created", &["sleep", "1000"])).await.unwrap();

    let mut running = vec![one.clone(), two.clone()];
    running.sort();
    assert_eq!(list_stats(&mut s, ContainerStatsFilter::default()).await, running);
    let by_id = ContainerStatsFilter { id: one[..12].into(), ..Default::default() };
    assert_eq!(list_stats(&mut s, by_id).await, vec![one.clone()]);
    let by_pod = ContainerStatsFilter { pod_sandbox_id: s.pod.clone(), ..Default::default() };
    assert_eq!(list_stats(&mut s, by_pod).await, running);
    let other_pod = ContainerStatsFilter { pod_sandbox_id: "f00".into(), ..Default::default() };
    assert!(list_stats(&mut s, other_pod).await.is_empty());
    let by_label =
        ContainerStatsFilter { label_selector: HashMap::from([("tier".into(), "front".into())]), ..Default::default() };
    assert_eq!(list_stats(&mut s, by_label).await, vec![one.clone()]);
    let stopped_only = ContainerStatsFilter { id: stopped.clone(), ..Default::default() };
    assert!(list_stats(&mut s, stopped_only).await.is_empty());

    for id in [&stopped, &created] {
        let request = ContainerStatsRequest { container_id: id.to_string() };
        let err = s.client.runtime.container_stats(request).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    }
    let request = ContainerStatsRequest { container_id: "f00".into() };
    assert_eq!(s.client.runtime.container_stats(request).await.unwrap_err().code(), Code::NotFound);
    s.teardown().await;
}
