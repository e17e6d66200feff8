//! The floor benchmark for real, as root: runc, Debian's CNI plugins and busybox-static, on pod
//! networks of the tests' own (bridge `crtN`, 10.251.N.0/24, host-local's reservations in the
//! test's dir). A sane report, and nothing of the pods left afterwards, also when they failed.

use std::collections::BTreeSet;
use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;

use crisp_conformance::bench::floor::{self, FloorConfig, FloorError, POD};
use tokio::sync::Mutex;

/// Held by the tests that make pods: the cgroups they check for are any floor run's.
static POD_MAKERS: Mutex<()> = Mutex::const_new(());

/// A network of the test's own, and a work dir; the bridge the plugin made goes with it.
struct Lab {
    dir: tempfile::TempDir,
    /// The network's number: its bridge and subnet are used by no other test.
    n: u8,
}

impl Lab {
    /// `extra_plugins` (JSON objects, comma-first) are chained after bridge and portmap.
    fn new(n: u8, extra_plugins: &str) -> Lab {
        let lab = Lab { dir: tempfile::tempdir().unwrap(), n };
        fs::create_dir(lab.conf_dir()).unwrap();
        let conflist = format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "floor-{n}",
  "plugins": [
    {{"type": "bridge", "bridge": "crt{n}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {{"type": "host-local", "dataDir": {ipam:?},
               "ranges": [[{{"subnet": "10.251.{n}.0/24"}}]], "routes": [{{"dst": "10.251.{n}.0/24"}}]}}}},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}{extra_plugins}
  ]
}}"#,
            ipam = lab.ipam_dir(),
        );
        fs::write(lab.conf_dir().join("10-floor.conflist"), conflist).unwrap();
        lab
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn config(&self) -> FloorConfig {
        FloorConfig { cni_conf_dir: self.conf_dir(), work_dir: self.work_dir(), ..FloorConfig::default() }
    }

    /// Writes an executable script into the lab's dir.
    fn script(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.dir.path().join("bin");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Nothing of the lab's pods is left: the run's dir, mounts, processes, veths, IPs, cgroups.
    fn assert_nothing_left(&self, cgroups_before: &BTreeSet<PathBuf>, zombies_before: &BTreeSet<u32>) {
        assert_eq!(names(&self.work_dir()), Vec::<String>::new(), "the run's dir is left");
        assert_eq!(mounts_under(self.dir.path()), Vec::<String>::new());
        assert_eq!(processes_rooted_in(self.dir.path()), Vec::<String>::new());
        let zombies: Vec<u32> = sleep_zombies().difference(zombies_before).copied().collect();
        assert_eq!(zombies, Vec::<u32>::new(), "pauses or containers left unreaped");
        let veths = Command::new("ip").args(["-o", "link", "show", "master", &self.bridge()]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&veths.stdout), "", "veths on the bridge");
        let reserved = names(&self.ipam_dir().join(format!("floor-{}", self.n)));
        assert_eq!(reserved.iter().filter(|n| n.starts_with("10.")).count(), 0, "IPs reserved: {reserved:?}");
        assert_eq!(&floor_cgroups(), cgroups_before);
    }

    fn bridge(&self) -> String {
        format!("crt{}", self.n)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Mount points under `dir`: netns files and overlays.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Processes whose root is under `dir`: the pauses and containers.
fn processes_rooted_in(dir: &Path) -> Vec<String> {
    names(Path::new("/proc"))
        .into_iter()
        .filter(|name| name.parse::<u32>().is_ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|root| root.starts_with(dir)))
        .collect()
}

/// Dead `sleep`s (the floor's pauses and containers) nobody reaped, of PID 1 (which on this host
/// never will) or of this process. Their root cannot be read: [`processes_rooted_in`] misses them.
fn sleep_zombies() -> BTreeSet<u32> {
    let parents = [1, std::process::id()];
    let pids = names(Path::new("/proc")).into_iter().filter_map(|name| name.parse::<u32>().ok());
    pids.filter(|pid| {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        let Some((name, rest)) = stat.rsplit_once(") ") else { return false };
        let mut fields = rest.split(' ');
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<u32>().ok()));
        name.ends_with("(sleep") && state == Some("Z") && ppid.is_some_and(|p| parents.contains(&p))
    })
    .collect()
}

/// The floor's cgroup parents in every hierarchy.
fn floor_cgroups() -> BTreeSet<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = [root.to_owned()].into_iter().chain(names(root).into_iter().map(|n| root.join(n)));
    hierarchies
        .flat_map(|h| names(&h).into_iter().filter(|n| n.starts_with("crisp-bench-floor-")).map(move |n| h.join(n)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_and_nothing_left() {
    let lab = Lab::new(61, "");
    let _serial = POD_MAKERS.lock().await;
    let cgroups_before = floor_cgroups();
    let zombies_before = sleep_zombies();
    let report = floor::run(&lab.config(), NonZeroUsize::new(2).unwrap()).await.unwrap();

    assert_eq!(report.iterations, 2);
    let conflist = lab.conf_dir().join("10-floor.conflist");
    assert_eq!(report.network, format!("{} (floor-61)", conflist.display()));
    assert!(report.runtime.starts_with("runc version"), "{}", report.runtime);
    let steps: Vec<_> = report.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, ["netns", "CNI ADD", "pause create+start", "container create+start", POD]);
    for step in &report.steps {
        assert_eq!(step.seconds.len(), 2, "{}", step.step);
        assert!(step.seconds.iter().all(|&s| s > 0.0), "{}: {:?}", step.step, step.seconds);
    }
    let total: Vec<f64> = report.pod().seconds.clone();
    for (i, pod) in total.iter().enumerate() {
        let steps: f64 = report.steps[..4].iter().map(|s| s.seconds[i]).sum();
        assert!(*pod >= steps, "pod {i}: {pod}s is less than its steps' {steps}s");
    }
    assert_eq!(report.addresses.len(), 2);
    for addresses in &report.addresses {
        assert!(addresses.iter().any(|a| a.starts_with("10.251.61.")), "{addresses:?}");
    }
    let text = report.to_string();
    assert!(text.contains("\npod with a running container "), "{text}");

    lab.assert_nothing_left(&cgroups_before, &zombies_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_fails_add_is_reported_and_the_chain_deleted() {
    let lab = Lab::new(62, r#", {"type": "floor-fail"}"#);
    let fail = lab.script(
        "floor-fail",
        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
         echo '{\"cniVersion\": \"1.0.0\", \"code\": 100, \"msg\": \"refused\"}'\nexit 1\n",
    );
    let mut config = lab.config();
    config.cni_bin_dirs.insert(0, fail.parent().unwrap().to_owned());
    let _serial = POD_MAKERS.lock().await;
    let cgroups_before = floor_cgroups();
    let zombies_before = sleep_zombies();
    let error = floor::run(&config, NonZeroUsize::MIN).await.unwrap_err();
    assert_eq!(error.to_string(), "CNI ADD of plugin floor-fail: error 100: refused");
    lab.assert_nothing_left(&cgroups_before, &zombies_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_that_fails_is_quoted_and_the_pod_undone() {
    let lab = Lab::new(63, "");
    // runc itself, but the container never starts: by then the pause runs and the overlay is up.
    let runtime = lab.script(
        "runc-no-start",
        "#!/bin/sh\n\
         case \"$*\" in *' start '*-sleep) echo 'start refused' >&2; exit 3;; esac\n\
         exec /usr/sbin/runc \"$@\"\n",
    );
    let config = FloorConfig { runtime: runtime.clone(), ..lab.config() };
    let _serial = POD_MAKERS.lock().await;
    let cgroups_before = floor_cgroups();
    let zombies_before = sleep_zombies();
    let error = floor::run(&config, NonZeroUsize::MIN).await.unwrap_err();
    let FloorError::Runtime { command, id, stderr, .. } = &error else { panic!("{error}") };
    assert_eq!((*command, stderr.as_str()), ("start", "exit status: 3: start refused"), "{error}");
    assert!(id.ends_with("-warm-up-sleep"), "{error}");
    lab.assert_nothing_left(&cgroups_before, &zombies_before);
}

#[tokio::test]
async fn a_missing_plugin_is_named_and_nothing_is_left() {
    let lab = Lab::new(64, "");
    let plugins = tempfile::tempdir().unwrap();
    let config = FloorConfig { cni_bin_dirs: vec![plugins.path().to_owned()], ..lab.config() };
    let error = floor::run(&config, NonZeroUsize::MIN).await.unwrap_err();
    assert!(matches!(&error, FloorError::PluginNotFound { plugin, .. } if plugin == "bridge"), "{error}");
    assert_eq!(names(&lab.work_dir()), Vec::<String>::new());
}

#[tokio::test]
async fn no_network_is_said() {
    let lab = Lab::new(65, "");
    fs::remove_file(lab.conf_dir().join("10-floor.conflist")).unwrap();
    let error = floor::run(&lab.config(), NonZeroUsize::MIN).await.unwrap_err();
    assert_eq!(error.to_string(), format!("no conflist in {}", lab.conf_dir().display()));
}
