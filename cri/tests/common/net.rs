//! A pod network of a test's own: a bridge, a subnet and an IPAM dir that no other test uses,
//! and a clean-up that removes whatever crisp left behind when a test fails halfway.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Lab;

pub struct PodNet {
    pub bridge: String,
    /// The third octet of 10.251.N.0/24.
    pub n: u8,
    pub ipam_dir: PathBuf,
}

impl PodNet {
    pub fn subnet_prefix(&self) -> String {
        format!("10.251.{}.", self.n)
    }

    /// host-local's reservations: one file per IP in use.
    pub fn reserved_ips(&self) -> Vec<String> {
        let dir = self.ipam_dir.join(format!("crisp-e2e-{}", self.n));
        fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Interfaces attached to the test's bridge (the pods' host-side veths).
    pub fn veths(&self) -> Vec<String> {
        let out = Command::new("ip").args(["-o", "link", "show", "master", &self.bridge]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap().to_owned()))
            .collect()
    }
}

impl Lab {
    /// A lab whose daemon has a CNI network of its own (bridge `crtN`, 10.251.N.0/24) and whose
    /// clean-up on drop removes pods' processes, mounts and the bridge.
    pub fn with_network(n: u8) -> Lab {
        let lab = Lab::new();
        lab.set_network(n, "");
        lab
    }

    /// Writes the network config, `extra_plugins` (JSON objects, comma-first) chained after
    /// bridge and portmap.
    pub fn set_network(&self, n: u8, extra_plugins: &str) -> PodNet {
        let net = self.pod_net(n);
        let conflist = format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "crisp-e2e-{n}",
  "plugins": [
    {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {{"type": "host-local", "dataDir": {ipam:?},
               "ranges": [[{{"subnet": "10.251.{n}.0/24"}}]], "routes": [{{"dst": "10.251.{n}.0/24"}}]}}}},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}{extra_plugins}
  ]
}}"#,
            bridge = net.bridge,
            ipam = net.ipam_dir,
        );
        fs::write(self.cni_dir().join("10-e2e.conflist"), conflist).unwrap();
        self.bridges.lock().unwrap().push(net.bridge.clone());
        net
    }

    pub fn pod_net(&self, n: u8) -> PodNet {
        PodNet { bridge: format!("crt{n}"), n, ipam_dir: self.path("cni-ipam") }
    }
}

/// Everything crisp made under the lab's dirs, gone, also when the test failed halfway: pause
/// and monitor processes, runtime containers, mounts (netns, shm), bridges.
pub fn clean_up(dir: &Path, bridges: &[String]) {
    let dir_text = dir.to_string_lossy().into_owned();
    for runtime_root in list(&dir.join("state/runtime")) {
        for (binary, root) in [("/usr/sbin/runc", &runtime_root), ("/usr/bin/crun", &runtime_root)] {
            let Ok(out) = Command::new(binary).arg("--root").arg(root).args(["list", "-q"]).output() else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
                let _ = Command::new(binary).arg("--root").arg(root).args(["delete", "--force", id]).output();
            }
        }
    }
    for id in list(&dir.join("root/pods")).iter().filter_map(|p| p.file_name()?.to_str().map(str::to_owned)) {
        for cgroup in pod_cgroups(&id) {
            for pid in fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default().lines() {
                unsafe { libc::kill(pid.parse().unwrap_or(0), libc::SIGKILL) };
            }
            let _ = fs::remove_dir(&cgroup);
        }
    }
    for pid in processes_mentioning(&dir_text) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for mount in mounts_under(&dir_text).into_iter().rev() {
        let c = std::ffi::CString::new(mount).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    for bridge in bridges {
        let _ = Command::new("ip").args(["link", "del", bridge]).output();
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

/// Processes whose command line names the lab's dir: crisp's monitors.
pub fn processes_mentioning(text: &str) -> Vec<i32> {
    list(Path::new("/proc"))
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.parse::<i32>().ok().map(|pid| (pid, p.join("cmdline"))))
        .filter(|(pid, cmdline)| {
            *pid != std::process::id() as i32
                && fs::read(cmdline).is_ok_and(|c| String::from_utf8_lossy(&c).contains(text))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Mount points under the lab's dir, in the order they were mounted.
pub fn mounts_under(prefix: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The pause's cgroup in every v1 hierarchy and the unified one, where crisp puts pods the
/// kubelet gave no parent.
pub fn pod_cgroups(id: &str) -> Vec<PathBuf> {
    list(Path::new("/sys/fs/cgroup"))
        .into_iter()
        .map(|c| c.join(format!("crisp/crisp-{id}")))
        .filter(|p| p.is_dir())
        .collect()
}
