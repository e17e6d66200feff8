use std::fs;
use std::os::unix::fs::symlink;

use serde_json::Value;

use super::*;
use crate::spec::Propagation;

struct Fixture {
    dir: tempfile::TempDir,
    input: ContainerSpecInput,
}

fn host() -> HostFeatures {
    HostFeatures {
        cgroup_v2: false,
        swap_limit: true,
        hugetlb: false,
        apparmor: false,
        capabilities: (1 << 41) - 1,
        kernel: (6, 1),
    }
}

/// A rootfs with a passwd and group, pod files, and an input running `sh` in it.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
        .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\nstaff:x:50:app\n").unwrap();
    let pod = dir.path().join("pod");
    fs::create_dir_all(pod.join("shm")).unwrap();
    for file in ["hostname", "hosts", "resolv.conf"] {
        fs::write(pod.join(file), "").unwrap();
    }
    let input = ContainerSpecInput {
        rootfs,
        process: ProcessInput {
            image_cmd: vec!["sh".into()],
            image_env: vec!["PATH=/image/bin".into(), "LANG=C".into()],
            hostname: "pod-host".into(),
            ..Default::default()
        },
        user: UserRequest::default(),
        image_user: String::new(),
        security: SecurityInput {
            privileged: false,
            sandbox_privileged: false,
            capabilities: CapabilityChanges::default(),
            readonly_rootfs: false,
            no_new_privs: false,
            masked_paths: None,
            readonly_paths: None,
            seccomp: SeccompProfile::RuntimeDefault,
            apparmor: AppArmorProfile::RuntimeDefault,
        },
        mounts: Vec::new(),
        pod_files: PodFiles {
            hostname: Some(pod.join("hostname")),
            hosts: Some(pod.join("hosts")),
            resolv_conf: Some(pod.join("resolv.conf")),
            shm: Some(pod.join("shm")),
        },
        devices: Vec::new(),
        image_volumes: Vec::new(),
        volumes_dir: dir.path().join("volumes"),
        namespaces: Namespaces {
            network: SharedNamespace::Pod("/proc/42/ns/net".into()),
            ipc: SharedNamespace::Pod("/proc/42/ns/ipc".into()),
            uts: SharedNamespace::Pod("/proc/42/ns/uts".into()),
            pid: PidNamespace::Pod("/proc/42/ns/pid".into()),
        },
        resources: Resources::default(),
        cgroups_path: "/crisp/pod/ctr".into(),
        host: host(),
        oom: OomScoreAdjPolicy::detect(false).unwrap(),
        runtime_supports_rro: false,
    };
    Fixture { dir, input }
}

fn build(input: &ContainerSpecInput) -> Value {
    serde_json::to_value(container_spec(input).unwrap().spec).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

fn mount<'a>(spec: &'a Value, destination: &str) -> Option<&'a Value> {
    spec["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == destination)
}

#[test]
fn command_and_args_follow_kubernetes() {
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 6] = [
        // command, args, entrypoint, cmd => argv
        (&[], &[], &["/ep"], &["c1"], &["/ep", "c1"]),
        (&[], &["a1"], &["/ep"], &["c1"], &["/ep", "a1"]),
        (&["/cmd"], &[], &["/ep"], &["c1"], &["/cmd"]),
        (&["/cmd"], &["a1"], &["/ep"], &["c1"], &["/cmd", "a1"]),
        (&[], &[], &[""], &["c1"], &["c1"]),
        (&[], &[], &[], &["c1", "c2"], &["c1", "c2"]),
    ];
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (command, args_, entrypoint, cmd, want) in cases {
        let process = ProcessInput {
            command: v(command),
            args: v(args_),
            image_entrypoint: v(entrypoint),
            image_cmd: v(cmd),
            ..Default::default()
        };
        assert_eq!(args(&process).unwrap(), v(want), "{command:?} {args_:?} {entrypoint:?} {cmd:?}");
    }
    assert!(matches!(args(&ProcessInput::default()), Err(SpecError::NoCommand)));
}

#[test]
fn environment_is_merged_with_the_image_first() {
    let mut f = fixture();
    f.input.process.env = vec![("LANG".into(), "en_US.UTF-8".into()), ("EXTRA".into(), "a=b".into())];
    let spec = build(&f.input);
    assert_eq!(
        strings(&spec["process"]["env"]),
        ["PATH=/image/bin", "HOSTNAME=pod-host", "LANG=en_US.UTF-8", "EXTRA=a=b", "HOME=/root"]
    );

    // HOME from the user's passwd entry, unless the env has one; an image entry without `=`
    // unsets.
    f.input.image_user = "app".into();
    f.input.process.image_env.push("HOSTNAME".into());
    let spec = build(&f.input);
    let env = strings(&spec["process"]["env"]);
    assert!(env.contains(&"HOME=/home/app".to_owned()) && !env.iter().any(|e| e.starts_with("HOSTNAME")), "{env:?}");
    f.input.process.env.push(("HOME".into(), "/custom".into()));
    let env = strings(&build(&f.input)["process"]["env"]);
    assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).collect::<Vec<_>>(), ["HOME=/custom"]);

    for (key, value) in [("", "x"), ("A=B", "x"), ("NUL", "a\0b"), ("A\nB", "x")] {
        f.input.process.env = vec![(key.into(), value.into())];
        assert!(matches!(container_spec(&f.input), Err(SpecError::InvalidEnv(_))), "{key:?}");
    }
    // One `KEY=value` and its NUL fill the kernel's 128 KiB for one string, and no more.
    f.input.process.env = vec![("BIG".into(), "x".repeat(131072 - 5))];
    assert!(container_spec(&f.input).is_ok());
    f.input.process.env = vec![("BIG".into(), "x".repeat(131072 - 4))];
    assert!(matches!(container_spec(&f.input), Err(SpecError::EnvTooLong { bytes: 131072, .. })));
}

#[test]
fn working_dir_must_be_an_absolute_directory() {
    let mut f = fixture();
    assert_eq!(build(&f.input)["process"]["cwd"], "/");
    f.input.process.image_working_dir = Some("/srv".into());
    assert_eq!(build(&f.input)["process"]["cwd"], "/srv");
    f.input.process.working_dir = Some("/work".into());
    assert_eq!(build(&f.input)["process"]["cwd"], "/work");
    f.input.process.working_dir = Some("relative".into());
    assert!(matches!(container_spec(&f.input), Err(SpecError::RelativeWorkingDir(_))));
    f.input.process.working_dir = Some("/etc/passwd".into());
    assert!(matches!(container_spec(&f.input), Err(SpecError::WorkingDirNotDirectory(_))));
    for dir in ["/proc", "/proc/self/fd/7", "/etc/../proc/self/cwd", "/../../proc/1/root"] {
        f.input.process.working_dir = Some(dir.into());
        assert!(matches!(container_spec(&f.input), Err(SpecError::WorkingDirInProc(_))), "{dir}");
    }
    f.input.process.working_dir = Some("/procedures".into());
    assert!(container_spec(&f.input).is_ok(), "only /proc itself and below");
}

#[test]
fn terminal_rlimits_and_identity() {
    let mut f = fixture();
    f.input.process.tty = true;
    f.input.process.rlimits =
        vec![serde_json::from_value(serde_json::json!({"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512})).unwrap()];
    f.input.user = UserRequest { run_as_user: Some(1000), supplemental_groups: vec![1234], ..Default::default() };
    let built = container_spec(&f.input).unwrap();
    assert_eq!(built.user, ResolvedUser { uid: 1000, gid: 1000, additional_gids: vec![50, 1000, 1234] });
    let spec = serde_json::to_value(&built.spec).unwrap();
    assert_eq!(spec["process"]["terminal"], true);
    assert_eq!(spec["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(
        spec["process"]["user"],
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [50, 1000, 1234]})
    );

    f.input.user = UserRequest { run_as_group: Some(5), ..Default::default() };
    assert!(matches!(container_spec(&f.input), Err(SpecError::RunAsGroupWithoutUser)));
    f.input.user = UserRequest { run_as_user: Some(-1), ..Default::default() };
    assert!(matches!(container_spec(&f.input), Err(SpecError::User(UserError::IdOutOfRange { .. }))));
}

fn caps(spec: &Value, set: &str) -> HashSet<String> {
    strings(&spec["process"]["capabilities"][set]).into_iter().collect()
}

#[test]
fn capabilities_add_and_drop() {
    let mut f = fixture();
    let defaults = caps(&build(&f.input), "bounding");
    assert_eq!(defaults.len(), 14);
    assert!(defaults.contains("CAP_CHOWN") && !defaults.contains("CAP_SYS_ADMIN"));

    f.input.security.capabilities =
        CapabilityChanges { add: vec!["sys_admin".into(), "CAP_NET_ADMIN".into()], drop: vec!["CHOWN".into()] };
    let spec = build(&f.input);
    let bounding = caps(&spec, "bounding");
    assert!(
        bounding.contains("CAP_SYS_ADMIN") && bounding.contains("CAP_NET_ADMIN") && !bounding.contains("CAP_CHOWN")
    );
    assert_eq!(bounding, caps(&spec, "effective"));
    assert_eq!(bounding, caps(&spec, "permitted"));
    assert!(caps(&spec, "inheritable").is_empty() && caps(&spec, "ambient").is_empty());

    f.input.security.capabilities = CapabilityChanges { add: vec!["ALL".into()], drop: vec!["CHOWN".into()] };
    let all_but_chown = caps(&build(&f.input), "bounding");
    assert_eq!(all_but_chown.len(), 40);
    assert!(!all_but_chown.contains("CAP_CHOWN"));

    f.input.security.capabilities = CapabilityChanges { add: vec!["NET_RAW".into()], drop: vec!["all".into()] };
    assert_eq!(caps(&build(&f.input), "bounding"), HashSet::from(["CAP_NET_RAW".to_owned()]));

    f.input.security.capabilities = CapabilityChanges { add: vec![], drop: vec!["ALL".into()] };
    assert!(caps(&build(&f.input), "bounding").is_empty());

    // "All" is what the daemon has: here all but CAP_SYS_RESOURCE, on an older kernel.
    f.input.host.capabilities = ((1 << 38) - 1) & !(1 << 24);
    f.input.security.capabilities = CapabilityChanges { add: vec!["ALL".into()], drop: vec![] };
    let all = caps(&build(&f.input), "bounding");
    assert_eq!(all.len(), 37);
    assert!(!all.contains("CAP_SYS_RESOURCE") && !all.contains("CAP_PERFMON"));

    f.input.security.capabilities = CapabilityChanges { add: vec!["NOT_A_CAP".into()], drop: vec![] };
    assert!(matches!(container_spec(&f.input), Err(SpecError::UnknownCapability(_))));
}

#[test]
fn privileged_containers() {
    let mut f = fixture();
    f.input.security.privileged = true;
    assert!(matches!(container_spec(&f.input), Err(SpecError::PrivilegedInUnprivilegedPod)));
    f.input.security.sandbox_privileged = true;
    f.input.security.masked_paths = Some(vec!["/proc/kcore".into()]);
    f.input.security.seccomp = SeccompProfile::Localhost(f.dir.path().join("missing.json"));
    f.input.host.cgroup_v2 = true;
    let spec = build(&f.input);
    assert_eq!(caps(&spec, "bounding").len(), 41);
    assert!(spec["linux"].get("maskedPaths").is_none() && spec["linux"].get("readonlyPaths").is_none());
    assert!(spec["linux"].get("seccomp").is_none());
    for dst in ["/sys", "/sys/fs/cgroup"] {
        let options = strings(&mount(&spec, dst).unwrap()["options"]);
        assert!(options.contains(&"rw".to_owned()) && !options.contains(&"ro".to_owned()), "{dst}: {options:?}");
    }
    let devices = spec["linux"]["devices"].as_array().unwrap();
    assert!(devices.iter().any(|d| d["path"] == "/dev/null"));
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules[0], serde_json::json!({"allow": false, "access": "rwm"}));
    assert_eq!(rules.len(), devices.len() + 1);
    // No cgroup namespace for privileged containers, even on cgroup v2.
    assert!(!spec["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "cgroup"));

    // A daemon whose bounding set lacks CAP_SYS_RESOURCE cannot give it: runc would refuse to
    // start the container.
    f.input.host.capabilities = ((1 << 41) - 1) & !(1 << 24);
    let limited = caps(&build(&f.input), "bounding");
    assert_eq!(limited.len(), 40);
    assert!(!limited.contains("CAP_SYS_RESOURCE"));
}

#[test]
fn unprivileged_security_settings() {
    let mut f = fixture();
    let spec = build(&f.input);
    assert!(strings(&spec["linux"]["maskedPaths"]).contains(&"/proc/kcore".to_owned()));
    assert!(strings(&spec["linux"]["readonlyPaths"]).contains(&"/proc/sys".to_owned()));
    assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(spec["root"]["readonly"], false);
    assert_eq!(spec["process"]["noNewPrivileges"], false);
    assert!(spec["process"].get("apparmorProfile").is_none());
    assert!(strings(&mount(&spec, "/sys").unwrap()["options"]).contains(&"ro".to_owned()));

    f.input.security.masked_paths = Some(vec![]);
    f.input.security.readonly_paths = Some(vec!["/tmp".into()]);
    f.input.security.readonly_rootfs = true;
    f.input.security.no_new_privs = true;
    f.input.security.seccomp = SeccompProfile::Unconfined;
    let spec = build(&f.input);
    assert_eq!(spec["linux"]["maskedPaths"], serde_json::json!([]));
    assert_eq!(strings(&spec["linux"]["readonlyPaths"]), ["/tmp"]);
    assert_eq!(spec["root"]["readonly"], true);
    assert_eq!(spec["process"]["noNewPrivileges"], true);
    assert!(spec["linux"].get("seccomp").is_none());

    f.input.security.seccomp = SeccompProfile::Localhost(f.dir.path().join("missing.json"));
    assert!(matches!(container_spec(&f.input), Err(SpecError::Seccomp(_))));
}

#[test]
fn apparmor_only_where_the_host_has_it() {
    let mut f = fixture();
    f.input.security.apparmor = AppArmorProfile::Localhost("my-profile".into());
    assert!(build(&f.input)["process"].get("apparmorProfile").is_none());
    f.input.host.apparmor = true;
    assert_eq!(build(&f.input)["process"]["apparmorProfile"], "my-profile");
    f.input.security.apparmor = AppArmorProfile::Unconfined;
    assert!(build(&f.input)["process"].get("apparmorProfile").is_none());
}

#[test]
fn pod_files_and_binds() {
    let mut f = fixture();
    let data = f.dir.path().join("data");
    fs::create_dir_all(data.join("deep")).unwrap();
    let spec = build(&f.input);
    for (dst, file) in [
        ("/etc/hostname", "hostname"),
        ("/etc/hosts", "hosts"),
        ("/etc/resolv.conf", "resolv.conf"),
        ("/dev/shm", "shm"),
    ] {
        let m = mount(&spec, dst).unwrap();
        assert_eq!(m["source"], f.dir.path().join("pod").join(file).to_str().unwrap());
        assert_eq!(strings(&m["options"]), ["rbind", "rprivate", "rw"], "{dst}");
    }

    // Read-only containers get their pod files read-only; their shm stays writable.
    f.input.security.readonly_rootfs = true;
    f.input.mounts = vec![
        BindMount {
            container_path: "/data/deep".into(),
            host_path: data.join("deep"),
            readonly: false,
            recursive_readonly: false,
            propagation: Propagation::Private,
        },
        BindMount {
            container_path: "/data/".into(),
            host_path: data.clone(),
            readonly: true,
            recursive_readonly: false,
            propagation: Propagation::Private,
        },
        BindMount {
            container_path: "/etc/hosts".into(),
            host_path: data.clone(),
            readonly: false,
            recursive_readonly: false,
            propagation: Propagation::Private,
        },
    ];
    let spec = build(&f.input);
    assert_eq!(strings(&mount(&spec, "/etc/hostname").unwrap()["options"]), ["rbind", "rprivate", "ro"]);
    assert_eq!(strings(&mount(&spec, "/dev/shm").unwrap()["options"]), ["rbind", "rprivate", "rw"]);
    assert_eq!(mount(&spec, "/etc/hosts").unwrap()["source"], data.to_str().unwrap());
    assert_eq!(spec["mounts"].as_array().unwrap().iter().filter(|m| m["destination"] == "/etc/hosts").count(), 1);
    assert_eq!(strings(&mount(&spec, "/data").unwrap()["options"]), ["rbind", "rprivate", "ro"]);
    // Shallow mounts first.
    let order: Vec<_> = spec["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
    let pos = |d: &str| order.iter().position(|o| *o == d).unwrap();
    assert!(pos("/data") < pos("/data/deep"), "{order:?}");

    // Host IPC: the host's /dev/shm.
    f.input.namespaces.ipc = SharedNamespace::Node;
    assert_eq!(mount(&build(&f.input), "/dev/shm").unwrap()["source"], "/dev/shm");

    // A supplied /dev replaces the default /dev mounts below it.
    f.input.mounts = vec![BindMount {
        container_path: "/dev".into(),
        host_path: data.clone(),
        readonly: false,
        recursive_readonly: false,
        propagation: Propagation::Private,
    }];
    let spec = build(&f.input);
    let devs: Vec<_> = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"].as_str().unwrap().starts_with("/dev"))
        .map(|m| m["source"].clone())
        .collect();
    assert_eq!(devs.len(), 2, "{devs:?}"); // the bind and the shm over it
    assert!(spec["mounts"].as_array().unwrap().iter().all(|m| m["type"] != "devpts"));

    f.input.mounts = vec![BindMount {
        container_path: "/x".into(),
        host_path: f.dir.path().join("missing"),
        readonly: false,
        recursive_readonly: false,
        propagation: Propagation::Private,
    }];
    assert!(matches!(container_spec(&f.input), Err(SpecError::Mount(MountError::Source { .. }))));
    f.input.mounts = vec![BindMount {
        container_path: "x".into(),
        host_path: data.clone(),
        readonly: false,
        recursive_readonly: false,
        propagation: Propagation::Private,
    }];
    assert!(matches!(container_spec(&f.input), Err(SpecError::Mount(MountError::RelativeDestination(_)))));
}

#[test]
fn recursive_read_only_binds() {
    let mut f = fixture();
    let data = f.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let bind = |readonly, recursive_readonly, propagation| BindMount {
        container_path: "/data".into(),
        host_path: data.clone(),
        readonly,
        recursive_readonly,
        propagation,
    };
    f.input.mounts = vec![bind(true, true, Propagation::Private)];
    assert!(matches!(container_spec(&f.input), Err(SpecError::RecursiveReadOnlyUnsupported(_))));
    f.input.runtime_supports_rro = true;
    assert_eq!(strings(&mount(&build(&f.input), "/data").unwrap()["options"]), ["rbind", "rprivate", "rro"]);
    f.input.mounts = vec![bind(false, true, Propagation::Private)];
    assert!(matches!(container_spec(&f.input), Err(SpecError::Mount(MountError::RecursiveReadOnlyWritable(_)))));
}

#[test]
fn recursive_read_only_rules_come_before_host_and_runtime_support() {
    let mut f = fixture();
    let data = f.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let bind = |readonly, propagation| BindMount {
        container_path: "/data".into(),
        host_path: data.clone(),
        readonly,
        recursive_readonly: true,
        propagation,
    };
    // Whether the runtime has rro, and whether the host's mount of `data` propagates, the
    // request itself is what is wrong.
    for supported in [false, true] {
        f.input.runtime_supports_rro = supported;
        for propagation in [Propagation::HostToContainer, Propagation::Bidirectional] {
            f.input.mounts = vec![bind(true, propagation)];
            let e = container_spec(&f.input).err();
            assert!(matches!(e, Some(SpecError::Mount(MountError::RecursiveReadOnlyNotPrivate(_)))), "{e:?}");
            f.input.mounts = vec![bind(false, propagation)];
            let e = container_spec(&f.input).err();
            assert!(matches!(e, Some(SpecError::Mount(MountError::RecursiveReadOnlyWritable(_)))), "{e:?}");
        }
    }
}

#[test]
fn propagation_needs_a_matching_host_mount() {
    let mut f = fixture();
    // The host's / decides for a path on it; whatever it is, the spec agrees with mountinfo.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let data = fs::canonicalize(f.dir.path()).unwrap();
    let line = mountinfo
        .lines()
        .filter(|l| data.starts_with(l.split(' ').nth(4).unwrap()))
        .max_by_key(|l| l.split(' ').nth(4).unwrap().len())
        .unwrap();
    let shared = line.contains(" shared:");
    let slave = line.contains(" master:");
    f.input.mounts = vec![BindMount {
        container_path: "/data".into(),
        host_path: data.clone(),
        readonly: false,
        recursive_readonly: false,
        propagation: Propagation::Bidirectional,
    }];
    match container_spec(&f.input) {
        Ok(built) => {
            assert!(shared);
            let spec = serde_json::to_value(built.spec).unwrap();
            assert_eq!(spec["linux"]["rootfsPropagation"], "rshared");
            assert!(strings(&mount(&spec, "/data").unwrap()["options"]).contains(&"rshared".to_owned()));
        }
        Err(e) => assert!(!shared && matches!(e, SpecError::Mount(MountError::NotShared { .. })), "{e}"),
    }
    f.input.mounts[0].propagation = Propagation::HostToContainer;
    match container_spec(&f.input) {
        Ok(built) => {
            assert!(shared || slave);
            assert_eq!(serde_json::to_value(built.spec).unwrap()["linux"]["rootfsPropagation"], "rslave");
        }
        Err(e) => {
            assert!(!shared && !slave && matches!(e, SpecError::Mount(MountError::NotSharedOrSlave { .. })), "{e}")
        }
    }
}

#[test]
fn image_volumes_resolve_inside_the_rootfs() {
    let mut f = fixture();
    let rootfs = f.input.rootfs.clone();
    fs::create_dir_all(rootfs.join("var/lib/data")).unwrap();
    symlink("/var/lib", rootfs.join("lib")).unwrap();
    symlink("/", rootfs.join("escape")).unwrap();
    let data = f.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    f.input.image_volumes =
        vec!["/lib/data".into(), "/escape/../../cache".into(), "/covered".into(), "/var/lib/data/".into()];
    f.input.mounts = vec![BindMount {
        container_path: "/covered".into(),
        host_path: data,
        readonly: false,
        recursive_readonly: false,
        propagation: Propagation::Private,
    }];
    let built = container_spec(&f.input).unwrap();
    let volumes = f.dir.path().join("volumes");
    assert_eq!(
        built.volumes,
        [
            ImageVolume { container_path: "/cache".into(), host_path: volumes.join("0") },
            ImageVolume { container_path: "/var/lib/data".into(), host_path: volumes.join("1") },
        ]
    );
    let spec = serde_json::to_value(built.spec).unwrap();
    assert_eq!(mount(&spec, "/var/lib/data").unwrap()["source"], volumes.join("1").to_str().unwrap());
    assert_eq!(strings(&mount(&spec, "/cache").unwrap()["options"]), ["rbind", "rprivate", "rw"]);
}

#[test]
fn devices_are_added_with_rules() {
    let mut f = fixture();
    f.input.devices =
        vec![Device { host_path: "/dev/zero".into(), container_path: "/dev/myzero".into(), permissions: "r".into() }];
    let spec = build(&f.input);
    assert_eq!(spec["linux"]["devices"][0]["path"], "/dev/myzero");
    assert_eq!(
        spec["linux"]["resources"]["devices"][1],
        serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"})
    );
}

#[test]
fn namespaces_by_mode() {
    let mut f = fixture();
    let ns = |spec: &Value| -> Vec<(String, Option<String>)> {
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["type"].as_str().unwrap().to_owned(), n["path"].as_str().map(ToOwned::to_owned)))
            .collect()
    };
    let joined = |t: &str, p: &str| (t.to_owned(), Some(p.to_owned()));
    let new = |t: &str| (t.to_owned(), None);
    assert_eq!(
        ns(&build(&f.input)),
        [
            new("mount"),
            joined("network", "/proc/42/ns/net"),
            joined("ipc", "/proc/42/ns/ipc"),
            joined("uts", "/proc/42/ns/uts"),
            joined("pid", "/proc/42/ns/pid")
        ]
    );
    f.input.namespaces = Namespaces {
        network: SharedNamespace::Node,
        ipc: SharedNamespace::Node,
        uts: SharedNamespace::Node,
        pid: PidNamespace::Node,
    };
    assert_eq!(ns(&build(&f.input)), [new("mount")]);
    f.input.namespaces.pid = PidNamespace::Container;
    f.input.host.cgroup_v2 = true;
    assert_eq!(ns(&build(&f.input)), [new("mount"), new("pid"), new("cgroup")]);
    f.input.namespaces.pid = PidNamespace::Target("/proc/77/ns/pid".into());
    f.input.host.cgroup_v2 = false;
    assert_eq!(ns(&build(&f.input)), [new("mount"), joined("pid", "/proc/77/ns/pid")]);
    assert!(build(&f.input).get("hostname").is_none());
}

#[test]
fn resources_and_cgroups() {
    let mut f = fixture();
    f.input.resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        cpuset_cpus: Some("0".into()),
        cpuset_mems: Some("0".into()),
        memory_limit: Some(64 << 20),
        memory_swap_limit: None,
        hugepage_limits: vec![],
        pids_limit: Some(100),
        unified: BTreeMap::new(),
        oom_score_adj: -2000,
    };
    let spec = build(&f.input);
    let r = &spec["linux"]["resources"];
    assert_eq!(
        r["cpu"],
        serde_json::json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"})
    );
    assert_eq!(r["memory"], serde_json::json!({"limit": 64 << 20, "swap": 64 << 20}));
    assert_eq!(r["pids"]["limit"], 100);
    assert_eq!(r["devices"][0], serde_json::json!({"allow": false, "access": "rwm"}));
    assert_eq!(spec["linux"]["cgroupsPath"], "/crisp/pod/ctr");
    assert_eq!(spec["process"]["oomScoreAdj"], f.input.oom.clamp(-2000));

    f.input.resources.memory_swap_limit = Some(128 << 20);
    assert_eq!(build(&f.input)["linux"]["resources"]["memory"]["swap"], 128 << 20);
    f.input.host.swap_limit = false;
    assert!(build(&f.input)["linux"]["resources"]["memory"].get("swap").is_none());

    f.input.resources.hugepage_limits = vec![("2MB".into(), 1 << 21)];
    assert!(matches!(container_spec(&f.input), Err(SpecError::HugetlbUnavailable)));
    f.input.host.hugetlb = true;
    assert_eq!(
        build(&f.input)["linux"]["resources"]["hugepageLimits"],
        serde_json::json!([{"pageSize": "2MB", "limit": 1 << 21}])
    );

    f.input.resources.unified = BTreeMap::from([("memory.high".to_owned(), "1000000".to_owned())]);
    assert!(matches!(container_spec(&f.input), Err(SpecError::UnifiedWithoutCgroupV2)));
    f.input.host.cgroup_v2 = true;
    assert_eq!(build(&f.input)["linux"]["resources"]["unified"]["memory.high"], "1000000");
}
