//! End-to-end: the security and identity settings of containers, over the socket, from the
//! lab's images, on runc. Each setting is checked by what the process really has (ExecSync
//! output, or the container init's /proc entry seen from the host), not by the spec crisp wrote.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::assert_contains;
use common::containers::{Options, Setup, setup, setup_with};
use crisp_conformance::lab::image::LabImage;
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{
    Capability, ContainerConfig, CreateContainerRequest, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, ListContainersRequest, Mount, MountPropagation, SecurityProfile, StatusRequest,
    SupplementalGroupsPolicy,
};
use tonic::Code;

/// containerd's default capabilities (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
/// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP) as /proc prints them.
const DEFAULT_CAPS: &str = "00000000a80425fb";
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;

fn with_security(mut config: ContainerConfig, security: LinuxContainerSecurityContext) -> ContainerConfig {
    config.linux = Some(LinuxContainerConfig { security_context: Some(security), ..Default::default() });
    config
}

fn caps(add: &[&str], drop: &[&str]) -> Option<Capability> {
    Some(Capability {
        add_capabilities: add.iter().map(|c| c.to_string()).collect(),
        drop_capabilities: drop.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    })
}

fn profile(profile_type: ProfileType, localhost_ref: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile { profile_type: profile_type as i32, localhost_ref: localhost_ref.into() })
}

fn int64(value: i64) -> Option<Int64Value> {
    Some(Int64Value { value })
}

/// A `Key:\tvalue` line of a /proc status file.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
}

fn init_status(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn hex(mask: u64) -> String {
    format!("{mask:016x}")
}

/// The options of the mount at `mountpoint` in a /proc/self/mounts text, if one is there.
fn mount_options<'a>(mounts: &'a str, mountpoint: &str) -> Option<&'a str> {
    // The last one: it is the one on top.
    mounts.lines().rev().find_map(|l| {
        let fields: Vec<&'a str> = l.split(' ').collect();
        (fields.len() > 3 && fields[1] == mountpoint).then(|| fields[3])
    })
}

fn has_option(options: Option<&str>, option: &str) -> bool {
    options.is_some_and(|o| o.split(',').any(|x| x == option))
}

/// Creates each container, expecting each refused with its code and a message holding its
/// text, and none of them left listed. All at once: they are independent, and each refusal
/// waits out crisp's undo of the half-made container.
async fn expect_refused(s: &mut Setup, cases: Vec<(ContainerConfig, Code, &str)>) {
    let before = container_count(s).await;
    let attempts = cases.into_iter().map(|(config, code, needle)| {
        let mut client = s.client.clone();
        let request = CreateContainerRequest {
            pod_sandbox_id: s.pod.clone(),
            config: Some(config.clone()),
            sandbox_config: Some(s.pod_config.clone()),
        };
        async move {
            let name = &config.metadata.as_ref().unwrap().name;
            match client.runtime.create_container(request).await {
                Ok(r) => panic!("creating {name} succeeded ({r:?}); expected {code:?} with {needle:?}"),
                Err(e) => {
                    assert_eq!(e.code(), code, "creating {name}: {e}");
                    assert_contains(e.message(), needle);
                }
            }
        }
    });
    futures::future::join_all(attempts).await;
    assert_eq!(container_count(s).await, before, "refused containers are not listed");
}

/// How many containers the daemon lists.
async fn container_count(s: &mut Setup) -> usize {
    s.client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner().containers.len()
}

#[tokio::test]
async fn users_groups_and_supplementary_groups() {
    let mut s = setup(30).await;
    let uid_image = s.pull(LabImage::UserUid).await;
    let name_image = s.pull(LabImage::UserName).await;
    let uid_gid_image = s.pull(LabImage::UserUidGid).await;
    let sleep = ["sleep", "1000"];
    let user = |s: &Setup, name: &str, security: LinuxContainerSecurityContext| {
        with_security(s.config(name, &sleep), security)
    };
    let image = |s: &Setup, name: &str, image: &str| {
        let mut config = s.config(name, &sleep);
        config.image.as_mut().unwrap().image = image.to_owned();
        config
    };

    // (container, expected `id` output). The lab's passwd has user1002 (gid 1002) and user1003
    // (gid 1004); its group file lists user1002 in group1004, so Merge adds 1004 to it.
    let cases = [
        (image(&s, "root", &s.image), "uid=0(root) gid=0(root) groups=0(root)"),
        (
            user(&s, "run-as-user", LinuxContainerSecurityContext { run_as_user: int64(1002), ..Default::default() }),
            "uid=1002(user1002) gid=1002(group1002) groups=1002(group1002),1004(group1004)",
        ),
        (
            user(
                &s,
                "run-as-username",
                LinuxContainerSecurityContext { run_as_username: "www-data".into(), ..Default::default() },
            ),
            "uid=33(www-data) gid=33(www-data) groups=33(www-data)",
        ),
        (
            user(
                &s,
                "run-as-group",
                LinuxContainerSecurityContext {
                    run_as_user: int64(1002),
                    run_as_group: int64(1004),
                    ..Default::default()
                },
            ),
            "uid=1002(user1002) gid=1004(group1004) groups=1004(group1004)",
        ),
        // A uid the image does not know runs with gid 0, as in Docker and containerd.
        (
            user(&s, "unknown-uid", LinuxContainerSecurityContext { run_as_user: int64(4321), ..Default::default() }),
            "uid=4321 gid=0(root) groups=0(root)",
        ),
        (
            image(&s, "image-uid", &uid_image),
            "uid=1002(user1002) gid=1002(group1002) groups=1002(group1002),1004(group1004)",
        ),
        (image(&s, "image-name", &name_image), "uid=33(www-data) gid=33(www-data) groups=33(www-data)"),
        (image(&s, "image-uid-gid", &uid_gid_image), "uid=1003(user1003) gid=1004(group1004) groups=1004(group1004)"),
        (
            user(
                &s,
                "merge",
                LinuxContainerSecurityContext {
                    run_as_user: int64(1002),
                    supplemental_groups: vec![1234, 33],
                    ..Default::default()
                },
            ),
            "uid=1002(user1002) gid=1002(group1002) groups=33(www-data),1002(group1002),1004(group1004),1234",
        ),
        (
            user(
                &s,
                "strict",
                LinuxContainerSecurityContext {
                    run_as_user: int64(1002),
                    supplemental_groups: vec![1234],
                    supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
                    ..Default::default()
                },
            ),
            "uid=1002(user1002) gid=1002(group1002) groups=1002(group1002),1234",
        ),
        // The CRI's user wins over the image's USER.
        (
            {
                let mut config = image(&s, "user-over-image", &uid_gid_image);
                config.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        run_as_username: "www-data".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                config
            },
            "uid=33(www-data) gid=33(www-data) groups=33(www-data)",
        ),
    ];
    let mut merge = String::new();
    for (config, expected) in cases {
        let name = config.metadata.as_ref().unwrap().name.clone();
        let id = s.run(config).await;
        let out = s.exec_ok(&id, &["id"]).await;
        assert_eq!(out.trim_end(), expected, "{name}");
        if name == "merge" {
            merge = id;
        }
    }

    // The init itself has those credentials, and the status reports them.
    let status = init_status(s.pid(&merge).await);
    assert_eq!(field(&status, "Uid"), "1002\t1002\t1002\t1002");
    assert_eq!(field(&status, "Gid"), "1002\t1002\t1002\t1002");
    assert_eq!(field(&status, "Groups"), "33 1002 1004 1234");
    let reported = s.status(&merge).await.user.and_then(|u| u.linux).expect("the status has the user");
    assert_eq!((reported.uid, reported.gid, reported.supplemental_groups), (1002, 1002, vec![33, 1002, 1004, 1234]));

    let refused = [
        (
            "group-without-user",
            LinuxContainerSecurityContext { run_as_group: int64(1004), ..Default::default() },
            "run_as_group",
        ),
        (
            "uid-too-big",
            LinuxContainerSecurityContext { run_as_user: int64(1 << 32), ..Default::default() },
            "4294967296",
        ),
        // (uid_t)-1 would leave the runtime's uid, root, in place.
        (
            "uid-max",
            LinuxContainerSecurityContext { run_as_user: int64(u32::MAX as i64), ..Default::default() },
            "4294967295",
        ),
        ("uid-negative", LinuxContainerSecurityContext { run_as_user: int64(-1), ..Default::default() }, "-1"),
        (
            "gid-negative",
            LinuxContainerSecurityContext { run_as_user: int64(1002), run_as_group: int64(-5), ..Default::default() },
            "-5",
        ),
        (
            "supplemental-too-big",
            LinuxContainerSecurityContext {
                run_as_user: int64(1002),
                supplemental_groups: vec![1 << 33],
                ..Default::default()
            },
            "8589934592",
        ),
        (
            "unknown-name",
            LinuxContainerSecurityContext { run_as_username: "nobody-here".into(), ..Default::default() },
            "nobody-here",
        ),
    ];
    let refused: Vec<_> = refused
        .into_iter()
        .map(|(name, security, needle)| (user(&s, name, security), Code::InvalidArgument, needle))
        .collect();
    expect_refused(&mut s, refused).await;
    s.teardown().await;
}

#[tokio::test]
async fn capabilities_default_added_and_dropped() {
    let mut s = setup(31).await;
    let sleep = ["sleep", "1000"];
    let default = s.run(s.config("default", &sleep)).await;
    let with = |s: &Setup, name: &str, capabilities| {
        with_security(s.config(name, &sleep), LinuxContainerSecurityContext { capabilities, ..Default::default() })
    };
    let net_admin = s.run(with(&s, "net-admin", caps(&["NET_ADMIN"], &[]))).await;
    let no_raw = s.run(with(&s, "no-raw", caps(&[], &["CAP_NET_RAW"]))).await;
    let none = s.run(with(&s, "none", caps(&[], &["ALL"]))).await;
    let only_bind = s.run(with(&s, "only-bind", caps(&["NET_BIND_SERVICE"], &["ALL"]))).await;

    let default_caps = u64::from_str_radix(DEFAULT_CAPS, 16).unwrap();
    for (id, mask) in [
        (&default, default_caps),
        (&net_admin, default_caps | CAP_NET_ADMIN),
        (&no_raw, default_caps & !CAP_NET_RAW),
        (&none, 0),
        (&only_bind, CAP_NET_BIND_SERVICE),
    ] {
        // What an exec'd process has, and what the container's init has.
        let exec = s.exec_ok(id, &["cat", "/proc/self/status"]).await;
        let init = init_status(s.pid(id).await);
        for status in [&exec, &init] {
            for set in ["CapEff", "CapPrm", "CapBnd"] {
                assert_eq!(field(status, set), hex(mask), "{set} of {id}:\n{status}");
            }
            assert_eq!(field(status, "CapInh"), hex(0), "{status}");
            assert_eq!(field(status, "CapAmb"), hex(0), "{status}");
        }
    }

    // And they act: only NET_ADMIN may configure the pod's loopback, CHOWN is gone with ALL.
    let set_mtu = ["ip", "link", "set", "lo", "mtu", "65536"];
    s.exec_ok(&net_admin, &set_mtu).await;
    let (_, err) = s.exec_fails(&default, &set_mtu).await;
    assert_contains(&err, "Operation not permitted");
    s.exec_ok(&default, &["sh", "-c", "touch /tmp/f && chown 1:1 /tmp/f"]).await;
    let (_, err) = s.exec_fails(&none, &["sh", "-c", "touch /tmp/f && chown 1:1 /tmp/f"]).await;
    assert_contains(&err, "Operation not permitted");

    // Privileged containers need a privileged pod.
    let privileged = with_security(
        s.config("privileged", &sleep),
        LinuxContainerSecurityContext { privileged: true, ..Default::default() },
    );
    let refused = vec![
        (with(&s, "bogus", caps(&["NOT_A_CAP"], &[])), Code::InvalidArgument, "NOT_A_CAP"),
        (privileged, Code::InvalidArgument, "privileged"),
    ];
    expect_refused(&mut s, refused).await;
    s.teardown().await;
}

#[tokio::test]
async fn privileged_containers_have_everything() {
    let mut s = setup_with(32, Options { privileged_pod: true, ..Default::default() }).await;
    let sleep = ["sleep", "1000"];
    // Privileged is unconfined even when a profile is asked for, as in containerd.
    let privileged = s
        .run(with_security(
            s.config("privileged", &sleep),
            LinuxContainerSecurityContext {
                privileged: true,
                seccomp: profile(ProfileType::RuntimeDefault, ""),
                ..Default::default()
            },
        ))
        .await;
    let plain = s.run(s.config("plain", &sleep)).await;

    // All the capabilities crisp itself has, as containerd gives: every one the kernel knows
    // where crisp runs with a full bounding set, fewer where it does not (as here, nested).
    let all = field(&init_status(s.daemon.child.id()), "CapEff").to_owned();
    let status = s.exec_ok(&privileged, &["cat", "/proc/self/status"]).await;
    let init = init_status(s.pid(&privileged).await);
    for status in [&status, &init] {
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(status, set), all, "{set}:\n{status}");
        }
        assert_eq!(field(status, "CapInh"), hex(0));
        assert_eq!(field(status, "CapAmb"), hex(0));
        assert_eq!(field(status, "Seccomp"), "0");
    }
    // The plain container of a privileged pod is not privileged.
    assert_eq!(field(&s.exec_ok(&plain, &["cat", "/proc/self/status"]).await, "CapEff"), DEFAULT_CAPS);

    let mounts = s.exec_ok(&privileged, &["cat", "/proc/self/mounts"]).await;
    // Nothing masked or read-only: the host's /proc/timer_list, /sys/firmware and /proc/kcore
    // as they are.
    assert!(!fs::read_to_string("/proc/timer_list").unwrap().is_empty());
    let timer_list = s.exec_ok(&privileged, &["cat", "/proc/timer_list"]).await;
    assert_contains(&timer_list, "Timer List Version");
    assert_eq!(s.exec_ok(&plain, &["sh", "-c", "cat /proc/timer_list | wc -c"]).await.trim(), "0");
    let host_firmware = fs::read_dir("/sys/firmware").unwrap().count();
    let firmware = s.exec_ok(&privileged, &["ls", "-A", "/sys/firmware"]).await;
    assert_eq!(firmware.lines().count(), host_firmware, "/sys/firmware:\n{firmware}");
    if Path::new("/proc/kcore").exists() {
        // Its ELF header: readable with CAP_SYS_RAWIO, which privileged has.
        assert_eq!(s.exec_ok(&privileged, &["sh", "-c", "head -c 4 /proc/kcore | tail -c 3"]).await, "ELF");
    } else {
        // This kernel has none (no CONFIG_PROC_KCORE): nothing to read, masked or not.
        s.exec_fails(&privileged, &["test", "-e", "/proc/kcore"]).await;
    }
    assert!(!has_option(mount_options(&mounts, "/proc/sys"), "ro"), "/proc/sys not read-only:\n{mounts}");

    // The host's devices, which unprivileged containers do not get.
    let device = ["/dev/loop-control", "/dev/kmsg", "/dev/vda", "/dev/fuse"]
        .into_iter()
        .find(|d| Path::new(d).exists())
        .expect("the host has none of the devices this test looks for");
    s.exec_ok(&privileged, &["sh", "-c", &format!("test -c {device} || test -b {device}")]).await;
    s.exec_fails(&plain, &["test", "-e", device]).await;

    // sysfs and cgroups writable (checked by mount options: writing would change the host).
    assert!(has_option(mount_options(&mounts, "/sys"), "rw"), "/sys read-write:\n{mounts}");
    assert!(has_option(mount_options(&mounts, "/sys/fs/cgroup"), "rw"), "/sys/fs/cgroup read-write:\n{mounts}");
    let plain_mounts = s.exec_ok(&plain, &["cat", "/proc/self/mounts"]).await;
    assert!(has_option(mount_options(&plain_mounts, "/sys"), "ro"), "/sys read-only:\n{plain_mounts}");
    s.teardown().await;
}

#[tokio::test]
async fn readonly_rootfs_and_no_new_privs() {
    let mut s = setup(33).await;
    let sleep = ["sleep", "1000"];
    let tmp = s.lab.path("readonly-tmp");
    fs::create_dir(&tmp).unwrap();
    let mut with_tmp = with_security(
        s.config("readonly-with-tmp", &sleep),
        LinuxContainerSecurityContext { readonly_rootfs: true, ..Default::default() },
    );
    with_tmp.mounts =
        vec![Mount { container_path: "/tmp".into(), host_path: tmp.to_string_lossy().into(), ..Default::default() }];
    let with_tmp = s.run(with_tmp).await;
    let readonly = s
        .run(with_security(
            s.config("readonly", &sleep),
            LinuxContainerSecurityContext { readonly_rootfs: true, ..Default::default() },
        ))
        .await;

    for id in [&with_tmp, &readonly] {
        let (_, err) = s.exec_fails(id, &["touch", "/newfile"]).await;
        assert_contains(&err, "Read-only file system");
    }
    let (_, err) = s.exec_fails(&readonly, &["touch", "/tmp/x"]).await;
    assert_contains(&err, "Read-only file system");
    s.exec_ok(&with_tmp, &["sh", "-c", "echo written > /tmp/x"]).await;
    assert_eq!(fs::read_to_string(tmp.join("x")).unwrap(), "written\n");
    // The pod's /dev/shm stays writable.
    s.exec_ok(&readonly, &["touch", "/dev/shm/x"]).await;

    let nnp = s
        .run(with_security(
            s.config("no-new-privs", &sleep),
            LinuxContainerSecurityContext { no_new_privs: true, ..Default::default() },
        ))
        .await;
    let exec = s.exec_ok(&nnp, &["cat", "/proc/self/status"]).await;
    assert_eq!(field(&exec, "NoNewPrivs"), "1");
    assert_eq!(field(&init_status(s.pid(&nnp).await), "NoNewPrivs"), "1");
    let exec = s.exec_ok(&readonly, &["cat", "/proc/self/status"]).await;
    assert_eq!(field(&exec, "NoNewPrivs"), "0");
    assert_eq!(field(&init_status(s.pid(&readonly).await), "NoNewPrivs"), "0");
    s.teardown().await;
}

#[tokio::test]
async fn seccomp_profiles() {
    let mut s = setup(34).await;
    let sleep = ["sleep", "1000"];
    let sys_admin = |s: &Setup, name: &str, seccomp| {
        with_security(
            s.config(name, &sleep),
            LinuxContainerSecurityContext { capabilities: caps(&["SYS_ADMIN"], &[]), seccomp, ..Default::default() },
        )
    };
    let default = s.run(sys_admin(&s, "runtime-default", profile(ProfileType::RuntimeDefault, ""))).await;
    let unconfined = s.run(sys_admin(&s, "unconfined", profile(ProfileType::Unconfined, ""))).await;
    let file = s.lab.path("no-mkdir.json");
    fs::write(
        &file,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let local = with_security(
        s.config("localhost", &sleep),
        LinuxContainerSecurityContext {
            seccomp: profile(ProfileType::Localhost, file.to_str().unwrap()),
            ..Default::default()
        },
    );
    let local = s.run(local).await;

    // Filters are in place (mode 2) for the init and for exec'd processes, and not unconfined.
    for id in [&default, &local] {
        assert_eq!(field(&s.exec_ok(id, &["cat", "/proc/self/status"]).await, "Seccomp"), "2");
        assert_eq!(field(&init_status(s.pid(id).await), "Seccomp"), "2");
    }
    assert_eq!(field(&s.exec_ok(&unconfined, &["cat", "/proc/self/status"]).await, "Seccomp"), "0");
    assert_eq!(field(&init_status(s.pid(&unconfined).await), "Seccomp"), "0");

    // RuntimeDefault refuses sethostname even with SYS_ADMIN.
    let (_, err) = s.exec_fails(&default, &["hostname", "foo"]).await;
    assert_contains(&err, "Operation not permitted");
    assert_eq!(s.exec_ok(&default, &["hostname"]).await, "ctr-pod\n");

    // Unconfined allows it, in the pod's UTS namespace: checked to be another than this
    // process's before anything is renamed.
    let host_uts = fs::read_link("/proc/self/ns/uts").unwrap();
    let pod_uts = s.exec_ok(&unconfined, &["readlink", "/proc/self/ns/uts"]).await;
    assert_ne!(Path::new(pod_uts.trim()), host_uts, "the container shares the test's UTS namespace");
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    s.exec_ok(&unconfined, &["hostname", "renamed-pod"]).await;
    assert_eq!(s.exec_ok(&unconfined, &["hostname"]).await, "renamed-pod\n");
    assert_eq!(s.exec_ok(&default, &["hostname"]).await, "renamed-pod\n", "one UTS namespace per pod");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name);

    // The Localhost profile: mkdir refused, the rest allowed.
    let (_, err) = s.exec_fails(&local, &["mkdir", "/tmp/x"]).await;
    assert_contains(&err, "Operation not permitted");
    s.exec_ok(&local, &["touch", "/tmp/y"]).await;
    s.exec_ok(&unconfined, &["mkdir", "/tmp/x"]).await;

    let missing = s.lab.path("missing-profile.json");
    let config = with_security(
        s.config("missing-profile", &sleep),
        LinuxContainerSecurityContext {
            seccomp: profile(ProfileType::Localhost, missing.to_str().unwrap()),
            ..Default::default()
        },
    );
    expect_refused(&mut s, vec![(config, Code::InvalidArgument, missing.to_str().unwrap())]).await;
    s.teardown().await;
}

#[tokio::test]
async fn masked_and_readonly_paths() {
    let mut s = setup(35).await;
    let sleep = ["sleep", "1000"];
    let default = s.run(s.config("default", &sleep)).await;
    let custom = s
        .run(with_security(
            s.config("custom", &sleep),
            LinuxContainerSecurityContext {
                masked_paths: vec!["/proc/version".into()],
                readonly_paths: vec!["/etc".into()],
                ..Default::default()
            },
        ))
        .await;

    // Defaults: /proc/timer_list and /sys/firmware hidden (the host has both, not empty),
    // /proc/kcore too where the kernel has one; /proc/sys read-only.
    assert!(!fs::read_to_string("/proc/timer_list").unwrap().is_empty());
    assert!(fs::read_dir("/sys/firmware").unwrap().count() > 0);
    assert_eq!(s.exec_ok(&default, &["sh", "-c", "cat /proc/timer_list | wc -c"]).await.trim(), "0");
    assert_eq!(s.exec_ok(&default, &["ls", "-A", "/sys/firmware"]).await, "");
    let kcore = s.exec(&default, &["sh", "-c", "cat /proc/kcore | wc -c"], 10).await.unwrap();
    if Path::new("/proc/kcore").exists() {
        assert_eq!((kcore.0, kcore.1.trim()), (0, "0"), "/proc/kcore masked: {kcore:?}");
    } else {
        assert_contains(&kcore.2, "No such file");
    }
    let mounts = s.exec_ok(&default, &["cat", "/proc/self/mounts"]).await;
    assert!(has_option(mount_options(&mounts, "/proc/sys"), "ro"), "/proc/sys read-only:\n{mounts}");
    assert_contains(&s.exec_ok(&default, &["cat", "/proc/version"]).await, "Linux version");
    s.exec_ok(&default, &["touch", "/etc/x"]).await;

    // The CRI's lists replace the defaults.
    assert_eq!(s.exec_ok(&custom, &["sh", "-c", "cat /proc/version | wc -c"]).await.trim(), "0");
    assert_contains(&s.exec_ok(&custom, &["cat", "/proc/timer_list"]).await, "Timer List Version");
    let (_, err) = s.exec_fails(&custom, &["touch", "/etc/x"]).await;
    assert_contains(&err, "Read-only file system");
    s.exec_ok(&custom, &["touch", "/tmp/x"]).await;
    let mounts = s.exec_ok(&custom, &["cat", "/proc/self/mounts"]).await;
    assert_eq!(mount_options(&mounts, "/proc/sys"), None, "/proc/sys left alone:\n{mounts}");
    s.teardown().await;
}

/// Runs a shell command in the mount namespace of `pid` (the lab daemon's own).
fn in_mount_namespace(pid: u32, script: &str) {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--", "sh", "-c", script])
        .output()
        .expect("running nsenter (util-linux)");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn bind_mounts_and_propagation() {
    // Mount changes happen in the daemon's own mount namespace, never the host's; they end
    // with its processes whatever happens to the test.
    let mut s = setup_with(36, Options { own_mount_namespace: true, ..Default::default() }).await;
    let daemon = s.daemon.child.id();
    let dir = |name: &str| {
        let path = s.lab.path(name);
        fs::create_dir_all(&path).unwrap();
        path
    };
    let (rw, ro, shared, private) = (dir("bind-rw"), dir("bind-ro"), dir("bind-shared"), dir("bind-private"));
    fs::write(rw.join("from-host"), "host\n").unwrap();
    fs::write(ro.join("file"), "ro\n").unwrap();
    fs::create_dir(shared.join("sub")).unwrap();
    let shared_text = shared.to_str().unwrap().to_owned();
    in_mount_namespace(
        daemon,
        &format!("mount --bind {shared_text} {shared_text} && mount --make-rshared {shared_text}"),
    );

    let bind = |container: &str, host: &Path, readonly: bool, propagation: MountPropagation| Mount {
        container_path: container.into(),
        host_path: host.to_string_lossy().into(),
        readonly,
        propagation: propagation as i32,
        ..Default::default()
    };
    let mut config = s.config("binds", &["sleep", "1000"]);
    config.mounts = vec![
        bind("/mnt/rw", &rw, false, MountPropagation::PropagationPrivate),
        bind("/mnt/ro", &ro, true, MountPropagation::PropagationPrivate),
        bind("/mnt/h2c", &shared, false, MountPropagation::PropagationHostToContainer),
        bind("/mnt/private", &shared, false, MountPropagation::PropagationPrivate),
    ];
    let id = s.run(config).await;

    assert_eq!(s.exec_ok(&id, &["cat", "/mnt/rw/from-host"]).await, "host\n");
    s.exec_ok(&id, &["sh", "-c", "echo container > /mnt/rw/from-container"]).await;
    assert_eq!(fs::read_to_string(rw.join("from-container")).unwrap(), "container\n");
    assert_eq!(s.exec_ok(&id, &["cat", "/mnt/ro/file"]).await, "ro\n");
    let (_, err) = s.exec_fails(&id, &["touch", "/mnt/ro/x"]).await;
    assert_contains(&err, "Read-only file system");
    assert!(!ro.join("x").exists());

    // A mount made on the host side after the start reaches the host-to-container bind only.
    in_mount_namespace(
        daemon,
        &format!("mount -t tmpfs -o size=1m crisp-e2e {shared_text}/sub && echo propagated > {shared_text}/sub/marker"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.exec(&id, &["cat", "/mnt/h2c/sub/marker"], 10).await.unwrap() {
            (0, out, _) => {
                assert_eq!(out, "propagated\n");
                break;
            }
            (_, _, err) => assert!(Instant::now() < deadline, "the mount did not propagate: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, err) = s.exec_fails(&id, &["cat", "/mnt/private/sub/marker"]).await;
    assert_contains(&err, "No such file");

    // Host-to-container needs a shared or slave host mount; the namespace's others are private.
    let mut refused = s.config("h2c-private", &["sleep", "1000"]);
    refused.mounts = vec![bind("/mnt/h2c", &private, false, MountPropagation::PropagationHostToContainer)];
    let mut missing = s.config("missing-source", &["sleep", "1000"]);
    missing.mounts = vec![bind("/mnt/x", &s.lab.path("not-there"), false, MountPropagation::PropagationPrivate)];
    // A recursive read-only mount against the CRI's rules is refused for that, before the
    // runtime's support for rro or the host mount's propagation is looked at.
    let recursive = |name: &str, host: &Path, readonly: bool, propagation: MountPropagation| {
        let mut config = s.config(name, &["sleep", "1000"]);
        config.mounts = vec![Mount { recursive_read_only: true, ..bind("/mnt/rro", host, readonly, propagation) }];
        config
    };
    let rro_h2c = recursive("rro-h2c", &shared, true, MountPropagation::PropagationHostToContainer);
    let rro_bidirectional = recursive("rro-bidirectional", &private, true, MountPropagation::PropagationBidirectional);
    let rro_writable = recursive("rro-writable", &ro, false, MountPropagation::PropagationPrivate);
    let rro_source = s.lab.path("bind-rro");
    let rro = recursive("rro", &rro_source, true, MountPropagation::PropagationPrivate);
    let refused = vec![
        (refused, Code::InvalidArgument, "neither a shared nor a slave"),
        (missing, Code::InvalidArgument, "not-there"),
        (rro_h2c, Code::InvalidArgument, "needs private propagation"),
        (rro_bidirectional, Code::InvalidArgument, "needs private propagation"),
        (rro_writable, Code::InvalidArgument, "must also be readonly"),
    ];
    expect_refused(&mut s, refused).await;

    // A recursive read-only mount also covers what is mounted below its source, where Status says
    // the default handler can make one; elsewhere it is refused.
    fs::create_dir_all(rro_source.join("sub")).unwrap();
    let rro_text = rro_source.to_str().unwrap().to_owned();
    in_mount_namespace(daemon, &format!("mount -t tmpfs -o size=1m crisp-e2e {rro_text}/sub"));
    let status = s.client.runtime.status(StatusRequest::default()).await.unwrap().into_inner();
    let default = status.runtime_handlers.iter().find(|h| h.name.is_empty()).expect("the default handler is listed");
    if default.features.as_ref().is_some_and(|f| f.recursive_read_only_mounts) {
        let id = s.run(rro).await;
        let (_, err) = s.exec_fails(&id, &["touch", "/mnt/rro/sub/x"]).await;
        assert_contains(&err, "Read-only file system");
    } else {
        expect_refused(&mut s, vec![(rro, Code::InvalidArgument, "does not support recursive read-only mounts")]).await;
    }
    in_mount_namespace(daemon, &format!("umount {rro_text}/sub"));

    in_mount_namespace(daemon, &format!("umount -R {shared_text}"));
    s.teardown().await;
}

#[tokio::test]
async fn environment_and_working_dir() {
    let mut s = setup(37).await;
    let layered = s.pull(LabImage::MultiLayer).await;
    let sleep = ["sleep", "1000"];
    let on_layered = |s: &Setup, name: &str, working_dir: &str| {
        let mut config = s.config(name, &sleep);
        config.image.as_mut().unwrap().image = layered.clone();
        config.working_dir = working_dir.into();
        config
    };

    let mut config = on_layered(&s, "env", "/tmp");
    config.envs = vec![
        KeyValue { key: "PATH".into(), value: "/custom/bin:/bin".into() },
        KeyValue { key: "FOO".into(), value: "bar baz".into() },
    ];
    let env = s.run(config).await;
    let image_dir = s.run(on_layered(&s, "image-dir", "")).await;

    // The init's own environment: the CRI's PATH over the image's, once.
    let environ = fs::read(format!("/proc/{}/environ", s.pid(&env).await)).unwrap();
    let environ: Vec<String> =
        environ.split(|&b| b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    for expected in ["PATH=/custom/bin:/bin", "FOO=bar baz", "HOSTNAME=ctr-pod", "HOME=/root"] {
        assert!(environ.iter().any(|v| v == expected), "{expected} in {environ:?}");
    }
    assert_eq!(environ.iter().filter(|v| v.starts_with("PATH=")).count(), 1, "{environ:?}");
    let image_env = fs::read(format!("/proc/{}/environ", s.pid(&image_dir).await)).unwrap();
    assert!(
        String::from_utf8_lossy(&image_env).split('\0').any(|v| v.starts_with("PATH=/usr/local/sbin:")),
        "the image's PATH without an override"
    );
    assert_eq!(s.exec_ok(&env, &["sh", "-c", "echo $FOO; echo $PATH"]).await, "bar baz\n/custom/bin:/bin\n");

    assert_eq!(s.exec_ok(&env, &["pwd"]).await, "/tmp\n", "the CRI's working dir over the image's");
    assert_eq!(s.exec_ok(&image_dir, &["pwd"]).await, "/data\n", "the image's working dir");
    let root = s.run(s.config("root-dir", &sleep)).await;
    assert_eq!(s.exec_ok(&root, &["pwd"]).await, "/\n", "no working dir anywhere: /");

    let refused = vec![
        (on_layered(&s, "relative", "tmp"), Code::InvalidArgument, "\"tmp\""),
        (on_layered(&s, "file", "/etc/passwd"), Code::InvalidArgument, "/etc/passwd"),
    ];
    expect_refused(&mut s, refused).await;
    s.teardown().await;
}
