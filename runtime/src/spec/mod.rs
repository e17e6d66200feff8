//! OCI specs: the base every container starts from, and the spec of a pod's container.
//!
//! Not `Spec::default()`: that is runc's sample config (a shell, a read-only root, every
//! namespace, a hostname). This is what containerd's CRI plugin starts from instead: its
//! mounts, masked and read-only paths and capability set, with nothing a caller must undo.

mod container;
mod host;
mod mounts;
mod rootfs;
#[cfg(test)]
mod runc_tests;
mod seccomp;
mod user;

use std::path::Path;

use oci_spec::runtime::{Capability, Root, Spec};
use serde_json::json;

pub use container::{
    AppArmorProfile, CapabilityChanges, ContainerSpec, ContainerSpecInput, Namespaces, PidNamespace, ProcessInput,
    Resources, SecurityInput, SharedNamespace, SpecError, container_spec, updated_resources,
};
pub use host::HostFeatures;
pub use mounts::{BindMount, Device, ImageVolume, MountError, PodFiles, Propagation};
pub use rootfs::RootfsError;
pub use seccomp::{SeccompError, SeccompProfile};
pub use user::{ResolvedUser, SupplementalGroupsPolicy, UserError, UserRequest};

/// The runtime-spec version runc 1.1 and crun 1.8 both implement.
const OCI_VERSION: &str = "1.0.2-dev";

/// containerd's default capabilities: enough for images that chown, bind low ports or switch
/// users, without the administrative ones.
const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Kernel interfaces that leak host details or allow attacks from inside a container; runc
/// bind-mounts /dev/null (or an empty tmpfs) over them.
const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The Linux OCI spec both the pause and containers start from: default mounts (/proc, /dev
/// tmpfs, /dev/pts, /dev/mqueue, /sys and its cgroups read-only), masked and read-only paths,
/// the default capability set, all devices denied but the ones runtimes always allow, root
/// user in `/` with the default PATH. No namespaces (callers add them), no process args, no
/// hostname, no cgroups path.
pub fn base(rootfs: &Path) -> Spec {
    // Written as the JSON it becomes: oci-spec's builders fill every field left unset from
    // runc's sample config, and an Option they have set cannot be cleared through them.
    let caps = serde_json::to_value(DEFAULT_CAPABILITIES).expect("capabilities serialize");
    let mount = |destination: &str, typ: &str, options: &[&str]| json!({"destination": destination, "type": typ, "source": typ, "options": options});
    let value = json!({
        "ociVersion": OCI_VERSION,
        "mounts": [
            mount("/proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount("/dev", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            mount("/sys/fs/cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ],
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "env": [DEFAULT_PATH],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            "noNewPrivileges": false,
        },
        "linux": {
            "namespaces": [],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    let mut spec: Spec = serde_json::from_value(value).expect("the base spec is a valid spec");
    // Set apart from the JSON: a rootfs path need not be UTF-8.
    let mut root = Root::default();
    root.set_path(rootfs.to_owned()).set_readonly(Some(false));
    spec.set_root(Some(root));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_a_blank_linux_container() {
        let spec = base(Path::new("/var/lib/x/rootfs"));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("/var/lib/x/rootfs"));
        assert_eq!(root.readonly(), Some(false));
        assert!(spec.hostname().is_none() && spec.annotations().is_none() && spec.hooks().is_none());

        let process = spec.process().as_ref().unwrap();
        assert!(process.args().is_none());
        assert_eq!(process.cwd(), Path::new("/"));
        assert_eq!(process.no_new_privileges(), Some(false));
        let caps = process.capabilities().as_ref().unwrap();
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            assert_eq!(set.as_ref().unwrap().len(), DEFAULT_CAPABILITIES.len());
            assert!(!set.as_ref().unwrap().contains(&Capability::SysAdmin));
        }
        assert!(caps.inheritable().as_ref().unwrap().is_empty() && caps.ambient().as_ref().unwrap().is_empty());

        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 0);
        assert!(linux.cgroups_path().is_none() && linux.seccomp().is_none() && linux.sysctl().is_none());
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_owned()));
        assert!(linux.readonly_paths().as_ref().unwrap().contains(&"/proc/sys".to_owned()));

        let mounts: Vec<_> =
            spec.mounts().as_ref().unwrap().iter().map(|m| m.destination().to_str().unwrap().to_owned()).collect();
        assert_eq!(mounts, ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]);
        let sys = &spec.mounts().as_ref().unwrap()[4];
        assert!(sys.options().as_ref().unwrap().iter().any(|o| o == "ro"));
    }

    #[test]
    fn base_serializes_as_runtimes_read_it() {
        let json = serde_json::to_value(base(Path::new("/r"))).unwrap();
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["root"]["path"], "/r");
        assert_eq!(json["linux"]["resources"]["devices"][0], serde_json::json!({"allow": false, "access": "rwm"}));
        assert_eq!(json["linux"]["namespaces"], serde_json::json!([]));
    }
}
