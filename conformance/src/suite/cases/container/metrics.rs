//! The CRI metrics RPCs, as critest's "runtime should support metrics operations" checks them
//! (pod.go): every descriptor has help and label keys, and a pod with a running container has,
//! for every descriptor, a series whose label values are as many as its keys. critest also
//! wants the full list of cAdvisor's names of its kubelet version; which of them a runtime
//! serves is its own choice, so that list is not checked here. A runtime that answers
//! Unimplemented skips, as in critest.

use std::collections::HashMap;

use k8s_cri::v1::{ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, MetricDescriptor};
use tonic::Code;

use super::{SH_TOP, busybox, pod, run_container};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::{CaseResult, Context, Stop};

async fn descriptors(context: &mut Context) -> Result<Vec<MetricDescriptor>, Stop> {
    match context.client.runtime.list_metric_descriptors(ListMetricDescriptorsRequest {}).await {
        Ok(response) => Ok(response.into_inner().descriptors),
        Err(s) if s.code() == Code::Unimplemented => Err(Stop::Skip("the runtime serves no CRI metrics".into())),
        Err(s) => Err(Stop::Fail(rpc_failed("ListMetricDescriptors", s))),
    }
}

pub async fn descriptors_described(context: &mut Context) -> CaseResult {
    let descriptors = descriptors(context).await?;
    ensure(!descriptors.is_empty(), || "ListMetricDescriptors lists none".into())?;
    for d in &descriptors {
        ensure(!d.help.is_empty(), || format!("{} has no help text", d.name))?;
        ensure(!d.label_keys.is_empty(), || format!("{} has no label keys", d.name))?;
    }
    Ok(())
}

pub async fn pod_sandbox_metrics(context: &mut Context) -> CaseResult {
    let descriptors = descriptors(context).await?;
    let pod = pod(context, "metrics").await?;
    let config = busybox(context, "container-for-metrics", SH_TOP).await?;
    run_container(context, &pod, &config).await?;

    let listed = context.client.runtime.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {}).await;
    let listed = listed.map_err(|s| rpc_failed("ListPodSandboxMetrics", s))?.into_inner().pod_metrics;
    let ours = listed.into_iter().find(|m| m.pod_sandbox_id == pod.id);
    let ours = ours.ok_or_else(|| format!("no metrics for pod {}", pod.id))?;
    // As critest reads them: the first series of each name with label values.
    let mut labels: HashMap<&str, usize> = HashMap::new();
    let container_series = ours.container_metrics.iter().flat_map(|c| &c.metrics);
    for metric in ours.metrics.iter().chain(container_series).filter(|m| !m.label_values.is_empty()) {
        labels.entry(&metric.name).or_insert(metric.label_values.len());
    }
    for d in &descriptors {
        let found = labels.get(d.name.as_str());
        ensure(found.is_some(), || format!("{} has no series for the pod", d.name))?;
        ensure(found == Some(&d.label_keys.len()), || {
            format!("{}: {} label values for {} keys", d.name, found.unwrap_or(&0), d.label_keys.len())
        })?;
    }
    Ok(())
}
