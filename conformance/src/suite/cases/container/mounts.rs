//! Host directories bound into containers: mount propagation (critest container_linux.go
//! "Container Mount Propagation") and read-only mounts, plain and recursive ("Container Mount
//! Readonly"). The host side is mounted by this process, which must run as root in the mount
//! namespace the runtime binds from; every host mount is detached after the case, whatever its
//! verdict.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{Mount, MountPropagation, StatusRequest};

use super::{
    Pod, SH_TOP, busybox, exec, exec_ok, pod_config, run_container, run_pod, security, status, text, try_create,
};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::{CaseResult, Context, Stop};

/// critest :107 "mount with 'rprivate' should not support propagation".
pub async fn propagation_private(context: &mut Context) -> CaseResult {
    propagation(context, MountPropagation::PropagationPrivate).await
}

/// critest :111 "mount with 'rshared' should support propagation from host to container and vice
/// versa".
pub async fn propagation_bidirectional(context: &mut Context) -> CaseResult {
    propagation(context, MountPropagation::PropagationBidirectional).await
}

/// critest :115 "mount with 'rslave' should support propagation from host to container".
pub async fn propagation_host_to_container(context: &mut Context) -> CaseResult {
    propagation(context, MountPropagation::PropagationHostToContainer).await
}

/// A privileged container (it mounts) binds a host directory that is a shared mount of its own.
/// Once it runs, a mount the host makes below that directory must show inside unless the bind is
/// private, and one the container makes must show on the host only if it is bidirectional.
/// critest makes the host's mount private for the private case; shared here, the runtime's bind
/// alone has to stop the propagation.
async fn propagation(context: &mut Context, propagation: MountPropagation) -> CaseResult {
    let dir = context.scratch_dir("propagation")?;
    let (volume, source) = (dir.join("volume"), dir.join("source"));
    let (from_host, from_container) = (volume.join("from-host"), volume.join("from-container"));
    for path in [&from_host, &source] {
        create_dir(path).await?;
    }
    write(&source.join("flag"), "").await?;
    host_bind(context, &volume, &volume)?;
    make_shared(&volume)?;

    let pod = privileged_pod(context, "propagation").await?;
    let mut config = busybox(context, "propagation", SH_TOP).await?;
    security(&mut config).privileged = true;
    let volume_text = volume.display().to_string();
    let bind = Mount {
        host_path: volume_text.clone(),
        container_path: volume_text,
        propagation: propagation.into(),
        ..Default::default()
    };
    config.mounts = vec![bind.clone()];
    let id = run_container(context, &pod, &config).await?;
    ensure_reported(context, &id, &bind).await?;

    host_bind(context, &source, &from_host)?;
    let listed = exec_ok(context, &id, &["ls", "-A", &from_host.display().to_string()]).await?;
    let want = if propagation == MountPropagation::PropagationPrivate { "" } else { "flag\n" };
    ensure(listed == want, || {
        format!(
            "{}: after the host mounted at {}, `ls -A` inside printed {listed:?}, want {want:?}",
            propagation.as_str_name(),
            from_host.display()
        )
    })?;

    // Undone whether or not it reaches the host: only the runtime decides that.
    let undo = from_container.clone();
    context.on_host_cleanup(move || detach(&undo));
    let target = from_container.display().to_string();
    exec_ok(context, &id, &["sh", "-c", &format!("mkdir -p {target} && mount --bind /etc {target}")]).await?;
    let seen = read_dir(&from_container).await?;
    let bidirectional = propagation == MountPropagation::PropagationBidirectional;
    ensure(seen.is_empty() != bidirectional, || {
        format!(
            "{}: after the container mounted /etc at {target}, the host sees {} entries there",
            propagation.as_str_name(),
            seen.len()
        )
    })?;
    Ok(())
}

/// critest's createPrivilegedPodSandbox, on the pod network.
async fn privileged_pod(context: &mut Context, purpose: &str) -> Result<Pod, Stop> {
    let mut config = pod_config(context, purpose).await?;
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).privileged = true;
    run_pod(context, config).await
}

/// ContainerStatus reports the one mount as it was asked for (critest checks this after the
/// propagation cases' CreateContainer).
async fn ensure_reported(context: &mut Context, id: &str, want: &Mount) -> Result<(), String> {
    let mounts = status(context, id).await?.mounts;
    let [got] = mounts.as_slice() else {
        return Err(format!("ContainerStatus reports {} mounts, want the one asked for: {mounts:?}", mounts.len()));
    };
    let same = got.container_path == want.container_path
        && got.host_path == want.host_path
        && got.readonly == want.readonly
        && !got.selinux_relabel
        && got.propagation == want.propagation;
    ensure(same, || format!("ContainerStatus reports the mount {got:?}, want {want:?}"))
}

/// critest :361 "should support non-recursive readonly mounts": a read-only bind refuses writes,
/// and a mount below its source (a tmpfs here) stays writable.
pub async fn readonly(context: &mut Context) -> CaseResult {
    let (host, pod) = readonly_host(context).await?;
    let mut config = busybox(context, "readonly-mount", SH_TOP).await?;
    config.mounts = vec![readonly_bind(&host, false)];
    let id = run_container(context, &pod, &config).await?;
    ensure_mount_count(context, &id, 1).await?;
    let out = exec(context, &id, &["touch", "/mnt/file"]).await?;
    let stderr = text(&out.stderr);
    ensure(out.exit_code != 0 && stderr.contains("Read-only file system"), || {
        format!("`touch /mnt/file` on the read-only mount: exit code {}, stderr {stderr:?}", out.exit_code)
    })?;
    exec_ok(context, &id, &["touch", "/mnt/tmpfs/file"]).await?;
    Ok(())
}

/// critest :364 "should support recursive readonly mounts": the mount below is read-only too.
/// Only where the runtime's default handler says it can, as critest.
pub async fn recursive_readonly(context: &mut Context) -> CaseResult {
    need_recursive_readonly(context).await?;
    let (host, pod) = readonly_host(context).await?;
    let mut config = busybox(context, "recursive-readonly-mount", SH_TOP).await?;
    config.mounts = vec![readonly_bind(&host, true)];
    let id = run_container(context, &pod, &config).await?;
    ensure_mount_count(context, &id, 1).await?;
    let out = exec(context, &id, &["touch", "/mnt/tmpfs/file"]).await?;
    let stderr = text(&out.stderr);
    ensure(out.exit_code != 0 && stderr.contains("Read-only file system"), || {
        format!(
            "`touch /mnt/tmpfs/file` below the recursive read-only mount: exit code {}, stderr {stderr:?}",
            out.exit_code
        )
    })?;
    Ok(())
}

/// critest :387 "should reject a recursive readonly mount with PROPAGATION_HOST_TO_CONTAINER".
pub async fn recursive_readonly_host_to_container(context: &mut Context) -> CaseResult {
    refused_recursive_readonly(context, true, MountPropagation::PropagationHostToContainer).await
}

/// critest :390 "should reject a recursive readonly mount with PROPAGATION_BIDIRECTIONAL".
pub async fn recursive_readonly_bidirectional(context: &mut Context) -> CaseResult {
    refused_recursive_readonly(context, true, MountPropagation::PropagationBidirectional).await
}

/// critest :393 "should reject a recursive readonly mount with ReadOnly: false".
pub async fn recursive_readonly_not_readonly(context: &mut Context) -> CaseResult {
    refused_recursive_readonly(context, false, MountPropagation::PropagationPrivate).await
}

/// CreateContainer must fail. critest asks this only of a runtime whose default handler does
/// recursive read-only mounts (one that does not may never have heard of the field). The host
/// directory is a shared mount here, so that the propagation asked for is possible and only the
/// rule for recursive read-only mounts is broken.
async fn refused_recursive_readonly(
    context: &mut Context,
    readonly: bool,
    propagation: MountPropagation,
) -> CaseResult {
    need_recursive_readonly(context).await?;
    let (host, pod) = readonly_host(context).await?;
    host_bind(context, &host, &host)?;
    make_shared(&host)?;
    let mut config = busybox(context, "refused-recursive-readonly", SH_TOP).await?;
    config.mounts = vec![Mount { readonly, propagation: propagation.into(), ..readonly_bind(&host, true) }];
    match try_create(context, &pod, &config).await {
        Ok(id) => Err(format!(
            "CreateContainer with a recursive read-only mount (readonly {readonly}, {}) made container {id}",
            propagation.as_str_name()
        )
        .into()),
        Err(_) => Ok(()),
    }
}

/// critest's createHostPathForRROMount: a host directory with a tmpfs mounted on its `tmpfs`;
/// and its privileged pod.
async fn readonly_host(context: &mut Context) -> Result<(PathBuf, Pod), Stop> {
    let host = context.scratch_dir("readonly-mount")?;
    let tmpfs = host.join("tmpfs");
    create_dir(&tmpfs).await?;
    host_mount(context, None, &tmpfs, Some("tmpfs"), 0)?;
    let pod = privileged_pod(context, "readonly-mount").await?;
    Ok((host, pod))
}

/// critest's createRROMountContainer's mount of `host` at `/mnt` (with an SELinux relabel that
/// hosts without SELinux ignore).
fn readonly_bind(host: &Path, recursive: bool) -> Mount {
    Mount {
        host_path: host.display().to_string(),
        container_path: "/mnt".into(),
        readonly: true,
        recursive_read_only: recursive,
        selinux_relabel: true,
        ..Default::default()
    }
}

async fn ensure_mount_count(context: &mut Context, id: &str, want: usize) -> Result<(), String> {
    let mounts = status(context, id).await?.mounts;
    ensure(mounts.len() == want, || format!("ContainerStatus reports {} mounts, want {want}: {mounts:?}", mounts.len()))
}

/// critest's runtimeSupportsRRO: the handler pods get by default (named "") declares the feature.
async fn need_recursive_readonly(context: &mut Context) -> Result<(), Stop> {
    let answer = context.client.runtime.status(StatusRequest { verbose: false }).await;
    let handlers = answer.map_err(|s| rpc_failed("Status", s))?.into_inner().runtime_handlers;
    let default = handlers.iter().find(|h| h.name.is_empty());
    if default.and_then(|h| h.features.as_ref()).is_some_and(|f| f.recursive_read_only_mounts) {
        return Ok(());
    }
    Err(Stop::Skip(
        "the runtime's default handler does not declare recursive_read_only_mounts in Status: \
         it cannot make recursive read-only mounts"
            .into(),
    ))
}

/// Mounts `source` at `target` on the host and has it detached after the case. Skips where this
/// process may not mount.
fn host_mount(
    context: &mut Context,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> Result<(), Stop> {
    let source_c = c_string(source.map_or("none".as_ref(), Path::as_os_str).as_bytes())?;
    let target_c = c_string(target.as_os_str().as_bytes())?;
    let fstype_c = fstype.map(|f| c_string(f.as_bytes())).transpose()?;
    // SAFETY: the strings are NUL-terminated and live across the call; no data is passed.
    let done = unsafe {
        libc::mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if done != 0 {
        let error = std::io::Error::last_os_error();
        let what = source.map_or_else(|| fstype.unwrap_or_default().to_owned(), |s| s.display().to_string());
        let why = format!("mounting {what} at {} on the host: {error}", target.display());
        return Err(if error.raw_os_error() == Some(libc::EPERM) {
            Stop::Skip(format!("{why}: this case needs a suite that may mount (root)"))
        } else {
            Stop::Fail(why)
        });
    }
    let undo = target.to_owned();
    context.on_host_cleanup(move || detach(&undo));
    Ok(())
}

/// Binds `source` at `target` on the host (with what is mounted below it).
fn host_bind(context: &mut Context, source: &Path, target: &Path) -> Result<(), Stop> {
    host_mount(context, Some(source), target, None, libc::MS_BIND | libc::MS_REC)
}

/// Makes the mount at `target` and those below it shared.
fn make_shared(target: &Path) -> Result<(), String> {
    let target_c = c_string(target.as_os_str().as_bytes())?;
    let flags = libc::MS_SHARED | libc::MS_REC;
    // SAFETY: as in host_mount; a propagation change takes no source, type nor data.
    let done = unsafe { libc::mount(std::ptr::null(), target_c.as_ptr(), std::ptr::null(), flags, std::ptr::null()) };
    if done != 0 {
        return Err(format!("making {} shared: {}", target.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Detaches the mount at `target` and those below it, now for this process and for the others
/// once they no longer use it. One that is already gone is no error.
fn detach(target: &Path) -> Result<(), String> {
    let target_c = c_string(target.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path that lives across the call.
    if unsafe { libc::umount2(target_c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOENT) => Ok(()),
        _ => Err(format!("detaching the host mount at {}: {error}", target.display())),
    }
}

fn c_string(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{:?} holds a NUL byte", String::from_utf8_lossy(bytes)))
}

async fn create_dir(path: &Path) -> Result<(), String> {
    tokio::fs::create_dir_all(path).await.map_err(|e| format!("creating {}: {e}", path.display()))
}

async fn write(path: &Path, content: &str) -> Result<(), String> {
    tokio::fs::write(path, content).await.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The names in a host directory.
async fn read_dir(path: &Path) -> Result<Vec<String>, String> {
    let error = |e: std::io::Error| format!("listing {} on the host: {e}", path.display());
    let mut entries = tokio::fs::read_dir(path).await.map_err(error)?;
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(error)? {
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}
