//! The two OCI runtime specs of a floor pod: the pause, which owns the pod's namespaces, and the
//! container, which joins them. The least runc needs to run `sleep` as a container: its default
//! mounts and devices, no seccomp, masked paths or resource limits.

use std::path::Path;

use serde_json::{Value, json};

/// The pause: `sleep inf` as an unprivileged user with no capabilities on the shared read-only
/// busybox rootfs, in new PID, IPC, UTS and mount namespaces and the pod's network namespace.
pub(super) fn pause(rootfs: &Path, netns: &Path, cgroups_path: &str) -> Value {
    let namespaces = json!([
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "network", "path": netns},
    ]);
    let mut spec = spec(process(65535, &["sleep", "inf"], &[]), rootfs, true, namespaces, cgroups_path);
    spec["hostname"] = "floor".into();
    spec
}

/// The container: `sleep` as root with runc's default capabilities on its own overlay rootfs, in
/// the network, IPC, UTS and PID namespaces of the pause `pause_pid` and a mount namespace of its
/// own.
pub(super) fn container(rootfs: &Path, pause_pid: u32, cgroups_path: &str) -> Value {
    let joined = |kind: &str, name: &str| json!({"type": kind, "path": format!("/proc/{pause_pid}/ns/{name}")});
    let namespaces = json!([
        joined("network", "net"),
        joined("ipc", "ipc"),
        joined("uts", "uts"),
        joined("pid", "pid"),
        {"type": "mount"},
    ]);
    let capabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    spec(process(0, &["sleep", "3600"], &capabilities), rootfs, false, namespaces, cgroups_path)
}

fn process(id: u32, args: &[&str], capabilities: &[&str]) -> Value {
    json!({
        "terminal": false,
        "user": {"uid": id, "gid": id},
        "args": args,
        "env": ["PATH=/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
        },
        "noNewPrivileges": true,
    })
}

fn spec(process: Value, rootfs: &Path, readonly: bool, namespaces: Value, cgroups_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": readonly},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            // Deny-all first: runc then allows its default devices only, as a runtime's pod would.
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces(spec: &Value) -> Vec<(String, Option<String>)> {
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["type"].as_str().unwrap().to_owned(), n["path"].as_str().map(str::to_owned)))
            .collect()
    }

    #[test]
    fn pause_owns_the_pods_namespaces_but_the_network() {
        let spec = pause(Path::new("/run/floor/busybox"), Path::new("/run/floor/pod-1/netns"), "/floor-x/pod-1-pause");
        let owned = |kind: &str| (kind.to_owned(), None);
        assert_eq!(
            namespaces(&spec),
            [
                owned("pid"),
                owned("ipc"),
                owned("uts"),
                owned("mount"),
                ("network".to_owned(), Some("/run/floor/pod-1/netns".to_owned()))
            ]
        );
        assert_eq!(spec["root"], json!({"path": "/run/floor/busybox", "readonly": true}));
        assert_eq!(spec["process"]["args"], json!(["sleep", "inf"]));
        assert_eq!(spec["process"]["user"], json!({"uid": 65535, "gid": 65535}));
        assert_eq!(spec["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(spec["hostname"], "floor");
        assert_eq!(spec["linux"]["cgroupsPath"], "/floor-x/pod-1-pause");
    }

    #[test]
    fn container_joins_the_pause() {
        let spec = container(Path::new("/run/floor/pod-1/rootfs"), 4242, "/floor-x/pod-1-sleep");
        let joined = |kind: &str, name: &str| (kind.to_owned(), Some(format!("/proc/4242/ns/{name}")));
        assert_eq!(
            namespaces(&spec),
            [
                joined("network", "net"),
                joined("ipc", "ipc"),
                joined("uts", "uts"),
                joined("pid", "pid"),
                ("mount".to_owned(), None)
            ]
        );
        assert_eq!(spec["root"], json!({"path": "/run/floor/pod-1/rootfs", "readonly": false}));
        assert_eq!(spec["process"]["args"], json!(["sleep", "3600"]));
        assert_eq!(spec["process"]["user"]["uid"], 0);
        assert!(spec.get("hostname").is_none(), "a joined UTS namespace takes no hostname: {spec}");
        let mounts: Vec<_> = spec["mounts"].as_array().unwrap().iter().map(|m| m["destination"].clone()).collect();
        assert_eq!(mounts, ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]);
    }
}
