//! Generated container specs run by the real runc, as root: capabilities, seccomp, a
//! read-only rootfs and an image user, seen from inside the container.
//!
//! Each test has its own temp dir (rootfs, bundles, runc --root), runs its containers in the
//! network, IPC and UTS namespaces of a `sleep` it unshared (as a pod's pause), and its `Lab`
//! guard force-deletes its containers, kills the sleep and removes its cgroups, also on panic.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;
use crate::{ContainerId, OomScoreAdjPolicy};

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
const CGROUP_PARENT: &str = "crisp-spec-test";
const APPLETS: [&str; 7] = ["sh", "id", "hostname", "grep", "touch", "cat", "echo"];

struct Lab {
    dir: tempfile::TempDir,
    holder: Child,
    ids: Vec<ContainerId>,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
            .unwrap();
        fs::write(rootfs.join("etc/group"), "root:x:0:\nstaff:x:50:app\napp:x:1000:\n").unwrap();
        // The pod's namespaces: a hostname set inside must never reach the host's.
        let holder = Command::new("/usr/bin/unshare")
            .args(["--uts", "--ipc", "--net", "/usr/bin/sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let lab = Lab { dir, holder, ids: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_link(lab.ns("uts")).ok() == fs::read_link("/proc/self/ns/uts").ok() {
            assert!(Instant::now() < deadline, "unshare did not make its namespaces");
            sleep(Duration::from_millis(10));
        }
        lab
    }

    fn ns(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.holder.id()))
    }

    fn input(&self, args: &[&str]) -> ContainerSpecInput {
        ContainerSpecInput {
            rootfs: self.dir.path().join("rootfs"),
            process: ProcessInput {
                command: args.iter().map(|a| a.to_string()).collect(),
                hostname: "lab".into(),
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
            pod_files: PodFiles::default(),
            devices: Vec::new(),
            image_volumes: Vec::new(),
            volumes_dir: self.dir.path().join("volumes"),
            namespaces: Namespaces {
                network: SharedNamespace::Pod(self.ns("net")),
                ipc: SharedNamespace::Pod(self.ns("ipc")),
                uts: SharedNamespace::Pod(self.ns("uts")),
                pid: PidNamespace::Container,
            },
            resources: Resources::default(),
            cgroups_path: String::new(),
            host: HostFeatures::detect().unwrap(),
            oom: OomScoreAdjPolicy::detect(false).unwrap(),
            runtime_supports_rro: false,
        }
    }

    /// `runc run` of the spec built from `input`, to its end (at most 30 s).
    fn run(&mut self, mut input: ContainerSpecInput) -> Output {
        let id = ContainerId::random();
        self.ids.push(id.clone());
        input.cgroups_path = format!("/{CGROUP_PARENT}/{id}");
        let built = container_spec(&input).unwrap();
        let bundle = self.dir.path().join(format!("bundle-{id}"));
        fs::create_dir_all(&bundle).unwrap();
        built.spec.save(bundle.join("config.json")).unwrap();
        let mut child = Command::new(RUNC)
            .arg("--root")
            .arg(self.dir.path().join("runc"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(id.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("runc run {id} did not end");
            }
            sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let root = self.dir.path().join("runc");
        for id in &self.ids {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", id.as_str()])
                .stderr(Stdio::null())
                .status();
            if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
                for hierarchy in hierarchies.flatten() {
                    let parent = hierarchy.path().join(CGROUP_PARENT);
                    let _ = fs::remove_dir(parent.join(id.as_str()));
                    // Only once no other test's container is left in it.
                    let _ = fs::remove_dir(parent);
                }
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn status_mask(status: &str, field: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

fn mask(caps: &[Capability]) -> u64 {
    let number = |cap: &Capability| container::ALL_CAPABILITIES.iter().find(|(_, c)| c == cap).unwrap().0;
    caps.iter().fold(0, |mask, cap| mask | 1 << number(cap))
}

#[test]
fn default_capabilities_inside_runc() {
    let mut lab = Lab::new();
    let status = stdout(&lab.run(lab.input(&["/bin/grep", "Cap", "/proc/1/status"])));
    let defaults = mask(&DEFAULT_CAPABILITIES);
    assert_eq!(status_mask(&status, "CapEff:"), defaults, "{status}");
    assert_eq!(status_mask(&status, "CapBnd:"), defaults, "{status}");
    assert_eq!(status_mask(&status, "CapPrm:"), defaults, "{status}");
    assert_eq!(status_mask(&status, "CapInh:"), 0, "{status}");
    assert_eq!(status_mask(&status, "CapAmb:"), 0, "{status}");
}

#[test]
fn runtime_default_seccomp_blocks_sethostname_even_with_sys_admin() {
    let mut lab = Lab::new();
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let with_sys_admin = |lab: &Lab, seccomp| {
        let mut input =
            lab.input(&["/bin/sh", "-c", "/bin/hostname foo && /bin/hostname && /bin/grep Seccomp: /proc/self/status"]);
        input.security.capabilities.add = vec!["SYS_ADMIN".into()];
        input.security.seccomp = seccomp;
        input
    };

    let blocked = lab.run(with_sys_admin(&lab, SeccompProfile::RuntimeDefault));
    assert!(!blocked.status.success(), "{blocked:?}");
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");

    let allowed = stdout(&lab.run(with_sys_admin(&lab, SeccompProfile::Unconfined)));
    assert!(allowed.starts_with("foo\n"), "{allowed}");
    assert!(allowed.contains("Seccomp:\t0"), "{allowed}");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name);

    // The filter is on (mode 2) for a container that only reads.
    let mut input = lab.input(&["/bin/grep", "Seccomp:", "/proc/self/status"]);
    input.security.seccomp = SeccompProfile::RuntimeDefault;
    assert!(stdout(&lab.run(input)).contains("Seccomp:\t2"));
}

#[test]
fn readonly_rootfs_inside_runc() {
    let mut lab = Lab::new();
    let mut input = lab.input(&["/bin/touch", "/new-file"]);
    input.security.readonly_rootfs = true;
    let output = lab.run(input);
    assert!(!output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("Read-only file system"), "{output:?}");
    assert!(!lab.dir.path().join("rootfs/new-file").exists());

    let output = stdout(&lab.run(lab.input(&["/bin/sh", "-c", "/bin/touch /new-file && echo written"])));
    assert_eq!(output, "written\n");
}

#[test]
fn image_user_inside_runc() {
    let mut lab = Lab::new();
    let mut input = lab.input(&["/bin/sh", "-c", "/bin/id; echo $HOME"]);
    input.image_user = "app".into();
    input.user.supplemental_groups = vec![1234];
    let output = stdout(&lab.run(input));
    assert_eq!(output, "uid=1000(app) gid=1000(app) groups=50(staff),1000(app),1234\n/home/app\n");

    let mut input = lab.input(&["/bin/id"]);
    input.image_user = "app".into();
    input.user = UserRequest {
        run_as_user: Some(1000),
        run_as_group: Some(50),
        supplemental_groups_policy: SupplementalGroupsPolicy::Strict,
        ..Default::default()
    };
    assert_eq!(stdout(&lab.run(input)), "uid=1000(app) gid=50(staff) groups=50(staff)\n");
}
