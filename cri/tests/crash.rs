//! Crash consistency (issue 9): crisp is killed with SIGKILL at a random point inside one of
//! its operations, restarted on the same root and state, and the host is checked against what
//! it lists: every object wholly there or wholly gone, running containers still running, and
//! nothing (netns, IP reservation, veth, mount, cgroup, process, runtime container, record, blob,
//! layer) that no listed object owns. Then Stop and Remove of everything must leave nothing.
//!
//! The run is seeded and prints its seed and, per iteration, the operation and the delay before
//! the kill, so that a failure can be replayed:
//!
//! ```sh
//! CRISP_CRASH_SEED=1234 CRISP_CRASH_ITERATIONS=200 cargo test -p crisp-cri --test crash -- --nocapture
//! ```
//!
//! `CRISP_CRASH_ITERATIONS` defaults to a count that CI runs in a few minutes; a few hundred
//! iterations (and several seeds) is the longer mode to run before touching recovery code.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::net::{PodNet, mounts_under, processes_mentioning};
use common::{Daemon, Lab};
use crisp_conformance::client::{CriClient, Endpoint};
use crisp_conformance::lab::Lab as ImageLab;
use crisp_conformance::lab::image::LabImage;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    LinuxPodSandboxConfig, ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState, PullImageRequest, RemoveContainerRequest, RemoveImageRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};

const NETWORK: u8 = 85;
const DEFAULT_SEED: u64 = 0x9_c4a5;
/// Two to three minutes on a two-core test machine.
const DEFAULT_ITERATIONS: u32 = 120;
/// Every this many iterations, a pod with a running container rides out the kill untouched.
const KEEPER_EVERY: u32 = 3;

/// splitmix64: a seeded, reproducible stream; the test needs no statistical quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    RunPodSandbox,
    CreateContainer,
    StartContainer,
    StopRemoveContainer,
    StopRemovePodSandbox,
    PullImage,
}

const OPS: [Op; 6] = [
    Op::RunPodSandbox,
    Op::CreateContainer,
    Op::StartContainer,
    Op::StopRemoveContainer,
    Op::StopRemovePodSandbox,
    Op::PullImage,
];

/// What an operation acts on, made before the kill window opens.
#[derive(Default)]
struct Target {
    pod: String,
    container: String,
}

struct World {
    lab: Lab,
    /// Serves the images for as long as the test runs.
    _registry: ImageLab,
    net: PodNet,
    daemon: Option<Daemon>,
    client: CriClient,
    busybox: String,
    multi_layer: String,
    cgroup_parent: String,
    iteration: u32,
}

impl World {
    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a daemon runs")
    }

    fn logs(&self) -> String {
        // Read lossily: a log quoting bytes that are not UTF-8 must still show.
        let bytes = self.daemon.as_ref().and_then(|d| fs::read(&d.log).ok()).unwrap_or_default();
        let logs = String::from_utf8_lossy(&bytes);
        let mut tail = logs.len().saturating_sub(20_000);
        while !logs.is_char_boundary(tail) {
            tail += 1;
        }
        logs[tail..].to_owned()
    }

    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "crash".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.lab.path("logs").to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig { cgroup_parent: self.cgroup_parent.clone(), ..Default::default() }),
            ..Default::default()
        }
    }

    fn container_config(&self, name: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: self.busybox.clone(), ..Default::default() }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}.log"),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, name: &str) -> String {
        let request = RunPodSandboxRequest { config: Some(self.pod_config(name)), runtime_handler: String::new() };
        match self.client.runtime.run_pod_sandbox(request).await {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(e) => panic!("{}: RunPodSandbox {name}: {e}\n{}", self.iteration, self.logs()),
        }
    }

    fn create_request(&self, pod: &str, pod_name: &str, name: &str) -> CreateContainerRequest {
        CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(self.container_config(name)),
            sandbox_config: Some(self.pod_config(pod_name)),
        }
    }

    async fn create(&mut self, pod: &str, pod_name: &str, name: &str) -> String {
        let request = self.create_request(pod, pod_name, name);
        match self.client.runtime.create_container(request).await {
            Ok(r) => r.into_inner().container_id,
            Err(e) => panic!("{}: CreateContainer {name}: {e}\n{}", self.iteration, self.logs()),
        }
    }

    async fn start(&mut self, id: &str) {
        if let Err(e) = self.client.runtime.start_container(StartContainerRequest { container_id: id.into() }).await {
            panic!("{}: StartContainer {id}: {e}\n{}", self.iteration, self.logs());
        }
    }

    async fn pull(&mut self, image: &str) {
        let request = PullImageRequest {
            image: Some(ImageSpec { image: image.into(), ..Default::default() }),
            ..Default::default()
        };
        if let Err(e) = self.client.image.pull_image(request).await {
            panic!("{}: PullImage {image}: {e}\n{}", self.iteration, self.logs());
        }
    }

    /// What `op` needs, made with the daemon up and no kill pending.
    async fn prepare(&mut self, op: Op) -> Target {
        let name = format!("victim-{}", self.iteration);
        let mut target = Target::default();
        match op {
            Op::RunPodSandbox => {}
            Op::PullImage => {
                let request = RemoveImageRequest {
                    image: Some(ImageSpec { image: self.multi_layer.clone(), ..Default::default() }),
                };
                if let Err(e) = self.client.image.remove_image(request).await {
                    self.rpc_failed("RemoveImage", e);
                }
            }
            Op::CreateContainer => target.pod = self.run_pod(&name).await,
            Op::StartContainer | Op::StopRemoveContainer | Op::StopRemovePodSandbox => {
                target.pod = self.run_pod(&name).await;
                target.container = self.create(&target.pod.clone(), &name, "app").await;
                if op != Op::StartContainer {
                    self.start(&target.container.clone()).await;
                }
            }
        }
        target
    }

    /// Issues `op` on its own connection; its result does not matter, the host's state does.
    fn issue(&self, op: Op, target: &Target) -> tokio::task::JoinHandle<Result<(), tonic::Status>> {
        let mut client = self.client.clone();
        let name = format!("victim-{}", self.iteration);
        let (pod_config, multi_layer) = (self.pod_config(&name), self.multi_layer.clone());
        let create = self.create_request(&target.pod, &name, "app");
        let (pod, container) = (target.pod.clone(), target.container.clone());
        tokio::spawn(async move {
            let runtime = &mut client.runtime;
            match op {
                Op::RunPodSandbox => {
                    let request = RunPodSandboxRequest { config: Some(pod_config), runtime_handler: String::new() };
                    runtime.run_pod_sandbox(request).await.map(drop)
                }
                Op::CreateContainer => runtime.create_container(create).await.map(drop),
                Op::StartContainer => {
                    runtime.start_container(StartContainerRequest { container_id: container }).await.map(drop)
                }
                Op::StopRemoveContainer => {
                    let stop = StopContainerRequest { container_id: container.clone(), timeout: 0 };
                    runtime.stop_container(stop).await?;
                    runtime.remove_container(RemoveContainerRequest { container_id: container }).await.map(drop)
                }
                Op::StopRemovePodSandbox => {
                    runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await?;
                    runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.map(drop)
                }
                Op::PullImage => {
                    let request = PullImageRequest {
                        image: Some(ImageSpec { image: multi_layer, ..Default::default() }),
                        ..Default::default()
                    };
                    client.image.pull_image(request).await.map(drop)
                }
            }
        })
    }

    async fn kill_and_restart(&mut self) {
        let mut daemon = self.daemon.take().expect("a daemon runs");
        daemon.signal(libc::SIGKILL);
        daemon.wait_exit(Duration::from_secs(10)).await;
        // Its log stays in the lab's dir; the next daemon writes a new one.
        drop(daemon);
        self.daemon = Some(self.lab.start());
        let endpoint = Endpoint::parse(self.lab.socket().to_str().unwrap()).unwrap();
        match CriClient::connect(&endpoint, &endpoint).await {
            Ok(client) => self.client = client,
            Err(e) => self.rpc_failed("connecting after the restart", e),
        }
    }

    /// Stops and removes every pod and container and the multi-layer image.
    async fn remove_everything(&mut self) {
        for id in self.list_pods().await.into_keys() {
            let runtime = &mut self.client.runtime;
            let stopped = runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
            let removed = runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await;
            if let Err(e) = stopped.and(removed) {
                panic!("{}: Stop/Remove of pod {id}: {e}\n{}", self.iteration, self.logs());
            }
        }
        let containers = self.list_containers().await;
        for (id, _) in containers {
            let removed =
                self.client.runtime.remove_container(RemoveContainerRequest { container_id: id.clone() }).await;
            if let Err(e) = removed {
                panic!("{}: RemoveContainer {id}: {e}\n{}", self.iteration, self.logs());
            }
        }
        let request =
            RemoveImageRequest { image: Some(ImageSpec { image: self.multi_layer.clone(), ..Default::default() }) };
        if let Err(e) = self.client.image.remove_image(request).await {
            panic!("{}: RemoveImage: {e}\n{}", self.iteration, self.logs());
        }
    }

    async fn list_pods(&mut self) -> BTreeMap<String, bool> {
        let items = match self.client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await {
            Ok(r) => r.into_inner().items,
            Err(e) => self.rpc_failed("ListPodSandbox", e),
        };
        items.into_iter().map(|p| (p.id, p.state == PodSandboxState::SandboxReady as i32)).collect()
    }

    async fn list_containers(&mut self) -> BTreeMap<String, (String, i32)> {
        let items = match self.client.runtime.list_containers(ListContainersRequest::default()).await {
            Ok(r) => r.into_inner().containers,
            Err(e) => self.rpc_failed("ListContainers", e),
        };
        items.into_iter().map(|c| (c.id, (c.pod_sandbox_id, c.state))).collect()
    }

    fn rpc_failed(&mut self, rpc: &str, e: impl std::fmt::Display) -> ! {
        let exited = self.daemon.as_mut().and_then(|d| d.child.try_wait().ok().flatten());
        let listeners = listeners(&self.lab.socket());
        let pid = self.daemon.as_ref().map(|d| d.child.id());
        panic!(
            "{}: {rpc}: {e} (crisp {pid:?} exited: {exited:?}; listening on its socket: {listeners:?})\n{}",
            self.iteration,
            self.logs()
        )
    }

    async fn container_pid(&mut self, id: &str) -> Option<u32> {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: true };
        let info = self.client.runtime.container_status(request).await.ok()?.into_inner().info;
        let record: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
        record["pid"].as_u64().map(|p| p as u32)
    }

    /// Everything wrong between what crisp lists and what the host holds.
    async fn problems(&mut self) -> Vec<String> {
        let pods = self.list_pods().await;
        let containers = self.list_containers().await;
        let mut problems = Vec::new();
        let mut wrong = |what: String| problems.push(what);
        let owners: BTreeSet<&str> = pods.keys().chain(containers.keys()).map(String::as_str).collect();
        let owned = |id: &str| owners.contains(id);

        // Listed objects are whole.
        let host_veths = host_veths(&self.net.bridge);
        let mut owned_veths = BTreeSet::new();
        let reservations = reservations(&self.net);
        for (id, ready) in &pods {
            let netns = self.lab.path(&format!("state/netns/{id}"));
            let peer = netns.exists().then(|| pod_veth_peer(&netns)).flatten();
            owned_veths.extend(peer);
            if !ready {
                continue;
            }
            if !netns.exists() {
                wrong(format!("ready pod {id} has no netns file"));
            }
            if !reservations.values().any(|owner| owner == id) {
                wrong(format!("ready pod {id} has no IP reservation"));
            }
            if !peer.is_some_and(|p| host_veths.contains(&p)) {
                wrong(format!("ready pod {id} has no veth on {}", self.net.bridge));
            }
            for file in ["sandbox.json", "hostname", "hosts", "resolv.conf"] {
                if !self.lab.path(&format!("root/pods/{id}/{file}")).exists() {
                    wrong(format!("ready pod {id} has no {file}"));
                }
            }
        }
        for (id, (pod, state)) in &containers {
            if !pods.contains_key(pod) {
                wrong(format!("container {id} of pod {pod}, which is not listed"));
            }
            let sane =
                [ContainerState::ContainerCreated, ContainerState::ContainerRunning, ContainerState::ContainerExited];
            if !sane.iter().any(|s| *s as i32 == *state) {
                wrong(format!("container {id} is in state {state}"));
            }
            if *state == ContainerState::ContainerRunning as i32 {
                match self.container_pid(id).await {
                    Some(pid) if alive(pid) => {}
                    pid => wrong(format!("running container {id} has no live process ({pid:?})")),
                }
            }
            if *state != ContainerState::ContainerExited as i32 {
                let rootfs = self.lab.path(&format!("state/containers/{id}/rootfs")).to_string_lossy().into_owned();
                if !mounts_under(&rootfs).contains(&rootfs) {
                    wrong(format!("container {id} ({state}) has no rootfs mounted"));
                }
            }
        }

        // Nothing is there that no listed object owns.
        for (ip, owner) in &reservations {
            if !pods.contains_key(owner) {
                wrong(format!("IP {ip} reserved for {owner}, not a listed pod"));
            }
        }
        for veth in host_veths.difference(&owned_veths) {
            wrong(format!("veth (ifindex {veth}) on {} of no listed pod", self.net.bridge));
        }
        for dir in ["state/netns", "root/pods", "state/pods", "root/containers", "state/containers"] {
            for name in names(&self.lab.path(dir)) {
                if !owned(&name) {
                    wrong(format!("{dir}/{name} of no listed object"));
                }
            }
        }
        for name in names(&self.lab.path("root/network/cache")) {
            if !name.split('-').next().is_some_and(|id| pods.contains_key(id)) {
                wrong(format!("CNI cache entry {name} of no listed pod"));
            }
        }
        let dir = self.lab.dir.path().to_string_lossy().into_owned();
        let netns_dir = self.lab.path("state/netns").to_string_lossy().into_owned();
        for mount in mounts_under(&dir).into_iter().filter(|m| *m != netns_dir) {
            let rest = mount.strip_prefix(&format!("{dir}/")).unwrap_or(&mount);
            let mut parts = rest.split('/');
            let id = match (parts.next(), parts.next(), parts.next()) {
                (Some("state"), Some("netns" | "pods" | "containers"), Some(id)) => id,
                _ => "",
            };
            if !owned(id) {
                wrong(format!("mount {mount} of no listed object"));
            }
        }
        for hierarchy in names(Path::new("/sys/fs/cgroup")) {
            let parent = Path::new("/sys/fs/cgroup").join(&hierarchy).join(self.cgroup_parent.trim_start_matches('/'));
            for name in names(&parent).into_iter().filter(|n| parent.join(n).is_dir()) {
                if !name.strip_prefix("crisp-").is_some_and(owned) {
                    wrong(format!("cgroup {hierarchy}{}/{name} of no listed object", self.cgroup_parent));
                }
            }
        }
        let daemon_pid = self.daemon().child.id() as i32;
        let monitors = format!("{dir}/state/pods/");
        for pid in processes_mentioning(&dir).into_iter().filter(|p| *p != daemon_pid) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let monitor_of = cmdline.split_once(&monitors).and_then(|(_, rest)| rest.split('/').next());
            if !monitor_of.is_some_and(owned) {
                wrong(format!("process {pid} ({cmdline}) of no listed object"));
            }
        }
        // Writes a crash cut short: temp files beside records, crisp's runtime command files.
        let record_dirs = ["root/pods", "root/containers"].into_iter().flat_map(|d| {
            let dir = self.lab.path(d);
            names(&dir).into_iter().map(move |n| dir.join(n))
        });
        let flat_dirs = ["root/network/cache", "root/image/images", "root/image/holds", "state/runtime/runc"];
        for dir in record_dirs.chain(flat_dirs.into_iter().map(|d| self.lab.path(d))) {
            for name in names(&dir).into_iter().filter(|n| n.starts_with('.')) {
                wrong(format!("{}/{name} left by a write or command cut short", dir.display()));
            }
        }
        let runc_root = self.lab.path("state/runtime/runc");
        let out = Command::new("/usr/sbin/runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output().unwrap();
        for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
            if !owned(id) {
                wrong(format!("runc container {id} of no listed object"));
            }
        }
        for holder in names(&self.lab.path("root/image/holds")) {
            if !holder.strip_prefix("container-").is_some_and(|id| containers.contains_key(id)) {
                wrong(format!("image hold {holder} of no listed container"));
            }
        }
        drop(wrong);
        problems.extend(self.image_problems().await);
        problems
    }

    /// Images listed are whole; blobs and layers are those of listed images only.
    async fn image_problems(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let images = match self.client.image.list_images(ListImagesRequest::default()).await {
            Ok(r) => r.into_inner().images,
            Err(e) => self.rpc_failed("ListImages", e),
        };
        let listed: BTreeSet<String> = images.into_iter().map(|i| i.id).collect();
        let store = self.lab.path("root/image");
        let (mut blobs, mut layers) = (BTreeSet::new(), BTreeSet::new());
        for name in names(&store.join("images")) {
            let text = fs::read_to_string(store.join("images").join(&name)).unwrap_or_default();
            let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let id = record["id"].as_str().unwrap_or_default().to_owned();
            if !listed.contains(&id) {
                problems.push(format!("image record {name} of no listed image"));
            }
            let hex = |v: &serde_json::Value| v.as_str().and_then(|d| d.strip_prefix("sha256:")).map(str::to_owned);
            let mut own_blobs: Vec<String> = [&record["id"], &record["manifest"]].into_iter().filter_map(hex).collect();
            own_blobs.extend(record["layers"].as_array().into_iter().flatten().filter_map(hex));
            let own_layers: Vec<String> =
                record["chain_ids"].as_array().into_iter().flatten().filter_map(hex).collect();
            for blob in &own_blobs {
                if !store.join("blobs/sha256").join(blob).is_file() {
                    problems.push(format!("image {id} lacks blob {blob}"));
                }
            }
            for layer in &own_layers {
                if !store.join("layers").join(layer).is_dir() {
                    problems.push(format!("image {id} lacks layer {layer}"));
                }
            }
            blobs.extend(own_blobs);
            layers.extend(own_layers);
        }
        for blob in names(&store.join("blobs/sha256")) {
            if !blobs.contains(&blob) {
                problems.push(format!("blob {blob} of no image"));
            }
        }
        for layer in names(&store.join("layers")) {
            if !layers.contains(&layer) {
                problems.push(format!("layer {layer} of no image"));
            }
        }
        for name in names(&store.join("ingest")) {
            problems.push(format!("ingest file {name} left"));
        }
        problems
    }

    async fn assert_consistent(&mut self, when: &str, context: &str) {
        let problems = self.problems().await;
        assert!(
            problems.is_empty(),
            "{context}: {when}:\n  {}\n--- crisp's log (tail) ---\n{}",
            problems.join("\n  "),
            self.logs()
        );
    }
}

/// The processes listening on a unix socket path, as `ss` shows them.
fn listeners(socket: &Path) -> Vec<String> {
    let out = Command::new("ss").args(["-xlpn"]).output().map(|o| o.stdout).unwrap_or_default();
    let path = socket.to_string_lossy();
    String::from_utf8_lossy(&out).lines().filter(|l| l.contains(path.as_ref())).map(str::to_owned).collect()
}

/// The entries of a directory, by name; none if it is missing.
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// host-local's reservations: IP to the container ID that holds it.
fn reservations(net: &PodNet) -> BTreeMap<String, String> {
    let dir = net.ipam_dir.join(format!("crisp-e2e-{}", net.n));
    names(&dir)
        .into_iter()
        .filter(|n| n.starts_with("10."))
        .map(|n| {
            let owner = fs::read_to_string(dir.join(&n)).unwrap_or_default();
            (n, owner.lines().next().unwrap_or_default().trim().to_owned())
        })
        .collect()
}

/// The ifindexes of the interfaces attached to the bridge.
fn host_veths(bridge: &str) -> BTreeSet<u32> {
    let out = Command::new("ip").args(["-o", "link", "show", "master", bridge]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(':').next()?.trim().parse().ok()).collect()
}

/// The host-side ifindex of the pod's `eth0` (its veth peer), read inside the netns.
fn pod_veth_peer(netns: &Path) -> Option<u32> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "-o", "link", "show", "eth0"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.split(": ").nth(1)?;
    name.split_once("@if")?.1.parse().ok()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Removes the test's cgroup parent in every hierarchy, also when the test fails.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for hierarchy in names(Path::new("/sys/fs/cgroup")) {
            let dir = Path::new("/sys/fs/cgroup").join(hierarchy).join(self.0.trim_start_matches('/'));
            for child in names(&dir) {
                let _ = fs::remove_dir(dir.join(child));
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_leaves_every_object_whole_or_gone() {
    let seed = env_or("CRISP_CRASH_SEED", DEFAULT_SEED);
    let iterations = env_or("CRISP_CRASH_ITERATIONS", DEFAULT_ITERATIONS);
    println!("crash test: CRISP_CRASH_SEED={seed} CRISP_CRASH_ITERATIONS={iterations}");
    let mut rng = Rng(seed);

    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::with_network(NETWORK);
    lab.write_config("");
    let net = lab.pod_net(NETWORK);
    let cgroup_parent = format!("/crisp-crash-{}", std::process::id());
    // Declared after the lab: dropped first, once the lab's clean-up has killed what ran in it.
    let _cgroups = CgroupParent(cgroup_parent.clone());
    let daemon = lab.start();
    let client = daemon.client().await;
    let addr = registry.registry().addr();
    let mut world = World {
        busybox: format!("{addr}/{}", LabImage::Busybox),
        multi_layer: format!("{addr}/{}", LabImage::MultiLayer),
        lab,
        _registry: registry,
        net,
        daemon: Some(daemon),
        client,
        cgroup_parent,
        iteration: 0,
    };
    let busybox = world.busybox.clone();
    world.pull(&busybox).await;

    // How long each operation takes here, once, to draw kill delays from.
    let mut typical = BTreeMap::new();
    for op in OPS {
        let target = world.prepare(op).await;
        let began = Instant::now();
        let done = world.issue(op, &target).await.unwrap();
        typical.insert(op, began.elapsed());
        if let Err(e) = done {
            panic!("{op:?} without a kill: {e}\n{}", world.logs());
        }
        world.remove_everything().await;
    }
    println!("typical durations: {typical:?}");
    world.assert_consistent("after the untimed runs", "no kill").await;

    for iteration in 1..=iterations {
        world.iteration = iteration;
        let op = OPS[rng.below(OPS.len() as u64) as usize];
        let max = typical[&op].as_micros() as u64;
        let delay = Duration::from_micros(rng.below(max + 1));
        let keeper = if iteration % KEEPER_EVERY == 0 {
            let name = format!("keeper-{iteration}");
            let pod = world.run_pod(&name).await;
            let container = world.create(&pod, &name, "keep").await;
            world.start(&container).await;
            let pid = world.container_pid(&container).await.expect("a running container has a pid");
            Some((container, pid))
        } else {
            None
        };
        let context = format!(
            "CRISP_CRASH_SEED={seed} iteration {iteration}/{iterations}: {op:?}, SIGKILL after {delay:?} (typical {:?})",
            typical[&op]
        );
        println!("{context}");
        let target = world.prepare(op).await;
        let pending = world.issue(op, &target);
        tokio::time::sleep(delay).await;
        world.kill_and_restart().await;
        // The call ends with the daemon, whatever it had done.
        let _ = pending.await;

        world.assert_consistent("after the restart", &context).await;
        if let Some((container, pid)) = keeper {
            let state = world.list_containers().await.get(&container).map(|c| c.1);
            assert_eq!(
                state,
                Some(ContainerState::ContainerRunning as i32),
                "{context}: the keeper container {container} runs on\n{}",
                world.logs()
            );
            assert_eq!(world.container_pid(&container).await, Some(pid), "{context}: the same process");
            assert!(alive(pid), "{context}: the keeper's process {pid} is alive");
        }
        world.remove_everything().await;
        let (pods, containers) = (world.list_pods().await, world.list_containers().await);
        assert!(pods.is_empty() && containers.is_empty(), "{context}: left after removal: {pods:?} {containers:?}");
        world.assert_consistent("after Stop and Remove of everything", &context).await;
        assert!(world.net.veths().is_empty() && world.net.reserved_ips().is_empty(), "{context}: network left");
    }

    // Nothing at all stays once the last image goes.
    let request = RemoveImageRequest { image: Some(ImageSpec { image: busybox, ..Default::default() }) };
    world.client.image.remove_image(request).await.unwrap();
    let store = world.lab.path("root/image");
    for dir in ["images", "blobs/sha256", "layers", "ingest", "holds"] {
        assert_eq!(names(&store.join(dir)), Vec::<String>::new(), "image store {dir} left\n{}", world.logs());
    }
}
