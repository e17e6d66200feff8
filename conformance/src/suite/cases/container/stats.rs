//! Container stats, as critest's Container cases check them (container.go, "runtime should
//! support listing container stats" and its list variants): a started container has stats with
//! timestamps, and the list finds it by ID, with no filter, and by label.

use std::collections::HashMap;

use k8s_cri::v1::{ContainerStats, ContainerStatsFilter, ContainerStatsRequest, ListContainerStatsRequest};

use super::{Pod, SH_TOP, busybox, create, pod, run_container, start};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::pod_config::selector;
use crate::suite::{CaseResult, Context, Stop};

/// critest's name prefix for these containers.
const PURPOSE: &str = "container-for-stats";

async fn started(context: &mut Context, pod: &Pod, labels: &[(&str, &str)]) -> Result<String, Stop> {
    let mut config = busybox(context, PURPOSE, SH_TOP).await?;
    config.labels.extend(selector(labels));
    Ok(run_container(context, pod, &config).await?)
}

async fn list(context: &mut Context, filter: Option<ContainerStatsFilter>) -> Result<Vec<ContainerStats>, String> {
    let request = ListContainerStatsRequest { filter };
    let listed = context.client.runtime.list_container_stats(request).await;
    Ok(listed.map_err(|s| rpc_failed("ListContainerStats", s))?.into_inner().stats)
}

fn found(stats: &[ContainerStats], id: &str) -> bool {
    stats.iter().any(|s| s.attributes.as_ref().is_some_and(|a| a.id == id))
}

pub async fn of_one(context: &mut Context) -> CaseResult {
    let pod = pod(context, "stats").await?;
    let id = started(context, &pod, &[]).await?;
    let request = ContainerStatsRequest { container_id: id.clone() };
    let stats = context.client.runtime.container_stats(request).await.map_err(|s| rpc_failed("ContainerStats", s))?;
    let stats = stats.into_inner().stats.ok_or("ContainerStats: no stats")?;
    let attributes = stats.attributes.clone().unwrap_or_default();
    let name = attributes.metadata.map(|m| m.name).unwrap_or_default();
    ensure(attributes.id == id && name.contains(PURPOSE), || {
        format!("stats of {id} are of {}, {name:?}", attributes.id)
    })?;
    let cpu = stats.cpu.map_or(0, |c| c.timestamp);
    let memory = stats.memory.map_or(0, |m| m.timestamp);
    ensure(cpu != 0 && memory != 0, || format!("timestamps: cpu {cpu}, memory {memory}"))?;
    Ok(())
}

pub async fn list_by_id(context: &mut Context) -> CaseResult {
    let pod = pod(context, "stats").await?;
    let id = started(context, &pod, &[]).await?;
    let stats = list(context, Some(ContainerStatsFilter { id: id.clone(), ..Default::default() })).await?;
    ensure(found(&stats, &id), || format!("{id} is not listed by its ID"))?;
    Ok(())
}

/// critest's "three created containers when filter is nil": all three created before any
/// starts, then started; the unfiltered list has each.
pub async fn list_three_created_then_started(context: &mut Context) -> CaseResult {
    let pod = pod(context, "stats").await?;
    let config = busybox(context, PURPOSE, SH_TOP).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut one = config.clone();
        let name = &mut one.metadata.get_or_insert_with(Default::default).name;
        name.push_str(&format!("-{}", ids.len()));
        one.log_path = format!("{name}.log");
        ids.push(create(context, &pod, &one).await?);
    }
    for id in &ids {
        start(context, id).await?;
    }
    let stats = list(context, None).await?;
    for id in &ids {
        ensure(found(&stats, id), || format!("{id} is not listed without a filter"))?;
    }
    Ok(())
}

/// critest's "when filter is nil" cases, one container and three.
pub async fn list_unfiltered(context: &mut Context) -> CaseResult {
    let pod = pod(context, "stats").await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(started(context, &pod, &[]).await?);
    }
    let stats = list(context, None).await?;
    for id in &ids {
        ensure(found(&stats, id), || format!("{id} is not listed without a filter"))?;
    }
    Ok(())
}

pub async fn list_by_label(context: &mut Context) -> CaseResult {
    let pod = pod(context, "stats").await?;
    let id = started(context, &pod, &[("foo", "bar")]).await?;
    let by_label = |value: &str| ContainerStatsFilter {
        label_selector: HashMap::from([("foo".to_owned(), value.to_owned())]),
        ..Default::default()
    };
    let stats = list(context, Some(by_label("bar"))).await?;
    ensure(found(&stats, &id), || format!("{id} is not listed by foo=bar"))?;
    let stats = list(context, Some(by_label("baz"))).await?;
    ensure(!found(&stats, &id), || format!("{id} is listed by foo=baz"))?;
    Ok(())
}
