//! The OCI spec of a pod's container, from plain data the caller gathers from the CRI's
//! `ContainerConfig`, the sandbox and the image config. Semantics follow containerd's CRI
//! plugin, which is what the kubelet and critest expect, unless a comment says otherwise.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, LinuxResources, PosixRlimit, Spec, User,
};
use serde_json::json;

use super::mounts::{self, BindInput, BindMount, Device, ImageVolume, MountError, PodFiles};
use super::rootfs::{Entry, Rootfs, RootfsError};
use super::seccomp::{self, SeccompError, SeccompProfile};
use super::user::{self, ResolvedUser, UserError, UserRequest};
use super::{DEFAULT_PATH, HostFeatures};
use crate::OomScoreAdjPolicy;

/// Everything a container's spec is made from.
#[derive(Debug, Clone)]
pub struct ContainerSpecInput {
    /// The container's root filesystem (mounted); users, groups and paths are looked up in it.
    pub rootfs: PathBuf,
    pub process: ProcessInput,
    pub user: UserRequest,
    /// The image config's `User` (`uid`, `name`, `uid:gid`, `name:group`, ...; empty: root).
    pub image_user: String,
    pub security: SecurityInput,
    /// The CRI's mounts.
    pub mounts: Vec<BindMount>,
    pub pod_files: PodFiles,
    pub devices: Vec<Device>,
    /// The image config's `Volumes` (container paths).
    pub image_volumes: Vec<String>,
    /// Where the image volumes' directories go (the caller makes them, see `ContainerSpec`).
    pub volumes_dir: PathBuf,
    pub namespaces: Namespaces,
    pub resources: Resources,
    /// `linux.cgroupsPath`, in the cgroup driver's form.
    pub cgroups_path: String,
    pub host: HostFeatures,
    pub oom: OomScoreAdjPolicy,
    /// The runtime handler supports `rro` (recursive read-only) bind mounts on this kernel.
    pub runtime_supports_rro: bool,
}

/// What runs, where, with which environment.
#[derive(Debug, Clone, Default)]
pub struct ProcessInput {
    /// The CRI's `command` (replaces the image's entrypoint) and `args` (replace its cmd).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub image_entrypoint: Vec<String>,
    pub image_cmd: Vec<String>,
    /// The CRI's envs, in order; they override the image's.
    pub env: Vec<(String, String)>,
    /// The image config's `Env` (`KEY=value`).
    pub image_env: Vec<String>,
    /// The CRI's working dir, else the image's, else `/`; must be absolute.
    pub working_dir: Option<PathBuf>,
    pub image_working_dir: Option<PathBuf>,
    /// The pod's hostname, given to the process as `HOSTNAME`.
    pub hostname: String,
    /// A terminal for the process (the CRI's `tty`). `stdin`/`stdin_once` are the monitor's.
    pub tty: bool,
    /// Empty: the runtime's defaults (runc sets none).
    pub rlimits: Vec<PosixRlimit>,
}

/// The CRI's Linux security context of the container.
#[derive(Debug, Clone)]
pub struct SecurityInput {
    pub privileged: bool,
    /// Whether the pod was created privileged: a privileged container needs it.
    pub sandbox_privileged: bool,
    pub capabilities: CapabilityChanges,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    /// `None`: the default masked paths; `Some(list)`: exactly those (empty: none).
    pub masked_paths: Option<Vec<String>>,
    /// `None`: the default read-only paths; `Some(list)`: exactly those (empty: none).
    pub readonly_paths: Option<Vec<String>>,
    pub seccomp: SeccompProfile,
    pub apparmor: AppArmorProfile,
}

/// The CRI's capability add and drop lists: names with or without `CAP_`, any case, or `ALL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityChanges {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// The AppArmor profile asked for; applied only where the host has AppArmor enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppArmorProfile {
    Unconfined,
    /// crisp loads no profile of its own yet: on an AppArmor host this runs unconfined.
    RuntimeDefault,
    /// A profile loaded on the host, by name.
    Localhost(String),
}

/// Which namespaces the container shares. Mount namespaces are always its own; a cgroup
/// namespace is its own on cgroup v2 (unless privileged), as containerd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    pub network: SharedNamespace,
    pub ipc: SharedNamespace,
    pub uts: SharedNamespace,
    pub pid: PidNamespace,
}

/// A namespace the pod owns, or the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedNamespace {
    /// The host's (the pod asked for NODE).
    Node,
    /// The pod's, joined by path (`/proc/<pause pid>/ns/net` etc.).
    Pod(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNamespace {
    /// The host's.
    Node,
    /// A new one: the container's process is its pid 1.
    Container,
    /// The pod's, joined by path (`/proc/<pause pid>/ns/pid`).
    Pod(PathBuf),
    /// Another container's, joined by path (`/proc/<target pid>/ns/pid`).
    Target(PathBuf),
}

/// The CRI's `LinuxContainerResources`; `None` (the CRI's 0) leaves a limit unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory_limit: Option<i64>,
    /// Memory plus swap; unset with a memory limit means no swap (the same value), where the
    /// host accounts swap.
    pub memory_swap_limit: Option<i64>,
    /// (page size as the kernel names it, e.g. `2MB`, limit in bytes).
    pub hugepage_limits: Vec<(String, u64)>,
    pub pids_limit: Option<i64>,
    /// cgroup v2 files and values; refused on cgroup v1.
    pub unified: BTreeMap<String, String>,
    /// Clamped to what the host allows.
    pub oom_score_adj: i32,
}

/// A container's spec and what the caller needs besides it.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub spec: Spec,
    /// For ContainerStatus; the spec's `process.user` holds the same.
    pub user: ResolvedUser,
    /// Directories the caller must create (empty, mode 0755) before the container is.
    pub volumes: Vec<ImageVolume>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified: neither the container config nor the image has one")]
    NoCommand,
    #[error("working directory {0:?} is not an absolute path")]
    RelativeWorkingDir(PathBuf),
    #[error("working directory {0:?} is not a directory in the image")]
    WorkingDirNotDirectory(PathBuf),
    #[error("invalid environment variable {0:?}")]
    InvalidEnv(String),
    #[error("environment variable {key:?} is {bytes} bytes with its name, over the kernel's limit of {MAX_ENV_ENTRY}")]
    EnvTooLong { key: String, bytes: usize },
    #[error("working directory {0:?} is in /proc: a process's cwd there reaches the runtime's open files")]
    WorkingDirInProc(PathBuf),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("privileged containers are not allowed in a pod that is not privileged")]
    PrivilegedInUnprivilegedPod,
    #[error("run_as_group is set without run_as_user or run_as_username")]
    RunAsGroupWithoutUser,
    #[error("{0}")]
    RecursiveReadOnlyUnsupported(MountError),
    #[error("unified cgroup resources need cgroup v2; this host runs cgroup v1")]
    UnifiedWithoutCgroupV2,
    #[error("hugepage limits are set but the hugetlb cgroup controller is missing")]
    HugetlbUnavailable,
    #[error(transparent)]
    User(UserError),
    #[error(transparent)]
    Mount(MountError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
}

impl From<UserError> for SpecError {
    fn from(e: UserError) -> SpecError {
        match e {
            UserError::RunAsGroupWithoutUser => SpecError::RunAsGroupWithoutUser,
            e => SpecError::User(e),
        }
    }
}

impl From<MountError> for SpecError {
    fn from(e: MountError) -> SpecError {
        match e {
            e @ MountError::RecursiveReadOnlyUnsupported(_) => SpecError::RecursiveReadOnlyUnsupported(e),
            e => SpecError::Mount(e),
        }
    }
}

/// Capability numbers, for "all capabilities this kernel has".
pub(super) const ALL_CAPABILITIES: [(u8, Capability); 41] = [
    (0, Capability::Chown),
    (1, Capability::DacOverride),
    (2, Capability::DacReadSearch),
    (3, Capability::Fowner),
    (4, Capability::Fsetid),
    (5, Capability::Kill),
    (6, Capability::Setgid),
    (7, Capability::Setuid),
    (8, Capability::Setpcap),
    (9, Capability::LinuxImmutable),
    (10, Capability::NetBindService),
    (11, Capability::NetBroadcast),
    (12, Capability::NetAdmin),
    (13, Capability::NetRaw),
    (14, Capability::IpcLock),
    (15, Capability::IpcOwner),
    (16, Capability::SysModule),
    (17, Capability::SysRawio),
    (18, Capability::SysChroot),
    (19, Capability::SysPtrace),
    (20, Capability::SysPacct),
    (21, Capability::SysAdmin),
    (22, Capability::SysBoot),
    (23, Capability::SysNice),
    (24, Capability::SysResource),
    (25, Capability::SysTime),
    (26, Capability::SysTtyConfig),
    (27, Capability::Mknod),
    (28, Capability::Lease),
    (29, Capability::AuditWrite),
    (30, Capability::AuditControl),
    (31, Capability::Setfcap),
    (32, Capability::MacOverride),
    (33, Capability::MacAdmin),
    (34, Capability::Syslog),
    (35, Capability::WakeAlarm),
    (36, Capability::BlockSuspend),
    (37, Capability::AuditRead),
    (38, Capability::Perfmon),
    (39, Capability::Bpf),
    (40, Capability::CheckpointRestore),
];

pub fn container_spec(input: &ContainerSpecInput) -> Result<ContainerSpec, SpecError> {
    let security = &input.security;
    if security.privileged && !security.sandbox_privileged {
        return Err(SpecError::PrivilegedInUnprivilegedPod);
    }
    let rootfs = Rootfs::open(&input.rootfs)?;
    let mut spec = super::base(&input.rootfs);

    let (user, home) = user::resolve(&input.user, &input.image_user, &rootfs)?;
    let cwd = working_dir(&input.process, &rootfs)?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args(&input.process)?));
    process.set_env(Some(environment(&input.process, &home)?));
    process.set_cwd(cwd);
    process.set_terminal(Some(input.process.tty));
    let mut oci_user = User::default();
    oci_user.set_uid(user.uid).set_gid(user.gid).set_additional_gids(Some(user.additional_gids.clone()));
    process.set_user(oci_user);
    if !input.process.rlimits.is_empty() {
        process.set_rlimits(Some(input.process.rlimits.clone()));
    }
    let caps = capabilities(&security.capabilities, security.privileged, input.host.capabilities)?;
    let mut process_caps = LinuxCapabilities::default();
    process_caps
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(Some(HashSet::new()))
        .set_ambient(Some(HashSet::new()));
    process.set_capabilities(Some(process_caps));
    process.set_no_new_privileges(Some(security.no_new_privs));
    process.set_oom_score_adj(Some(input.oom.clamp(input.resources.oom_score_adj)));
    if input.host.apparmor && !security.privileged {
        // Unconfined is the absence of a profile; see AppArmorProfile::RuntimeDefault.
        if let AppArmorProfile::Localhost(name) = &security.apparmor {
            process.set_apparmor_profile(Some(name.clone()));
        }
    }
    spec.set_process(Some(process));
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(security.readonly_rootfs));
    }

    let binds = mounts::binds(&BindInput {
        mounts: &input.mounts,
        pod_files: &input.pod_files,
        host_ipc: input.namespaces.ipc == SharedNamespace::Node,
        readonly_rootfs: security.readonly_rootfs,
        image_volumes: &input.image_volumes,
        volumes_dir: &input.volumes_dir,
        rootfs: &rootfs,
        runtime_supports_rro: input.runtime_supports_rro,
    })?;
    let supplied: Vec<PathBuf> = binds.mounts.iter().map(|m| m.destination().clone()).collect();
    let mut all_mounts: Vec<_> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        // A supplied mount replaces the default at its path; a supplied /dev everything below.
        .filter(|m| {
            let dst = m.destination();
            !supplied.iter().any(|s| s == dst || (s == Path::new("/dev") && dst.starts_with("/dev")))
        })
        .map(|mut m| {
            // Privileged containers may write to sysfs and their cgroups.
            let writable = matches!(m.typ().as_deref(), Some("sysfs" | "cgroup"));
            if security.privileged && writable {
                let options = m.options().clone().unwrap_or_default();
                m.set_options(Some(options.into_iter().map(|o| if o == "ro" { "rw".into() } else { o }).collect()));
            }
            m
        })
        .collect();
    all_mounts.extend(binds.mounts);
    spec.set_mounts(Some(all_mounts));

    let (mut devices, mut device_rules) = mounts::devices(&input.devices)?;
    if security.privileged {
        let (host_devices, host_rules) = mounts::host_devices()?;
        devices.extend(host_devices);
        device_rules.extend(host_rules);
    }

    let seccomp = if security.privileged { None } else { seccomp::seccomp(&security.seccomp, input.host.kernel)? };
    let namespaces = namespaces(&input.namespaces, input.host.cgroup_v2 && !security.privileged);
    let resources = resources(&input.resources, &input.host, device_rules)?;

    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(input.cgroups_path.clone().into()));
    linux.set_rootfs_propagation(binds.rootfs_propagation.map(ToOwned::to_owned));
    linux.set_seccomp(seccomp);
    if !devices.is_empty() {
        linux.set_devices(Some(devices));
    }
    let mut limits = linux.resources().clone().unwrap_or_default();
    merge_resources(&mut limits, resources);
    linux.set_resources(Some(limits));
    if security.privileged {
        linux.set_masked_paths(None).set_readonly_paths(None);
    } else {
        if let Some(paths) = &security.masked_paths {
            linux.set_masked_paths(Some(paths.clone()));
        }
        if let Some(paths) = &security.readonly_paths {
            linux.set_readonly_paths(Some(paths.clone()));
        }
    }
    Ok(ContainerSpec { spec, user, volumes: binds.volumes })
}

/// Kubernetes' rule: `command` replaces the entrypoint and drops the image's cmd unless
/// `args` are given; `args` alone replace the cmd and keep the entrypoint.
fn args(process: &ProcessInput) -> Result<Vec<String>, SpecError> {
    let mut argv = Vec::new();
    if process.command.is_empty() {
        // Docker writes `ENTRYPOINT [""]` for an image with its entrypoint reset.
        if process.image_entrypoint != [""] {
            argv.extend(process.image_entrypoint.iter().cloned());
        }
        if process.args.is_empty() {
            argv.extend(process.image_cmd.iter().cloned());
        }
    } else {
        argv.extend(process.command.iter().cloned());
    }
    argv.extend(process.args.iter().cloned());
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// PATH's default, HOSTNAME, the image's env, the CRI's env over it (by key), and HOME from
/// the user's passwd entry unless one of them set it.
fn environment(process: &ProcessInput, home: &str) -> Result<Vec<String>, SpecError> {
    // Keys in first-set order; `None` marks an unset one.
    let mut env: Vec<(String, Option<String>)> = Vec::new();
    fn put(env: &mut Vec<(String, Option<String>)>, key: &str, value: Option<&str>) {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.map(ToOwned::to_owned),
            None => env.push((key.to_owned(), value.map(ToOwned::to_owned))),
        }
    }
    let mut set = |key: &str, value: Option<&str>| put(&mut env, key, value);
    let (path_key, path_value) = DEFAULT_PATH.split_once('=').expect("PATH=...");
    set(path_key, Some(path_value));
    set("HOSTNAME", Some(&process.hostname));
    for entry in &process.image_env {
        // An image entry without `=` unsets the variable, as in containerd.
        match entry.split_once('=') {
            Some((key, value)) => set(checked_key(key, entry)?, Some(checked_value(value, entry)?)),
            None => set(checked_key(entry, entry)?, None),
        }
    }
    for (key, value) in &process.env {
        let whole = format!("{key}={value}");
        set(checked_key(key, &whole)?, Some(checked_value(value, &whole)?));
    }
    if !env.iter().any(|(k, v)| k == "HOME" && v.is_some()) {
        put(&mut env, "HOME", Some(home));
    }
    Ok(env.into_iter().filter_map(|(k, v)| v.map(|v| format!("{k}={v}"))).collect())
}

/// The kernel's MAX_ARG_STRLEN: one `KEY=value` with its NUL.
const MAX_ENV_ENTRY: usize = 32 * 4096;

fn checked_key<'a>(key: &'a str, whole: &str) -> Result<&'a str, SpecError> {
    if key.is_empty() || key.contains('=') || key.chars().any(char::is_control) {
        return Err(SpecError::InvalidEnv(whole.to_owned()));
    }
    Ok(key)
}

fn checked_value<'a>(value: &'a str, whole: &str) -> Result<&'a str, SpecError> {
    if value.contains('\0') {
        return Err(SpecError::InvalidEnv(whole.to_owned()));
    }
    // execve refuses a longer one (E2BIG) only when the runtime starts the process, obscurely.
    if whole.len() >= MAX_ENV_ENTRY {
        let key = whole.split('=').next().unwrap_or_default().chars().take(64).collect();
        return Err(SpecError::EnvTooLong { key, bytes: whole.len() });
    }
    Ok(value)
}

fn working_dir(process: &ProcessInput, rootfs: &Rootfs) -> Result<PathBuf, SpecError> {
    let dir = process
        .working_dir
        .clone()
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| process.image_working_dir.clone().filter(|d| !d.as_os_str().is_empty()))
        .unwrap_or_else(|| "/".into());
    if !dir.is_absolute() {
        return Err(SpecError::RelativeWorkingDir(dir));
    }
    // runc before 1.1.12 lets a cwd such as /proc/self/fd/N reach its own open descriptors on
    // the host (CVE-2024-21626); no process needs to start in /proc.
    let mut lexical = PathBuf::new();
    for component in dir.components() {
        match component {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    if lexical.starts_with("/proc") {
        return Err(SpecError::WorkingDirInProc(dir));
    }
    // A missing one is made by the runtime; a file there would fail the start obscurely.
    if rootfs.entry(&dir)? == Entry::Other {
        return Err(SpecError::WorkingDirNotDirectory(dir));
    }
    Ok(dir)
}

/// The container's capability set: containerd's defaults, ALL added, ALL dropped, then the
/// named additions and drops; all the daemon's own (`host`) when privileged.
fn capabilities(changes: &CapabilityChanges, privileged: bool, host: u64) -> Result<HashSet<Capability>, SpecError> {
    let all = || ALL_CAPABILITIES.iter().filter(|(n, _)| host & (1 << n) != 0).map(|(_, c)| *c);
    if privileged {
        return Ok(all().collect());
    }
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    let mut caps: HashSet<Capability> = super::DEFAULT_CAPABILITIES.into_iter().collect();
    if changes.add.iter().any(is_all) {
        caps.extend(all());
    }
    if changes.drop.iter().any(is_all) {
        caps.clear();
    }
    for name in changes.add.iter().filter(|n| !is_all(n)) {
        caps.insert(capability(name)?);
    }
    for name in changes.drop.iter().filter(|n| !is_all(n)) {
        caps.remove(&capability(name)?);
    }
    Ok(caps)
}

fn capability(name: &str) -> Result<Capability, SpecError> {
    serde_json::from_value(json!(name)).map_err(|_| SpecError::UnknownCapability(name.to_owned()))
}

fn namespaces(modes: &Namespaces, cgroup_namespace: bool) -> Vec<LinuxNamespace> {
    let make = |typ: LinuxNamespaceType, path: Option<&PathBuf>| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ).set_path(path.cloned());
        ns
    };
    let mut list = vec![make(LinuxNamespaceType::Mount, None)];
    for (typ, mode) in [
        (LinuxNamespaceType::Network, &modes.network),
        (LinuxNamespaceType::Ipc, &modes.ipc),
        (LinuxNamespaceType::Uts, &modes.uts),
    ] {
        if let SharedNamespace::Pod(path) = mode {
            list.push(make(typ, Some(path)));
        }
    }
    match &modes.pid {
        PidNamespace::Node => {}
        PidNamespace::Container => list.push(make(LinuxNamespaceType::Pid, None)),
        PidNamespace::Pod(path) | PidNamespace::Target(path) => list.push(make(LinuxNamespaceType::Pid, Some(path))),
    }
    if cgroup_namespace {
        list.push(make(LinuxNamespaceType::Cgroup, None));
    }
    list
}

/// New limits for a running container (`UpdateContainerResources`), as its runtime's update
/// takes them.
pub fn updated_resources(r: &Resources, host: &HostFeatures) -> Result<LinuxResources, SpecError> {
    resources(r, host, Vec::new())
}

/// The requested limits as a `linux.resources` object, with `device_rules` for devices.
fn resources(
    r: &Resources,
    host: &HostFeatures,
    device_rules: Vec<oci_spec::runtime::LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    if !r.unified.is_empty() && !host.cgroup_v2 {
        return Err(SpecError::UnifiedWithoutCgroupV2);
    }
    if !r.hugepage_limits.is_empty() && !host.hugetlb {
        return Err(SpecError::HugetlbUnavailable);
    }
    let mut cpu = serde_json::Map::new();
    let put = |map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value| {
        map.insert(key.to_owned(), value);
    };
    if let Some(v) = r.cpu_shares {
        put(&mut cpu, "shares", json!(v));
    }
    if let Some(v) = r.cpu_quota {
        put(&mut cpu, "quota", json!(v));
    }
    if let Some(v) = r.cpu_period {
        put(&mut cpu, "period", json!(v));
    }
    if let Some(v) = &r.cpuset_cpus {
        put(&mut cpu, "cpus", json!(v));
    }
    if let Some(v) = &r.cpuset_mems {
        put(&mut cpu, "mems", json!(v));
    }
    let mut memory = serde_json::Map::new();
    if let Some(limit) = r.memory_limit {
        put(&mut memory, "limit", json!(limit));
    }
    if host.swap_limit {
        // Without a swap limit, memory+swap equals memory: no swapping, as containerd does.
        if let Some(swap) = r.memory_swap_limit.or(r.memory_limit) {
            put(&mut memory, "swap", json!(swap));
        }
    }
    let mut value = serde_json::Map::new();
    if !cpu.is_empty() {
        put(&mut value, "cpu", cpu.into());
    }
    if !memory.is_empty() {
        put(&mut value, "memory", memory.into());
    }
    if let Some(limit) = r.pids_limit {
        put(&mut value, "pids", json!({"limit": limit}));
    }
    if !r.hugepage_limits.is_empty() {
        let limits: Vec<_> =
            r.hugepage_limits.iter().map(|(size, limit)| json!({"pageSize": size, "limit": limit})).collect();
        put(&mut value, "hugepageLimits", limits.into());
    }
    if !r.unified.is_empty() {
        put(&mut value, "unified", json!(r.unified.iter().collect::<HashMap<_, _>>()));
    }
    let mut resources: LinuxResources =
        serde_json::from_value(value.into()).expect("resources built from typed values are a valid object");
    if !device_rules.is_empty() {
        resources.set_devices(Some(device_rules));
    }
    Ok(resources)
}

/// `extra` over the base spec's resources: its device rules after the base's deny-all.
fn merge_resources(limits: &mut LinuxResources, extra: LinuxResources) {
    let mut devices = limits.devices().clone().unwrap_or_default();
    devices.extend(extra.devices().clone().unwrap_or_default());
    let mut merged = extra;
    merged.set_devices(Some(devices));
    *limits = merged;
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
