//! End-to-end: hostile requests over the socket (issue 9). One daemon, a canary pod with a
//! running container made first, then a table of requests that must each be refused with the
//! right code and a message naming what was wrong; after every row the daemon still answers,
//! the canary runs unchanged, nothing the row tried to make exists and nothing outside the places
//! crisp writes to was touched. Requests that may run (big uids, odd env) are checked apart:
//! they run correctly, or are refused, and the same invariants hold.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::containers::{Options, Setup, setup_configured};
use crisp_conformance::lab::image::{EntryType, Image, ImageSpec, LayerBuilder};
use crisp_conformance::lab::push::{lab_client, push};
use k8s_cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatusRequest, ExecSyncRequest,
    ImageSpec as CriImageSpec, ImageStatusRequest, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, ListContainersRequest, ListImagesRequest,
    ListPodSandboxRequest, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxStatusRequest,
    PullImageRequest, RemoveContainerRequest, RemoveImageRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, VersionRequest,
};
use sha2::Digest as _;
use tonic::{Code, Status};

/// What a row sends.
enum Call {
    RunPod(PodSandboxConfig),
    PodStatus(String),
    ContainerStatus(String),
    StartContainer(String),
    StopContainer(String),
    RemoveContainer(String),
    /// A container in the canary's pod.
    Create(ContainerConfig),
    /// A container in a pod by this ID.
    CreateIn(String, ContainerConfig),
    ExecSync(String, Vec<String>, i64),
    Pull(String),
    ImageStatus(String),
    ListPods(HashMap<String, String>),
    ListContainers(HashMap<String, String>),
}

/// A request and what it must get: a code and a fragment of its message; `Code::Ok` rows are
/// lists that must come back empty.
struct Row {
    name: &'static str,
    call: Call,
    code: Code,
    fragment: String,
}

fn row(name: &'static str, call: Call, code: Code, fragment: &str) -> Row {
    Row { name, call, code, fragment: fragment.to_owned() }
}

/// What must not change while the table runs.
#[derive(Debug, PartialEq)]
struct World {
    pods: BTreeSet<String>,
    containers: BTreeSet<String>,
    images: BTreeSet<String>,
    /// The canary's state, start time and pid.
    canary: (i32, i64, u32),
    /// Files in the pod's log dir and in the lab's dir, and the sentinel's bytes and mode.
    log_files: BTreeSet<String>,
    lab_files: BTreeSet<String>,
    sentinel: (Vec<u8>, u32),
}

struct Hostile {
    s: Setup,
    canary: String,
    sentinel: PathBuf,
}

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

impl Hostile {
    async fn world(&mut self) -> World {
        let client = &mut self.s.client;
        let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner();
        let containers = client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner();
        let images = client.image.list_images(ListImagesRequest::default()).await.unwrap().into_inner();
        let status = self.s.status(&self.canary).await;
        let pid = self.s.pid(&self.canary).await;
        let meta = fs::metadata(&self.sentinel).unwrap();
        World {
            pods: pods.items.into_iter().map(|p| p.id).collect(),
            containers: containers.containers.into_iter().map(|c| c.id).collect(),
            images: images.images.into_iter().map(|i| i.id).collect(),
            canary: (status.state, status.started_at, pid),
            log_files: names(&self.s.lab.path("logs")),
            lab_files: names(self.s.lab.dir.path()),
            sentinel: (fs::read(&self.sentinel).unwrap(), meta.mode()),
        }
    }

    /// The daemon is up and answers, and the world is as it was.
    async fn check(&mut self, after: &str, before: &World) {
        assert!(
            self.s.daemon.child.try_wait().unwrap().is_none(),
            "crisp died after {after}:\n{}",
            self.s.daemon.logs()
        );
        let version = self.s.client.runtime.version(VersionRequest::default()).await;
        assert!(version.is_ok(), "crisp does not answer after {after}: {version:?}");
        let now = self.world().await;
        assert_eq!(&now, before, "after {after}");
        assert_eq!(now.canary.0, ContainerState::ContainerRunning as i32, "the canary runs after {after}");
        let (code, out, _) = self.s.exec(&self.canary, &["cat", "/proc/1/comm"], 10).await.unwrap();
        assert_eq!((code, out.as_str()), (0, "pause\n"), "after {after}");
    }

    /// Sends a row's call: a list's length for lists, else nothing on success.
    async fn send(&mut self, call: Call) -> Result<usize, Status> {
        let client = &mut self.s.client;
        let image = |image: String| Some(CriImageSpec { image, ..Default::default() });
        match call {
            Call::RunPod(config) => {
                let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
                client.runtime.run_pod_sandbox(request).await.map(|_| 0)
            }
            Call::PodStatus(id) => {
                let request = PodSandboxStatusRequest { pod_sandbox_id: id, verbose: false };
                client.runtime.pod_sandbox_status(request).await.map(|_| 0)
            }
            Call::ContainerStatus(id) => {
                let request = ContainerStatusRequest { container_id: id, verbose: false };
                client.runtime.container_status(request).await.map(|_| 0)
            }
            Call::StartContainer(id) => {
                client.runtime.start_container(StartContainerRequest { container_id: id }).await.map(|_| 0)
            }
            Call::StopContainer(id) => {
                client.runtime.stop_container(StopContainerRequest { container_id: id, timeout: 0 }).await.map(|_| 0)
            }
            Call::RemoveContainer(id) => {
                client.runtime.remove_container(RemoveContainerRequest { container_id: id }).await.map(|_| 0)
            }
            Call::Create(config) => self.s.create(config).await.map(|_| 0),
            Call::CreateIn(pod, config) => {
                let request = k8s_cri::v1::CreateContainerRequest {
                    pod_sandbox_id: pod,
                    config: Some(config),
                    sandbox_config: Some(self.s.pod_config.clone()),
                };
                client.runtime.create_container(request).await.map(|_| 0)
            }
            Call::ExecSync(id, cmd, timeout) => {
                let request = ExecSyncRequest { container_id: id, cmd, timeout };
                client.runtime.exec_sync(request).await.map(|_| 0)
            }
            Call::Pull(reference) => {
                let request = PullImageRequest { image: image(reference), ..Default::default() };
                client.image.pull_image(request).await.map(|_| 0)
            }
            Call::ImageStatus(reference) => {
                let request = ImageStatusRequest { image: image(reference), verbose: false };
                client.image.image_status(request).await.map(|r| r.into_inner().image.into_iter().count())
            }
            Call::ListPods(label_selector) => {
                let filter = PodSandboxFilter { label_selector, ..Default::default() };
                let request = ListPodSandboxRequest { filter: Some(filter) };
                client.runtime.list_pod_sandbox(request).await.map(|r| r.into_inner().items.len())
            }
            Call::ListContainers(label_selector) => {
                let filter = ContainerFilter { label_selector, ..Default::default() };
                let request = ListContainersRequest { filter: Some(filter) };
                client.runtime.list_containers(request).await.map(|r| r.into_inner().containers.len())
            }
        }
    }

    async fn run_table(&mut self, rows: Vec<Row>) {
        let before = self.world().await;
        for Row { name, call, code, fragment } in rows {
            match self.send(call).await {
                Ok(n) => {
                    assert_eq!(
                        code,
                        Code::Ok,
                        "{name}: succeeded, want {code:?} ({fragment})\n{}",
                        self.s.daemon.logs()
                    );
                    assert_eq!(n, 0, "{name}: a list that must be empty has {n} items");
                }
                Err(e) => {
                    assert_eq!(e.code(), code, "{name}: {e:?}");
                    assert!(e.message().contains(&fragment), "{name}: {fragment:?} not in {:?}", e.message());
                }
            }
            self.check(name, &before).await;
        }
    }

    fn container(&self, name: &str) -> ContainerConfig {
        self.s.config(name, &["sleep", "100000"])
    }

    fn pod(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: "hostile-uid".into(),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            log_directory: self.s.lab.path("logs").to_string_lossy().into_owned(),
            ..Default::default()
        }
    }
}

/// A daemon on the lab network `n` with busybox pulled, a pod, its canary container and a
/// sentinel file beside the pod's log dir.
async fn hostile(n: u8) -> Hostile {
    // A layer may unpack to 16 MiB: a gzip bomb passes that long before it ends.
    let mut s = setup_configured(n, Options::default(), |_| "[image]\nmax_layer_bytes = 16777216\n".into()).await;
    let sentinel = s.lab.path("sentinel");
    fs::write(&sentinel, b"keep").unwrap();
    fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o600)).unwrap();
    let canary = s.run(s.config("canary", &["sleep", "100000"])).await;
    Hostile { s, canary, sentinel }
}

fn with_env(mut config: ContainerConfig, key: &str, value: &str) -> ContainerConfig {
    config.envs.push(KeyValue { key: key.into(), value: value.into() });
    config
}

fn with_security(mut config: ContainerConfig, security: LinuxContainerSecurityContext) -> ContainerConfig {
    config.linux = Some(LinuxContainerConfig { security_context: Some(security), ..Default::default() });
    config
}

fn run_as(uid: i64) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext { run_as_user: Some(Int64Value { value: uid }), ..Default::default() }
}

#[tokio::test]
async fn hostile_ids_names_paths_and_processes_are_refused_and_harm_nothing() {
    let mut h = hostile(70).await;
    let long = "a".repeat(300);
    let logs = h.s.lab.path("logs");
    // A log file and a log dir that lead out of the pod's log dir, planted beside its logs.
    std::os::unix::fs::symlink(&h.sentinel, logs.join("planted.log")).unwrap();
    std::os::unix::fs::symlink(h.s.lab.dir.path(), logs.join("planted-dir")).unwrap();

    let named = |name: &str| {
        let mut config = h.container("x");
        config.metadata = Some(ContainerMetadata { name: name.into(), attempt: 0 });
        config
    };
    let logging = |path: &str| {
        let mut config = h.container("logger");
        config.log_path = path.into();
        config
    };
    let working = |dir: &str| {
        let mut config = h.container("worker");
        config.working_dir = dir.into();
        config
    };
    let imaged = |image: &str| {
        let mut config = h.container("imaged");
        config.image = Some(CriImageSpec { image: image.into(), ..Default::default() });
        config
    };
    let sysctl = |key: &str, value: &str| {
        let mut config = h.pod("sysctl");
        config.linux =
            Some(LinuxPodSandboxConfig { sysctls: HashMap::from([(key.into(), value.into())]), ..Default::default() });
        config
    };
    let canary = h.canary.clone();
    use Code::{InvalidArgument, NotFound};
    let rows = vec![
        // IDs: empty, unknown, overlong, path-like.
        row("pod status, empty ID", Call::PodStatus("".into()), InvalidArgument, "empty pod sandbox ID"),
        row("pod status, unknown ID", Call::PodStatus("feedface".into()), NotFound, "feedface"),
        row("pod status, overlong ID", Call::PodStatus(long.clone()), NotFound, &long),
        row("pod status, path as ID", Call::PodStatus("../../etc".into()), NotFound, "../../etc"),
        row("container status, empty ID", Call::ContainerStatus("".into()), InvalidArgument, "empty container ID"),
        row("container status, overlong ID", Call::ContainerStatus("f".repeat(300)), NotFound, "ffff"),
        row("start, unknown ID", Call::StartContainer("feedface".into()), NotFound, "feedface"),
        row("stop, empty ID", Call::StopContainer("".into()), InvalidArgument, "empty container ID"),
        row("remove, empty ID", Call::RemoveContainer("".into()), InvalidArgument, "empty container ID"),
        row("exec, unknown ID", Call::ExecSync("feedface".into(), vec!["true".into()], 5), NotFound, "feedface"),
        row("exec, no command", Call::ExecSync(canary.clone(), vec![], 5), InvalidArgument, "no command"),
        row("create in an unknown pod", Call::CreateIn("feedface".into(), h.container("x")), NotFound, "feedface"),
        row("create in an empty pod ID", Call::CreateIn("".into(), h.container("x")), InvalidArgument, "empty pod"),
        // Names.
        row("pod, empty name", Call::RunPod(h.pod("")), InvalidArgument, "name must not be empty"),
        row("pod, overlong name", Call::RunPod(h.pod(&long)), InvalidArgument, "longer than 253 bytes"),
        row("pod, name forging CNI_ARGS", Call::RunPod(h.pod("a;K8S_POD_NAME=b")), InvalidArgument, "';'"),
        row("container, empty name", Call::Create(named("")), InvalidArgument, "no name"),
        row("container, overlong name", Call::Create(named(&long)), InvalidArgument, "longer than 253 bytes"),
        row("container, name with a newline", Call::Create(named("a\nb")), InvalidArgument, "control characters"),
        row("container, name with a slash", Call::Create(named("../x")), InvalidArgument, "'/'"),
        // Label selectors that cannot match anything match nothing.
        row("pods by odd labels", Call::ListPods(HashMap::from([("a\n;=".into(), "".into())])), Code::Ok, ""),
        row("pods by an empty label", Call::ListPods(HashMap::from([("".into(), "".into())])), Code::Ok, ""),
        row("pods by an overlong label", Call::ListPods(HashMap::from([(long.clone(), long.clone())])), Code::Ok, ""),
        row(
            "containers by odd labels",
            Call::ListContainers(HashMap::from([("name".into(), "canary\0".into())])),
            Code::Ok,
            "",
        ),
        // Log paths: relative to the pod's log dir and never out of it, no symlinks on the way.
        row("log path with ..", Call::Create(logging("../escape.log")), InvalidArgument, ".."),
        row("log path through ..", Call::Create(logging("sub/../../escape.log")), InvalidArgument, ".."),
        row("absolute log path", Call::Create(logging("/tmp/escape.log")), InvalidArgument, "relative"),
        row("log file that is a symlink", Call::Create(logging("planted.log")), InvalidArgument, "symlink"),
        row("log dir that is a symlink", Call::Create(logging("planted-dir/sentinel")), InvalidArgument, "symlink"),
        // Image references.
        row("pull, empty reference", Call::Pull("".into()), InvalidArgument, ""),
        row("pull, upper case", Call::Pull("Busybox".into()), InvalidArgument, "Busybox"),
        row("pull, short digest", Call::Pull("busybox@sha256:short".into()), InvalidArgument, "sha256:short"),
        row("pull, empty path part", Call::Pull("a//b".into()), InvalidArgument, "a//b"),
        row("pull, overlong", Call::Pull(format!("{long}/{long}/{long}")), InvalidArgument, ""),
        row("pull, control characters", Call::Pull("busy\nbox".into()), InvalidArgument, ""),
        row("image status, malformed", Call::ImageStatus("a//b".into()), InvalidArgument, "a//b"),
        row("create, malformed image", Call::Create(imaged("a//b")), InvalidArgument, "a//b"),
        row("create, absent image", Call::Create(imaged("127.0.0.1:1/never:pushed")), NotFound, "never:pushed"),
        // Processes.
        row("working dir in /proc", Call::Create(working("/proc/self/fd/7")), InvalidArgument, "/proc"),
        row("working dir into /proc by ..", Call::Create(working("/tmp/../proc/self/cwd")), InvalidArgument, "/proc"),
        row("relative working dir", Call::Create(working("tmp")), InvalidArgument, "not an absolute path"),
        row("uid 2^31", Call::Create(with_security(h.container("u"), run_as(1 << 31))), InvalidArgument, "2147483648"),
        row(
            "uid 2^32-1",
            Call::Create(with_security(h.container("u"), run_as(4294967295))),
            InvalidArgument,
            "4294967295",
        ),
        row(
            "uid 2^63-1",
            Call::Create(with_security(h.container("u"), run_as(i64::MAX))),
            InvalidArgument,
            "not a valid id",
        ),
        row(
            "negative uid",
            Call::Create(with_security(h.container("u"), run_as(-1))),
            InvalidArgument,
            "not a valid id",
        ),
        row("env key with =", Call::Create(with_env(h.container("e"), "A=B", "c")), InvalidArgument, "environment"),
        row(
            "env key with a newline",
            Call::Create(with_env(h.container("e"), "A\nB", "c")),
            InvalidArgument,
            "environment",
        ),
        row(
            "env value with NUL",
            Call::Create(with_env(h.container("e"), "A", "b\0c")),
            InvalidArgument,
            "environment",
        ),
        row(
            "1 MiB env value",
            Call::Create(with_env(h.container("e"), "BIG", &"x".repeat(1 << 20))),
            InvalidArgument,
            "131072",
        ),
        // Sysctls that would reach the host or other keys.
        row(
            "sysctl value injecting a key",
            Call::RunPod(sysctl("kernel.shmmax", "1\nkernel.core_pattern=|/x")),
            InvalidArgument,
            "kernel.shmmax",
        ),
        row(
            "sysctl key with a path",
            Call::RunPod(sysctl("net.ipv4/../../kernel/core_pattern", "x")),
            InvalidArgument,
            "core_pattern",
        ),
        row(
            "sysctl not namespaced",
            Call::RunPod(sysctl("kernel.core_pattern", "|/x")),
            InvalidArgument,
            "kernel.core_pattern",
        ),
        row("sysctl key with =", Call::RunPod(sysctl("kernel.shmmax=1", "1")), InvalidArgument, "kernel.shmmax"),
    ];
    h.run_table(rows).await;
    assert!(!PathBuf::from("/tmp/escape.log").exists());
    h.s.teardown().await;
}

#[tokio::test]
async fn processes_that_may_run_run_correctly() {
    let mut h = hostile(71).await;
    let before = h.world().await;

    // The largest uid Kubernetes allows runs as itself (past it is refused: see the table).
    let id = h.s.run(with_security(h.container("big-uid"), run_as(i32::MAX.into()))).await;
    assert_eq!(h.s.exec_ok(&id, &["id", "-u"]).await, "2147483647\n");
    remove(&mut h, &id, "big-uid").await;

    // A newline in HOME is part of HOME's value: it sets no other variable.
    let id = h.s.run(with_env(h.container("home"), "HOME", "/tmp\nEVIL=1")).await;
    assert_eq!(h.s.exec_ok(&id, &["sh", "-c", "echo \"${EVIL-unset}\""]).await, "unset\n");
    assert_eq!(h.s.exec_ok(&id, &["sh", "-c", "printf %s \"$HOME\""]).await, "/tmp\nEVIL=1");
    remove(&mut h, &id, "home").await;

    // 1 MiB of environment in 1 KiB variables: under the kernel's limits, it runs.
    let mut config = h.container("many-env");
    for i in 0..1024 {
        config.envs.push(KeyValue { key: format!("V{i}"), value: "v".repeat(1024) });
    }
    let id = h.s.run(config).await;
    assert_eq!(h.s.exec_ok(&id, &["sh", "-c", "printf %s \"$V1023\" | wc -c"]).await.trim(), "1024");
    remove(&mut h, &id, "many-env").await;
    h.check("the running rows", &before).await;

    // `yes` never ends by itself: its output passes the cap and it is killed, with or without
    // a timeout, and the daemon's memory holds.
    for timeout in [60, 0] {
        let request = ExecSyncRequest { container_id: h.canary.clone(), cmd: vec!["yes".into()], timeout };
        let err = h.s.client.runtime.exec_sync(request).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "timeout {timeout}: {err:?}");
        assert!(err.message().contains("16777216"), "{err:?}");
        h.check("ExecSync of yes", &before).await;
    }
    let (_, ps, _) = h.s.exec(&h.canary.clone(), &["ps", "-o", "comm"], 10).await.unwrap();
    assert!(!ps.lines().any(|l| l.trim() == "yes"), "yes still runs:\n{ps}");
    let rss = fs::read_to_string(format!("/proc/{}/status", h.s.daemon.child.id())).unwrap();
    let rss_kib: u64 = rss
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    assert!(rss_kib < 512 << 10, "crisp holds {rss_kib} KiB after the big outputs");
    h.s.teardown().await;
}

/// Removes a container and, as the kubelet does, its log.
async fn remove(h: &mut Hostile, id: &str, name: &str) {
    h.s.client.runtime.remove_container(RemoveContainerRequest { container_id: id.into() }).await.unwrap();
    fs::remove_file(h.s.lab.path(&format!("logs/{name}.log"))).unwrap();
}

/// A raw tar entry: name, type, link target.
type RawEntry<'a> = (&'a [u8], EntryType, Option<&'a [u8]>);

/// Pushes a one-layer image of `entries` to the lab registry as `crisp/hostile:TAG`.
async fn push_layer(h: &Hostile, tag: &str, entries: &[RawEntry<'_>], contents: &[u8]) -> String {
    let mut layer = LayerBuilder::default();
    for (name, kind, link) in entries {
        layer.raw(name, *kind, *link, contents).unwrap();
    }
    push_built(h, tag, layer).await
}

async fn push_built(h: &Hostile, tag: &str, layer: LayerBuilder) -> String {
    let image = Image::build(&ImageSpec::default(), vec![layer.finish().unwrap()]).unwrap();
    let addr = h.s.registry.registry().addr();
    let reference = oci_client::Reference::with_tag(addr.to_string(), "crisp/hostile".into(), tag.into());
    push(&lab_client(), &reference, &image, &h.s.registry.registry().auth()).await.unwrap();
    format!("{addr}/crisp/hostile:{tag}")
}

/// A registry of crafted documents on 127.0.0.1: `/v2/` answers, and each path in `documents`
/// serves its bytes as an OCI manifest; anything else is 404. An HTTP peer crisp pulls from, as
/// a hostile registry would be; not a stand-in for any part of crisp.
async fn crafted_registry(documents: HashMap<String, Vec<u8>>) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let documents = std::sync::Arc::new(documents);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let documents = documents.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let Ok(Some(request)) = lines.next_line().await else { return };
                while let Ok(Some(header)) = lines.next_line().await {
                    if header.is_empty() {
                        break;
                    }
                }
                let mut parts = request.split(' ');
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, body): (&str, &[u8]) = match documents.get(path) {
                    _ if path == "/v2/" => ("200 OK", b"{}"),
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"no\"}]}"),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = write.write_all(head.as_bytes()).await;
                if method != "HEAD" {
                    let _ = write.write_all(body).await;
                }
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn hostile_images_are_refused_and_harm_nothing() {
    use EntryType::{Directory, Link, Regular, Symlink};
    let mut h = hostile(72).await;
    let sentinel = h.sentinel.to_str().unwrap().as_bytes().to_vec();
    let lab_dir = h.s.lab.dir.path().to_str().unwrap().as_bytes().to_vec();

    // Manifests and configs only a hostile registry serves.
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let descriptor = |media: &str, bytes: &[u8], extra: &str| {
        format!(r#"{{"mediaType":"{media}","digest":"{}","size":{}{extra}}}"#, digest(bytes), bytes.len())
    };
    let config_descriptor = descriptor("application/vnd.oci.image.config.v1+json", config, "");
    let layer =
        descriptor("application/vnd.oci.image.layer.v1.tar+gzip", b"layer", r#","urls":["http://127.0.0.1:1/layer"]"#);
    let huge = format!(
        r#"{{"schemaVersion":2,"config":{config_descriptor},"layers":[],"annotations":{{"pad":"{}"}}}}"#,
        "x".repeat(5 << 20)
    );
    let both = format!(r#"{{"schemaVersion":2,"manifests":[],"config":{config_descriptor},"layers":[]}}"#);
    let foreign = format!(r#"{{"schemaVersion":2,"config":{config_descriptor},"layers":[{layer}]}}"#);
    let big_config = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        digest(b"big"),
        5 << 20
    );
    let crafted = crafted_registry(HashMap::from([
        ("/v2/crafted/huge/manifests/latest".to_owned(), huge.into_bytes()),
        ("/v2/crafted/both/manifests/latest".to_owned(), both.into_bytes()),
        ("/v2/crafted/foreign/manifests/latest".to_owned(), foreign.into_bytes()),
        ("/v2/crafted/big-config/manifests/latest".to_owned(), big_config.into_bytes()),
    ]))
    .await;

    // Layers of issue 3's list, through the lab's registry.
    let mut bomb = LayerBuilder::default();
    bomb.file("zeros", 0o644, &vec![0; 64 << 20]).unwrap();
    let layers = [
        ("dotdot", push_layer(&h, "dotdot", &[(b"../../escaped", Regular, None)], b"gotcha").await, "escaped"),
        ("absolute", push_layer(&h, "absolute", &[(b"/escaped", Regular, None)], b"gotcha").await, "escaped"),
        (
            "through-symlink",
            push_layer(
                &h,
                "through-symlink",
                &[(b"a", Symlink, Some(&lab_dir)), (b"a/sentinel", Regular, None)],
                b"gotcha",
            )
            .await,
            "a/sentinel",
        ),
        ("hardlink-out", push_layer(&h, "hardlink-out", &[(b"h", Link, Some(b"../../../etc/passwd"))], b"").await, "h"),
        ("hardlink-absolute", push_layer(&h, "hardlink-absolute", &[(b"h", Link, Some(&sentinel))], b"").await, "h"),
        (
            "whiteout-dotdot",
            push_layer(&h, "whiteout-dotdot", &[(b"d", Directory, None), (b"d/.wh..", Regular, None)], b"").await,
            ".wh..",
        ),
        ("bomb", push_built(&h, "bomb", bomb).await, "16777216"),
    ];

    use Code::FailedPrecondition;
    let mut rows = vec![
        row(
            "manifest over 4 MiB",
            Call::Pull(format!("{crafted}/crafted/huge")),
            FailedPrecondition,
            "4194304 byte limit",
        ),
        row("manifests and layers", Call::Pull(format!("{crafted}/crafted/both")), FailedPrecondition, "both an index"),
        row("foreign urls", Call::Pull(format!("{crafted}/crafted/foreign")), FailedPrecondition, "foreign URLs"),
        row(
            "config over 4 MiB",
            Call::Pull(format!("{crafted}/crafted/big-config")),
            FailedPrecondition,
            "the config is 5242880 bytes",
        ),
    ];
    for (name, reference, fragment) in layers {
        rows.push(Row { name, call: Call::Pull(reference), code: FailedPrecondition, fragment: fragment.into() });
    }
    h.run_table(rows).await;
    assert!(fs::read_dir(h.s.lab.path("root/image/layers")).unwrap().count() == 1, "only busybox's layer is unpacked");
    for place in [h.s.lab.path(""), h.s.lab.path("root/image"), h.s.lab.path("root/image/layers")] {
        assert!(!place.join("escaped").exists(), "{}", place.display());
    }

    // A chmod through a symlink and a hard link to it is harmless, so it pulls, and the
    // symlink's target keeps its mode.
    let before = h.world().await;
    let mut chmod = LayerBuilder::default();
    chmod.raw(b"s", Symlink, Some(&sentinel), b"").unwrap();
    chmod.raw(b"h", Link, Some(b"s"), b"").unwrap();
    chmod.raw(b"h", Regular, None, b"mine").unwrap();
    let reference = push_built(&h, "chmod", chmod).await;
    let pulled = h.s.client.image.pull_image(PullImageRequest {
        image: Some(CriImageSpec { image: reference.clone(), ..Default::default() }),
        ..Default::default()
    });
    pulled.await.unwrap_or_else(|e| panic!("{e:?}\n{}", h.s.daemon.logs()));
    let remove = RemoveImageRequest { image: Some(CriImageSpec { image: reference, ..Default::default() }) };
    h.s.client.image.remove_image(remove).await.unwrap();
    h.check("a chmod through links", &before).await;
    h.s.teardown().await;
}
