//! The pod's IPC namespace (critest security_context_linux.go "NamespaceOption", HostIpc): a
//! System V shared memory segment this process makes is seen by a container in the host's IPC
//! namespace and not by one in the pod's. This process must run in the host's IPC namespace, as
//! critest's `ipcmk` on the host assumes.

use k8s_cri::v1::{NamespaceMode, NamespaceOption};

use super::{SH_TOP, busybox, exec_ok, pod_config, pod_security, run_container, run_pod, security};
use crate::suite::cases::ensure;
use crate::suite::{CaseResult, Context};

/// critest :176 "runtime should support HostIpc is true".
pub async fn host_ipc(context: &mut Context) -> CaseResult {
    ipc_mode(context, NamespaceMode::Node).await
}

/// critest :180 "runtime should support HostIpc is false".
pub async fn pod_ipc(context: &mut Context) -> CaseResult {
    ipc_mode(context, NamespaceMode::Pod).await
}

/// critest's segment size (`ipcmk -M 1048576`).
const SEGMENT_BYTES: usize = 1 << 20;

/// Inside, the IPC namespace is the host's (the same `/proc/self/ns/ipc` link) and the host's
/// segment is in `/proc/sysvipc/shm` (what `ipcs -m` reads; the lab's busybox has no `ipcs`)
/// exactly when `mode` is NODE.
async fn ipc_mode(context: &mut Context, mode: NamespaceMode) -> CaseResult {
    let segment = host_segment(context)?;
    let host_namespace =
        std::fs::read_link(NAMESPACE).map_err(|e| format!("reading {NAMESPACE}: {e}"))?.display().to_string();
    let options = NamespaceOption {
        network: NamespaceMode::Pod.into(),
        pid: NamespaceMode::Pod.into(),
        ipc: mode.into(),
        ..Default::default()
    };
    let mut config = pod_config(context, "ipc-namespace").await?;
    pod_security(&mut config).namespace_options = Some(options.clone());
    let pod = run_pod(context, config).await?;
    let mut container = busybox(context, "ipc-namespace", SH_TOP).await?;
    security(&mut container).namespace_options = Some(options);
    let id = run_container(context, &pod, &container).await?;

    let host = mode == NamespaceMode::Node;
    let inside = exec_ok(context, &id, &["readlink", NAMESPACE]).await?;
    ensure((inside.trim() == host_namespace) == host, || {
        format!(
            "IPC {}: the container's IPC namespace is {}, the host's {host_namespace}",
            mode.as_str_name(),
            inside.trim()
        )
    })?;
    let listed = exec_ok(context, &id, &["cat", "/proc/sysvipc/shm"]).await?;
    ensure(lists_segment(&listed, segment) == host, || {
        let verb = if host { "lacks" } else { "lists" };
        format!("IPC {}: /proc/sysvipc/shm inside {verb} the host's segment {segment}: {listed:?}", mode.as_str_name())
    })?;
    Ok(())
}

const NAMESPACE: &str = "/proc/self/ns/ipc";

/// A new private shared memory segment of this process's IPC namespace, removed after the case:
/// its id.
fn host_segment(context: &mut Context) -> Result<i32, String> {
    // SAFETY: shmget takes plain integers.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, SEGMENT_BYTES, libc::IPC_CREAT | 0o600) };
    if id < 0 {
        return Err(format!("making a shared memory segment on the host: {}", std::io::Error::last_os_error()));
    }
    context.on_host_cleanup(move || {
        // SAFETY: IPC_RMID reads no buffer.
        if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0 {
            Ok(())
        } else {
            Err(format!("removing shared memory segment {id}: {}", std::io::Error::last_os_error()))
        }
    });
    Ok(id)
}

/// Whether a `/proc/sysvipc/shm` text lists the private segment `id` of [`SEGMENT_BYTES`]
/// (columns: key, shmid, perms, size...).
fn lists_segment(table: &str, id: i32) -> bool {
    let want = ["0".to_owned(), id.to_string(), "600".to_owned(), SEGMENT_BYTES.to_string()];
    table.lines().skip(1).any(|line| line.split_whitespace().take(4).eq(want.iter().map(String::as_str)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_in_the_proc_table() {
        let table = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid\n\
                     \x20        0         12   600               1048576  4242     0      0     0     0\n\
                     \x20  1234567         13   644                  4096  4242     0      0     0     0\n";
        assert!(lists_segment(table, 12));
        assert!(!lists_segment(table, 13));
        assert!(!lists_segment(table, 1));
        assert!(!lists_segment("       key      shmid perms size\n", 12));
    }
}
