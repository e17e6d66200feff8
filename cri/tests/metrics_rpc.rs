//! End-to-end: ListMetricDescriptors and ListPodSandboxMetrics, as the kubelet reads them when
//! it serves `/metrics/cadvisor` from the runtime.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use common::containers::{Setup, setup};
use k8s_cri::v1::{
    ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, Metric, MetricType, PodSandboxMetrics,
    PodSandboxStatusRequest,
};

/// One test at a time: the CPU burner wants its core.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn label_keys(s: &mut Setup) -> HashMap<String, Vec<String>> {
    let descriptors = s.client.runtime.list_metric_descriptors(ListMetricDescriptorsRequest {}).await.unwrap();
    descriptors.into_inner().descriptors.into_iter().map(|d| (d.name, d.label_keys)).collect()
}

async fn pod_metrics(s: &mut Setup) -> PodSandboxMetrics {
    let listed = match s.client.runtime.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {}).await {
        Ok(r) => r.into_inner().pod_metrics,
        Err(e) => panic!("ListPodSandboxMetrics: {e}\n{}", s.daemon.logs()),
    };
    listed.into_iter().find(|m| m.pod_sandbox_id == s.pod).expect("the pod's metrics")
}

fn all(pod: &PodSandboxMetrics) -> impl Iterator<Item = &Metric> {
    pod.metrics.iter().chain(pod.container_metrics.iter().flat_map(|c| &c.metrics))
}

fn value(metrics: &[Metric], name: &str) -> u64 {
    metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}")).value.unwrap().value
}

#[tokio::test]
async fn every_descriptor_has_values_and_cpu_time_grows() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = setup(51).await;
    let keys = label_keys(&mut s).await;
    for name in ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes"] {
        assert_eq!(keys[name], ["id", "name"], "{name}");
    }
    assert_eq!(keys["container_network_receive_bytes_total"], ["id", "name", "interface"]);
    let descriptors = s.client.runtime.list_metric_descriptors(ListMetricDescriptorsRequest {}).await.unwrap();
    assert!(descriptors.into_inner().descriptors.iter().all(|d| !d.help.is_empty()));

    let id = s.run(s.config("burner", &["sh", "-c", "while :; do :; done"])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = pod_metrics(&mut s).await;
    for name in keys.keys() {
        assert!(all(&first).any(|m| &m.name == name), "no value for {name}: {first:?}");
    }
    for metric in all(&first) {
        let want = keys.get(&metric.name).unwrap_or_else(|| panic!("{} has no descriptor", metric.name));
        assert_eq!(metric.label_values.len(), want.len(), "{metric:?} against {want:?}");
        assert!(metric.timestamp > 1_000_000_000_000_000_000, "nanoseconds: {metric:?}");
    }
    assert_eq!(first.container_metrics.len(), 1);
    let container = &first.container_metrics[0];
    assert_eq!(container.container_id, id);
    let cpu = container.metrics.iter().find(|m| m.name == "container_cpu_usage_seconds_total").unwrap();
    assert_eq!(cpu.label_values, [id.as_str(), "burner"]);
    assert_eq!(cpu.metric_type, MetricType::Counter as i32);
    let working_set = container.metrics.iter().find(|m| m.name == "container_memory_working_set_bytes").unwrap();
    assert_eq!(working_set.metric_type, MetricType::Gauge as i32);
    assert!(working_set.value.unwrap().value > 0);

    // Whole seconds, as cAdvisor's unit and the CRI's integers allow: a burner adds two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = pod_metrics(&mut s).await;
    let cpu = |pod: &PodSandboxMetrics| value(&pod.container_metrics[0].metrics, "container_cpu_usage_seconds_total");
    assert!(cpu(&second) > cpu(&first), "{} then {} seconds", cpu(&first), cpu(&second));
    s.teardown().await;
}

#[tokio::test]
async fn the_pods_received_bytes_are_counted() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = setup(52).await;
    s.run(s.config("sink", &["sh", "-c", "nc -l -p 8080 >/dev/null; sleep 1000"])).await;
    let request = PodSandboxStatusRequest { pod_sandbox_id: s.pod.clone(), verbose: false };
    let status = s.client.runtime.pod_sandbox_status(request).await.unwrap().into_inner().status.unwrap();
    let ip: IpAddr = status.network.unwrap().ip.parse().unwrap();
    let pod_id = s.pod.clone();
    let received = |pod: &PodSandboxMetrics| {
        let eth0 = pod.metrics.iter().find(|m| {
            m.name == "container_network_receive_bytes_total" && m.label_values.last().is_some_and(|i| i == "eth0")
        });
        let eth0 = eth0.unwrap_or_else(|| panic!("no eth0 rx: {:?}", pod.metrics));
        assert_eq!(eth0.label_values[..2], [pod_id.as_str(), "POD"]);
        eth0.value.unwrap().value
    };
    let before = received(&pod_metrics(&mut s).await);

    const N: u64 = 4 << 20;
    common::send_to_pod(ip, 8080, N).await;

    let mut rx = 0;
    for _ in 0..50 {
        rx = received(&pod_metrics(&mut s).await) - before;
        if rx >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rx >= N, "received {rx} bytes of {N}");
    s.teardown().await;
}

/// The conformance suite's stats and metrics cases, against crisp.
#[tokio::test]
async fn conformance_stats_and_metrics_cases_pass() {
    use crisp_conformance::suite::{self, Selection, Verdict};
    let _serial = ONE_AT_A_TIME.lock().await;
    let lab = common::Lab::with_network(51);
    lab.write_config("");
    let test_lab = crisp_conformance::lab::Lab::start().await.expect("starting the test registry");
    let daemon = lab.start();
    let mut context = suite::Context::new(daemon.client().await, suite::TestImages::from_lab(&test_lab, true));
    let focus = ["container/stats", "container/metric-descriptors", "container/pod-sandbox-metrics"];
    let selection = Selection { focus: focus.map(Into::into).to_vec(), skip: vec![] };
    let report = suite::run(&mut context, &selection, |_| {}).await;
    let selected = suite::cases().iter().filter(|c| selection.selects(c.name)).count();
    assert!(selected >= 6, "the focus selects {selected} cases");
    assert_eq!(report.outcomes.len(), selected);
    for outcome in &report.outcomes {
        assert_eq!(outcome.verdict, Verdict::Pass, "{outcome}\n{}", daemon.logs());
    }
}
