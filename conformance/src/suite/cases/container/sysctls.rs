//! critest pod_linux.go "runtime should support sysctls": a pod's sysctls, read back from inside
//! a container of the pod, both one the kubelet allows by default and one it allows only when
//! the cluster admin lists it (both namespaced, so a runtime must apply them to the pod alone).

use super::{SH_TOP, busybox, exec_ok, pod_config, run_container, run_pod};
use crate::suite::cases::ensure;
use crate::suite::pod_config::selector;
use crate::suite::{CaseResult, Context, Stop};

/// critest "should support safe sysctls": `kernel.shm_rmid_forced`, in the pod's IPC namespace.
pub async fn safe(context: &mut Context) -> CaseResult {
    seen_inside(context, "safe-sysctl", "kernel.shm_rmid_forced", "1").await
}

/// critest "should support unsafe sysctls": `fs.mqueue.msg_max` (not on the kubelet's safe list,
/// yet IPC-namespaced).
pub async fn unsafe_namespaced(context: &mut Context) -> CaseResult {
    seen_inside(context, "unsafe-sysctl", "fs.mqueue.msg_max", "100").await
}

/// A pod with sysctl `key` = `value`; a container of it reads `value` from `/proc/sys`, while
/// the host keeps its own.
async fn seen_inside(context: &mut Context, purpose: &str, key: &str, value: &str) -> CaseResult {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let host_before = std::fs::read_to_string(&path).map_err(|e| format!("reading the host's {path}: {e}"))?;
    if host_before.trim() == value {
        // A runtime that ignored the sysctl and left the pod in the host's IPC namespace would
        // pass.
        return Err(Stop::Skip(format!("the host's {key} is already {value}: the case cannot tell it was applied")));
    }
    let mut config = pod_config(context, purpose).await?;
    config.linux.get_or_insert_with(Default::default).sysctls = selector(&[(key, value)]);
    let pod = run_pod(context, config).await?;
    let container = busybox(context, purpose, SH_TOP).await?;
    let id = run_container(context, &pod, &container).await?;
    let seen = exec_ok(context, &id, &["cat", &path]).await?;
    ensure(seen.trim() == value, || format!("the pod's {key} is {:?} in its container, want {value:?}", seen.trim()))?;
    let host_after = std::fs::read_to_string(&path).map_err(|e| format!("reading the host's {path}: {e}"))?;
    ensure(host_after == host_before, || {
        format!("the host's {key} changed from {:?} to {:?}", host_before.trim(), host_after.trim())
    })?;
    Ok(())
}
