//! critest security_context_linux.go, "Security Context": identities, the root filesystem,
//! privileges and capabilities, masked and read-only paths, no_new_privs and seccomp, each read
//! from inside the container (`id`, `/proc/1/status`, `/proc/self/status`, its logs).

use k8s_cri::v1::{
    Capability, Int64Value, SecurityProfile, StatusRequest, SupplementalGroupsPolicy, security_profile::ProfileType,
};

use super::{
    Pod, SH_TOP, busybox, config, ensure_logged, exec_fails, exec_ok, pod, pod_config, run_container, run_pod,
    run_to_exit, security, status, text, try_create,
};
use crate::lab::image::LabImage;
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::{CaseResult, Context, Stop};

/// critest security_context_linux.go:313 "runtime should support RunAsUser": `id -u` is 1001.
pub async fn run_as_user(context: &mut Context) -> CaseResult {
    let pod = pod(context, "run-as-user").await?;
    let mut config = busybox(context, "run-as-user", SH_TOP).await?;
    security(&mut config).run_as_user = Some(Int64Value { value: 1001 });
    let id = run_container(context, &pod, &config).await?;
    expect_output(context, &id, &["id", "-u"], "1001\n").await
}

/// critest :331 "runtime should support RunAsUserName": `id -nu` is nobody.
pub async fn run_as_username(context: &mut Context) -> CaseResult {
    let pod = pod(context, "run-as-username").await?;
    let mut config = busybox(context, "run-as-username", SH_TOP).await?;
    security(&mut config).run_as_username = "nobody".into();
    let id = run_container(context, &pod, &config).await?;
    expect_output(context, &id, &["id", "-nu"], "nobody\n").await
}

/// critest :349 "runtime should support RunAsGroup": the container's own output (its log) is
/// `1001:1002`.
pub async fn run_as_group(context: &mut Context) -> CaseResult {
    let pod = pod(context, "run-as-group").await?;
    let mut config = busybox(context, "run-as-group", &["sh", "-c", "echo $(id -u):$(id -g)"]).await?;
    security(&mut config).run_as_user = Some(Int64Value { value: 1001 });
    security(&mut config).run_as_group = Some(Int64Value { value: 1002 });
    run_to_exit(context, &pod, &config).await?;
    ensure_logged(&pod, &config, "stdout", "1001:1002\n").await?;
    Ok(())
}

/// critest :367 "runtime should return error if RunAsGroup is set without RunAsUser".
pub async fn run_as_group_without_user(context: &mut Context) -> CaseResult {
    let pod = pod(context, "run-as-group-alone").await?;
    let mut config = busybox(context, "run-as-group-alone", &["sh", "-c", "echo $(id -u):$(id -g)"]).await?;
    security(&mut config).run_as_group = Some(Int64Value { value: 1002 });
    match try_create(context, &pod, &config).await {
        Ok(id) => Err(format!("CreateContainer with run_as_group and no run_as_user made container {id}").into()),
        Err(_) => Ok(()),
    }
}

/// critest :280 "runtime should support SupplementalGroups": `id -G` holds 1234 and 5678.
pub async fn supplemental_groups(context: &mut Context) -> CaseResult {
    let pod = pod(context, "supplemental-groups").await?;
    let mut config = busybox(context, "supplemental-groups", SH_TOP).await?;
    security(&mut config).supplemental_groups = vec![1234, 5678];
    let id = run_container(context, &pod, &config).await?;
    let groups = exec_ok(context, &id, &["id", "-G"]).await?;
    let groups: Vec<&str> = groups.split_whitespace().collect();
    ensure(groups.contains(&"1234") && groups.contains(&"5678"), || {
        format!("`id -G` is {groups:?}, lacking 1234 or 5678")
    })?;
    Ok(())
}

/// critest :605 "SupplementalGroupsPolicy=Merge": run as an image user whose group the image's
/// `/etc/group` lists (the lab's user1002 is in group1004), the groups are its own, the
/// supplemental one and the image's; ContainerStatus reports them. Skips where the runtime does
/// not declare the feature, as critest does.
pub async fn supplemental_groups_policy_merge(context: &mut Context) -> CaseResult {
    supplemental_groups_policy(context, SupplementalGroupsPolicy::Merge, &[1002, 1004, 1234]).await
}

/// critest :672 "SupplementalGroupsPolicy=Strict": the image's groups are left out.
pub async fn supplemental_groups_policy_strict(context: &mut Context) -> CaseResult {
    supplemental_groups_policy(context, SupplementalGroupsPolicy::Strict, &[1002, 1234]).await
}

async fn supplemental_groups_policy(
    context: &mut Context,
    policy: SupplementalGroupsPolicy,
    want: &[i64],
) -> CaseResult {
    let answer = context.client.runtime.status(StatusRequest { verbose: false }).await;
    let features = answer.map_err(|s| rpc_failed("Status", s))?.into_inner().features;
    if !features.is_some_and(|f| f.supplemental_groups_policy) {
        return Err(Stop::Skip("the runtime does not declare the SupplementalGroupsPolicy feature".into()));
    }
    let pod = pod(context, "supplemental-groups-policy").await?;
    let mut config = busybox(context, "supplemental-groups-policy", &["sh", "-c", "id -G; sleep 3600"]).await?;
    let context_of = security(&mut config);
    context_of.run_as_user = Some(Int64Value { value: 1002 });
    context_of.supplemental_groups = vec![1234];
    context_of.supplemental_groups_policy = policy.into();
    let id = run_container(context, &pod, &config).await?;
    let groups = exec_ok(context, &id, &["id", "-G"]).await?;
    ensure_groups(&groups, 1002, want, "`id -G`")?;
    let user = status(context, &id).await?.user.and_then(|u| u.linux);
    let user = user.ok_or("ContainerStatus reports no user, which the SupplementalGroupsPolicy feature requires")?;
    let mut reported = user.supplemental_groups.clone();
    reported.sort_unstable();
    ensure((user.uid, user.gid) == (1002, 1002) && reported == want, || {
        format!("ContainerStatus user is {user:?}, want uid 1002, gid 1002, groups {want:?}")
    })?;
    Ok(())
}

/// `id -G` output: the primary group first, then exactly the groups of `want` (in any order, as
/// the kernel sorts them).
fn ensure_groups(output: &str, primary: i64, want: &[i64], what: &str) -> Result<(), String> {
    let groups: Vec<i64> = output
        .split_whitespace()
        .map(|g| g.parse().map_err(|_| format!("{what} printed {output:?}")))
        .collect::<Result<_, _>>()?;
    let mut sorted = groups.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let mut want = want.to_vec();
    want.sort_unstable();
    ensure(groups.first() == Some(&primary) && sorted == want, || {
        format!("{what} is {output:?}: want primary group {primary} first, and the groups {want:?}")
    })
}

/// The image's `USER 1002`, a uid in its `/etc/passwd` (user1002: group 1002, and in group1004
/// by `/etc/group`): `id` sees it with its groups, and ContainerStatus, where it reports a user,
/// agrees. critest's images have no such users; its image user checks are ImageStatus's.
pub async fn image_user_uid(context: &mut Context) -> CaseResult {
    image_user(
        context,
        LabImage::UserUid,
        "uid=1002(user1002) gid=1002(group1002) groups=1002(group1002),1004(group1004)\n",
        (1002, 1002),
        &[1002, 1004],
    )
    .await
}

/// The image's `USER www-data`, a name resolved in its `/etc/passwd`.
pub async fn image_user_name(context: &mut Context) -> CaseResult {
    image_user(context, LabImage::UserName, "uid=33(www-data) gid=33(www-data) groups=33(www-data)\n", (33, 33), &[33])
        .await
}

/// The image's `USER 1003:1004`: the group given, not the passwd one's.
pub async fn image_user_uid_gid(context: &mut Context) -> CaseResult {
    image_user(
        context,
        LabImage::UserUidGid,
        "uid=1003(user1003) gid=1004(group1004) groups=1004(group1004)\n",
        (1003, 1004),
        &[1004],
    )
    .await
}

async fn image_user(context: &mut Context, image: LabImage, want: &str, ids: (i64, i64), groups: &[i64]) -> CaseResult {
    let pod = pod(context, "image-user").await?;
    let config = config(context, "image-user", image, SH_TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    expect_output(context, &id, &["id"], want).await?;
    if let Some(user) = status(context, &id).await?.user.and_then(|u| u.linux) {
        let mut reported = user.supplemental_groups.clone();
        reported.sort_unstable();
        ensure((user.uid, user.gid) == ids && reported == groups, || {
            format!("ContainerStatus user is {user:?}, want uid {} gid {} groups {groups:?}", ids.0, ids.1)
        })?;
    }
    Ok(())
}

/// critest :376 "runtime should support that ReadOnlyRootfs is false": `touch` in `/` works.
pub async fn readonly_rootfs_false(context: &mut Context) -> CaseResult {
    readonly_rootfs(context, false, "stdout", "Found\n").await
}

/// critest :394 "... ReadOnlyRootfs is true": it fails with EROFS.
pub async fn readonly_rootfs_true(context: &mut Context) -> CaseResult {
    readonly_rootfs(context, true, "stderr", "touch: test.go: Read-only file system\n").await
}

async fn readonly_rootfs(context: &mut Context, readonly: bool, stream: &str, want: &str) -> CaseResult {
    let pod = pod(context, "readonly-rootfs").await?;
    let command = ["sh", "-c", "touch test.go && [ -f test.go ] && echo 'Found'"];
    let mut config = busybox(context, "readonly-rootfs", &command).await?;
    security(&mut config).readonly_rootfs = readonly;
    run_to_exit(context, &pod, &config).await?;
    ensure_logged(&pod, &config, stream, want).await?;
    Ok(())
}

/// critest :412 "runtime should support Privileged is true": in a privileged pod, a privileged
/// container manages the network (`brctl addbr`, in the pod's namespace). Here also: its
/// effective capabilities are the whole bounding set of this (root) process.
pub async fn privileged(context: &mut Context) -> CaseResult {
    let (pod, id) = privileged_container(context, true).await?;
    exec_ok(context, &id, &["brctl", "addbr", "foobar"]).await?;
    let host = own_capabilities("CapBnd").await?;
    let status = exec_ok(context, &id, &["cat", "/proc/1/status"]).await?;
    let effective = capability_field(&status, "CapEff")?;
    if is_root().await? {
        ensure(effective == host, || {
            format!("the privileged container's CapEff is {effective:x}, the host's CapBnd {host:x}")
        })?;
    }
    drop(pod);
    Ok(())
}

/// critest :430 "runtime should support Privileged is false": it cannot.
pub async fn not_privileged(context: &mut Context) -> CaseResult {
    let (_, id) = privileged_container(context, false).await?;
    exec_fails(context, &id, &["brctl", "addbr", "foobar"]).await?;
    Ok(())
}

/// critest's createPrivilegedPodSandbox and createPrivilegedContainer.
async fn privileged_container(context: &mut Context, privileged: bool) -> Result<(Pod, String), Stop> {
    let mut pod_config = pod_config(context, "privileged").await?;
    let linux = pod_config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).privileged = privileged;
    let pod = run_pod(context, pod_config).await?;
    let mut config = busybox(context, "privileged", SH_TOP).await?;
    security(&mut config).privileged = privileged;
    let id = run_container(context, &pod, &config).await?;
    Ok((pod, id))
}

/// CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, CAP_CHOWN, as bits.
const NET_ADMIN: u64 = 1 << 12;
const NET_RAW: u64 = 1 << 13;
const SYS_ADMIN: u64 = 1 << 21;
const CHOWN: u64 = 1 << 0;

/// A default container's init (`/proc/1/status`): the default set holds CAP_CHOWN but neither
/// CAP_NET_ADMIN nor CAP_SYS_ADMIN, in CapEff and CapBnd alike, and CapInh and CapAmb are empty
/// (CVE-2022-24769). critest checks capabilities only through what they allow (below).
pub async fn default_capabilities(context: &mut Context) -> CaseResult {
    let pod = pod(context, "default-capabilities").await?;
    let config = busybox(context, "default-capabilities", SH_TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    let status = exec_ok(context, &id, &["cat", "/proc/1/status"]).await?;
    for field in ["CapEff", "CapBnd"] {
        let set = capability_field(&status, field)?;
        ensure(set & CHOWN != 0 && set & (NET_ADMIN | SYS_ADMIN) == 0, || {
            format!("the default container's {field} is {set:016x}: want CAP_CHOWN, no CAP_NET_ADMIN nor CAP_SYS_ADMIN")
        })?;
    }
    for field in ["CapInh", "CapAmb"] {
        let set = capability_field(&status, field)?;
        ensure(set == 0, || format!("the default container's {field} is {set:016x}, want none"))?;
    }
    Ok(())
}

/// critest :448 "runtime should support adding capability": with NET_ADMIN a container manages
/// the network and a default one cannot.
pub async fn add_capability(context: &mut Context) -> CaseResult {
    let pod = pod(context, "add-capability").await?;
    let id = capability_container(context, &pod, &["NET_ADMIN"], &[]).await?;
    exec_ok(context, &id, &["brctl", "addbr", "foobar"]).await?;
    let set = capability_field(&exec_ok(context, &id, &["cat", "/proc/1/status"]).await?, "CapEff")?;
    ensure(set & NET_ADMIN != 0, || format!("CapEff {set:016x} lacks the added CAP_NET_ADMIN"))?;
    let default = busybox(context, "no-added-capability", SH_TOP).await?;
    let id = run_container(context, &pod, &default).await?;
    exec_fails(context, &id, &["brctl", "addbr", "foobar"]).await?;
    Ok(())
}

/// critest :473 "runtime should support dropping capability": without NET_RAW, `ping` fails
/// with "permission denied", after printing its header.
pub async fn drop_capability(context: &mut Context) -> CaseResult {
    let pod = pod(context, "drop-capability").await?;
    let id = capability_container(context, &pod, &[], &["NET_RAW"]).await?;
    let set = capability_field(&exec_ok(context, &id, &["cat", "/proc/1/status"]).await?, "CapEff")?;
    ensure(set & NET_RAW == 0, || format!("CapEff {set:016x} holds the dropped CAP_NET_RAW"))?;
    let out = exec_fails(context, &id, &["ping", "-c", "1", "127.0.0.1"]).await?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure(!stdout.is_empty() && stderr.contains("permission denied"), || {
        format!("ping without CAP_NET_RAW: stdout {stdout:?}, stderr {stderr:?}: want output and \"permission denied\"")
    })?;
    Ok(())
}

/// critest :494 "runtime should support adding ALL capabilities": CapBnd is not empty.
pub async fn add_all_capabilities(context: &mut Context) -> CaseResult {
    let pod = pod(context, "add-all-capabilities").await?;
    let id = capability_container(context, &pod, &["ALL"], &[]).await?;
    let status = exec_ok(context, &id, &["cat", "/proc/self/status"]).await?;
    let bounding = capability_field(&status, "CapBnd")?;
    ensure(bounding & SYS_ADMIN != 0 && bounding & NET_ADMIN != 0, || {
        format!("CapBnd {bounding:016x} with ALL added lacks CAP_SYS_ADMIN or CAP_NET_ADMIN")
    })?;
    if is_root().await? {
        let host = own_capabilities("CapBnd").await?;
        ensure(bounding == host, || format!("CapBnd {bounding:016x} with ALL added, the host's {host:016x}"))?;
    }
    Ok(())
}

/// critest :515 "runtime should support dropping ALL capabilities": CapBnd is empty.
pub async fn drop_all_capabilities(context: &mut Context) -> CaseResult {
    let pod = pod(context, "drop-all-capabilities").await?;
    let id = capability_container(context, &pod, &[], &["ALL"]).await?;
    let status = exec_ok(context, &id, &["cat", "/proc/self/status"]).await?;
    for field in ["CapBnd", "CapEff", "CapPrm"] {
        let set = capability_field(&status, field)?;
        ensure(set == 0, || format!("{field} with ALL dropped is {set:016x}"))?;
    }
    Ok(())
}

/// critest's createCapabilityContainer, running.
async fn capability_container(context: &mut Context, pod: &Pod, add: &[&str], drop: &[&str]) -> Result<String, Stop> {
    let mut config = busybox(context, "capability", SH_TOP).await?;
    security(&mut config).capabilities = Some(Capability {
        add_capabilities: super::strings(add),
        drop_capabilities: super::strings(drop),
        ..Default::default()
    });
    Ok(run_container(context, pod, &config).await?)
}

/// The runtime's default masked paths hide the `/proc` files that leak host state (those of
/// them this host has read empty inside) and its read-only paths include `/proc/sys` (mounted
/// `ro`). critest checks only the paths a config adds (below).
pub async fn default_masked_and_readonly_paths(context: &mut Context) -> CaseResult {
    const MASKED: [&str; 4] = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"];
    let mut present = Vec::new();
    for path in MASKED {
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            present.push(path);
        }
    }
    if present.is_empty() {
        return Err(Stop::Skip(format!("this host has none of {MASKED:?}")));
    }
    let pod = pod(context, "default-paths").await?;
    let config = busybox(context, "default-paths", SH_TOP).await?;
    let id = run_container(context, &pod, &config).await?;
    for path in present {
        let size = exec_ok(context, &id, &["sh", "-c", &format!("wc -c < {path}")]).await?;
        ensure(size.trim() == "0", || format!("{path} reads {} bytes, want 0 (masked)", size.trim()))?;
    }
    let mounts = exec_ok(context, &id, &["cat", "/proc/self/mounts"]).await?;
    let proc_sys = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/proc/sys"));
    let read_only = proc_sys.and_then(|l| l.split(' ').nth(3)).is_some_and(|o| o.split(',').any(|o| o == "ro"));
    ensure(read_only, || format!("/proc/sys is not mounted read-only: {proc_sys:?}"))?;
    Ok(())
}

/// critest :536 "runtime should support MaskedPaths": `/bin/ls` masked cannot be run. critest
/// runs `sh -c ls`, which Debian's busybox sh answers with its own applet without running
/// `/bin/ls`: here the shell runs it by its path.
pub async fn masked_paths(context: &mut Context) -> CaseResult {
    let pod = pod(context, "masked-paths").await?;
    let mut config = busybox(context, "masked-paths", SH_TOP).await?;
    security(&mut config).masked_paths = vec!["/bin/ls".into()];
    let id = run_container(context, &pod, &config).await?;
    let out = exec_fails(context, &id, &["/bin/sh", "-c", "/bin/ls"]).await?;
    let stderr = text(&out.stderr);
    ensure(stderr == "/bin/sh: /bin/ls: Permission denied\n", || format!("running masked /bin/ls: stderr {stderr:?}"))?;
    Ok(())
}

/// critest :565 "runtime should support ReadonlyPaths": `/tmp` read-only refuses a new file.
pub async fn readonly_paths(context: &mut Context) -> CaseResult {
    let pod = pod(context, "readonly-paths").await?;
    let mut config = busybox(context, "readonly-paths", SH_TOP).await?;
    security(&mut config).readonly_paths = vec!["/tmp".into()];
    let id = run_container(context, &pod, &config).await?;
    let out = exec_fails(context, &id, &["touch", "/tmp/test"]).await?;
    let stderr = text(&out.stderr);
    ensure(stderr == "touch: /tmp/test: Read-only file system\n", || format!("touch /tmp/test: stderr {stderr:?}"))?;
    Ok(())
}

/// critest :909 "NoNewPrivs" runs a setuid binary of its nonewprivs image as uid 1000; the lab
/// has no setuid binary, so this reads the flag itself: `NoNewPrivs` in `/proc/1/status` is 1
/// with no_new_privs and 0 without.
pub async fn no_new_privs(context: &mut Context) -> CaseResult {
    let pod = pod(context, "no-new-privs").await?;
    for (flag, want) in [(true, "1"), (false, "0")] {
        let mut config = busybox(context, "no-new-privs", SH_TOP).await?;
        let context_of = security(&mut config);
        context_of.no_new_privs = flag;
        context_of.run_as_user = Some(Int64Value { value: 1000 });
        let id = run_container(context, &pod, &config).await?;
        let status = exec_ok(context, &id, &["cat", "/proc/1/status"]).await?;
        let got = status_field(&status, "NoNewPrivs")?;
        ensure(got == want, || format!("no_new_privs {flag}: NoNewPrivs is {got}, want {want}"))?;
    }
    Ok(())
}

/// critest :803 "should support seccomp unconfined on the container": `Seccomp: 0`.
pub async fn seccomp_unconfined(context: &mut Context) -> CaseResult {
    let profile = SecurityProfile { profile_type: ProfileType::Unconfined.into(), ..Default::default() };
    seccomp_status(context, Some(profile), "0").await
}

/// critest :839 "should support nil profile, which is unconfined".
pub async fn seccomp_nil(context: &mut Context) -> CaseResult {
    seccomp_status(context, None, "0").await
}

/// critest :828 "should support seccomp default on the container": `Seccomp: 2` (filtered).
pub async fn seccomp_runtime_default(context: &mut Context) -> CaseResult {
    let profile = SecurityProfile { profile_type: ProfileType::RuntimeDefault.into(), ..Default::default() };
    seccomp_status(context, Some(profile), "2").await
}

/// critest's seccompTestContainer: the profile on pod and container alike; `Seccomp:` of
/// `/proc/self/status` holds `want`.
async fn seccomp_status(context: &mut Context, profile: Option<SecurityProfile>, want: &str) -> CaseResult {
    let (_, id) = seccomp_container(context, profile, &[], false).await?;
    let line = exec_ok(context, &id, &["grep", "Seccomp:", "/proc/self/status"]).await?;
    ensure(line.contains(want), || format!("`grep Seccomp: /proc/self/status` printed {line:?}, want {want}"))?;
    Ok(())
}

/// critest :814 "should support seccomp localhost profile on the container": a profile file
/// refusing chmod makes `chmod 400 /` fail with EPERM.
pub async fn seccomp_localhost(context: &mut Context) -> CaseResult {
    let path = profile_file(context, "block-chmod.json", BLOCK_CHMOD).await?;
    let profile = localhost(path);
    let (_, id) = seccomp_container(context, Some(profile), &[], false).await?;
    let out = exec_fails(context, &id, &["chmod", "400", "/"]).await?;
    let stderr = text(&out.stderr);
    ensure(stderr.contains("Operation not permitted"), || format!("chmod under the profile: stderr {stderr:?}"))?;
    Ok(())
}

/// critest :850 "runtime should not block setting host name with unconfined seccomp and
/// SYS_ADMIN" (in the pod's own UTS namespace).
pub async fn seccomp_unconfined_sethostname(context: &mut Context) -> CaseResult {
    let profile = SecurityProfile { profile_type: ProfileType::Unconfined.into(), ..Default::default() };
    let (_, id) = sethostname_container(context, profile, false).await?;
    exec_ok(context, &id, &["hostname", "ANewHostName"]).await?;
    Ok(())
}

/// critest :868 "runtime should support an seccomp profile that blocks setting hostname with
/// SYS_ADMIN".
pub async fn seccomp_localhost_blocks_sethostname(context: &mut Context) -> CaseResult {
    let path = profile_file(context, "block-host-name.json", BLOCK_SETHOSTNAME).await?;
    let (_, id) = sethostname_container(context, localhost(path), false).await?;
    exec_fails(context, &id, &["hostname", "ANewHostName"]).await?;
    Ok(())
}

/// critest :888 "runtime should ignore a seccomp profile that blocks setting hostname when
/// privileged".
pub async fn seccomp_ignored_when_privileged(context: &mut Context) -> CaseResult {
    let path = profile_file(context, "block-host-name.json", BLOCK_SETHOSTNAME).await?;
    let (_, id) = sethostname_container(context, localhost(path), true).await?;
    exec_ok(context, &id, &["hostname", "ANewHostName"]).await?;
    Ok(())
}

/// critest's profiles (security_context_linux.go:747, :757).
const BLOCK_SETHOSTNAME: &str =
    r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"#;
const BLOCK_CHMOD: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}"#;

fn localhost(path: String) -> SecurityProfile {
    SecurityProfile { profile_type: ProfileType::Localhost.into(), localhost_ref: path }
}

/// Writes a seccomp profile for the runtime to read, in a directory of the case's.
async fn profile_file(context: &mut Context, name: &str, profile: &str) -> Result<String, Stop> {
    let path = context.scratch_dir("seccomp")?.join(name);
    tokio::fs::write(&path, profile).await.map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// critest's seccompTestContainer (the profile on the pod too) running `sh -c top`.
async fn seccomp_container(
    context: &mut Context,
    profile: Option<SecurityProfile>,
    add: &[&str],
    privileged: bool,
) -> Result<(Pod, String), Stop> {
    let mut pod_config = pod_config(context, "seccomp").await?;
    let linux = pod_config.linux.get_or_insert_with(Default::default);
    let pod_security = linux.security_context.get_or_insert_with(Default::default);
    pod_security.seccomp = profile.clone();
    pod_security.privileged = privileged;
    let pod = run_pod(context, pod_config).await?;
    let mut config = busybox(context, "seccomp", SH_TOP).await?;
    let container_security = security(&mut config);
    container_security.seccomp = profile;
    container_security.privileged = privileged;
    if !add.is_empty() {
        container_security.capabilities =
            Some(Capability { add_capabilities: super::strings(add), ..Default::default() });
    }
    let id = run_container(context, &pod, &config).await?;
    Ok((pod, id))
}

/// critest's createSeccompContainer: SYS_ADMIN added unless privileged (which has it).
async fn sethostname_container(
    context: &mut Context,
    profile: SecurityProfile,
    privileged: bool,
) -> Result<(Pod, String), Stop> {
    let add: &[&str] = if privileged { &[] } else { &["SYS_ADMIN"] };
    seccomp_container(context, Some(profile), add, privileged).await
}

/// A capability set of a `/proc/PID/status`, e.g. `CapEff`.
fn capability_field(status: &str, field: &str) -> Result<u64, String> {
    let value = status_field(status, field)?;
    u64::from_str_radix(&value, 16).map_err(|_| format!("{field} is {value:?}, no hex number"))
}

/// A field of a `/proc/PID/status`.
fn status_field(status: &str, field: &str) -> Result<String, String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_owned()))
        .ok_or_else(|| format!("no {field} in /proc status: {status:?}"))
}

/// This process's capability set `field`.
async fn own_capabilities(field: &str) -> Result<u64, String> {
    let status =
        tokio::fs::read_to_string("/proc/self/status").await.map_err(|e| format!("reading /proc/self/status: {e}"))?;
    capability_field(&status, field)
}

/// Whether this process runs as root: only then are its capabilities the host's.
async fn is_root() -> Result<bool, String> {
    let status =
        tokio::fs::read_to_string("/proc/self/status").await.map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let uids = status_field(&status, "Uid")?;
    Ok(uids.split_whitespace().nth(1) == Some("0"))
}

/// critest's verifyExecSyncOutput: stdout is `want` exactly, stderr empty.
async fn expect_output(context: &mut Context, id: &str, cmd: &[&str], want: &str) -> CaseResult {
    let got = exec_ok(context, id, cmd).await?;
    ensure(got == want, || format!("`{}` printed {got:?}, want {want:?}", cmd.join(" ")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields() {
        let status = "Name:\tsh\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t1\n";
        assert_eq!(capability_field(status, "CapEff").unwrap(), 0xa80425fb);
        assert_eq!(capability_field(status, "CapInh").unwrap(), 0);
        assert_eq!(status_field(status, "NoNewPrivs").unwrap(), "1");
        assert!(status_field(status, "CapBnd").is_err());
        assert!(status_field(status, "Cap").is_err());
    }

    #[test]
    fn id_groups() {
        assert!(ensure_groups("1002 1004 1234\n", 1002, &[1234, 1004, 1002], "id -G").is_ok());
        assert!(ensure_groups("1002 1234 1004\n", 1002, &[1002, 1004, 1234], "id -G").is_ok());
        assert!(ensure_groups("1004 1002\n", 1002, &[1002, 1004], "id -G").is_err());
        assert!(ensure_groups("1002 1234\n", 1002, &[1002, 1004, 1234], "id -G").is_err());
        assert!(ensure_groups("x\n", 1002, &[1002], "id -G").is_err());
    }
}
