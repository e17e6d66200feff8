//! Load (issue 9): pods held while readers call the read RPCs and churners run pods through
//! their life, through `crisp-conformance`'s load workload against a real crisp. No RPC may
//! fail, nothing may be left once every pod is gone, and the daemon restarted again and again
//! under the load (SIGKILL and SIGTERM in turn) must list every held pod and container as they
//! were. CI runs a small load; `CRISP_LOAD_PODS`, `CRISP_LOAD_SECONDS`, `CRISP_LOAD_READERS`,
//! `CRISP_LOAD_CHURNERS` and `CRISP_LOAD_RESTARTS` give issue 9's full size.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use common::net::{PodNet, mounts_under, pod_cgroups, processes_mentioning};
use common::{Daemon, Lab};
use crisp_conformance::bench::Target;
use crisp_conformance::bench::load::{self, Held, LoadConfig, LoadReport, Usage};
use crisp_conformance::client::{CriClient, Endpoint};
use crisp_conformance::suite::TestImages;
use k8s_cri::v1::{
    ContainerState, ContainerStatusRequest, ListContainersRequest, ListPodSandboxRequest, PodSandboxState,
};

/// Open fds and threads the daemon may hold beyond its count before the load, once every pod
/// is gone: connections the kernel has not yet shown closed, a thread finishing its task.
const FD_SLACK: u64 = 8;
const THREAD_SLACK: u64 = 4;
/// Idle threads of tokio's blocking pool leave after its 10 s keep-alive: the longest the
/// daemon's thread count is waited for to come back down.
const THREADS_SETTLE: Duration = Duration::from_secs(60);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn config(tolerate_unavailable: bool) -> LoadConfig {
    LoadConfig {
        pods: env_or("CRISP_LOAD_PODS", 20),
        containers: NonZeroUsize::new(2).unwrap(),
        readers: env_or("CRISP_LOAD_READERS", 4),
        churners: env_or("CRISP_LOAD_CHURNERS", 2),
        duration: Duration::from_secs(env_or("CRISP_LOAD_SECONDS", 15)),
        tolerate_unavailable,
    }
}

/// The two tests load the host each on their own: together they would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Setup {
    lab: Lab,
    net: PodNet,
    daemon: Daemon,
    target: Target,
    images: TestImages,
    _registry: crisp_conformance::lab::Lab,
}

async fn setup(n: u8) -> Setup {
    let registry = crisp_conformance::lab::Lab::start().await.expect("starting the test registry");
    let images = TestImages::from_lab(&registry, false);
    let lab = Lab::new();
    let net = lab.set_network(n, "");
    lab.write_config("");
    let daemon = lab.start();
    let target = target(&daemon).await;
    Setup { lab, net, daemon, target, images, _registry: registry }
}

async fn target(daemon: &Daemon) -> Target {
    let endpoint = Endpoint::parse(daemon.socket.to_str().unwrap()).unwrap();
    Target { client: CriClient::connect(&endpoint, &endpoint).await.expect("connecting to crisp"), endpoint }
}

fn assert_no_errors(report: &LoadReport, daemon: &Daemon) {
    assert!(report.errors.is_empty(), "RPCs failed under load:\n{report}\n{}", tail(&daemon.logs()));
    for line in &report.rpcs {
        assert!(line.calls > 0, "{} never answered:\n{report}", line.rpc);
    }
    assert_eq!(report.rpcs.len(), 14, "not every RPC was called:\n{report}");
    assert!(report.churn_cycles > 0, "no churner took a pod through its life:\n{report}");
}

fn tail(logs: &str) -> &str {
    let mut start = logs.len().saturating_sub(20_000);
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    &logs[start..]
}

/// Everything crisp made for the run's pods is gone, and the daemon holds no more fds or
/// threads than before the load, give or take the slack.
async fn assert_nothing_left(setup: &Setup, report: &LoadReport) {
    let Setup { lab, net, daemon, .. } = setup;
    let mut client = daemon.client().await;
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    let containers = client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner();
    assert!(pods.is_empty() && containers.containers.is_empty(), "left listed: {pods:?} {containers:?}");

    let mut left = Vec::new();
    for dir in ["state/netns", "root/pods", "state/pods", "root/containers", "state/containers"] {
        for entry in std::fs::read_dir(lab.path(dir)).into_iter().flatten().flatten() {
            left.push(format!("{dir}/{}", entry.file_name().to_string_lossy()));
        }
    }
    left.extend(net.reserved_ips().into_iter().map(|ip| format!("IP reservation {ip}")));
    left.extend(net.veths().into_iter().map(|veth| format!("veth {veth} on {}", net.bridge)));
    let dir = lab.dir.path().to_string_lossy().into_owned();
    let netns_dir = lab.path("state/netns").to_string_lossy().into_owned();
    left.extend(mounts_under(&dir).into_iter().filter(|m| *m != netns_dir).map(|m| format!("mount {m}")));
    let daemon_pid = daemon.child.id() as i32;
    left.extend(processes_mentioning(&dir).into_iter().filter(|p| *p != daemon_pid).map(|p| format!("process {p}")));
    for id in &report.pod_ids {
        left.extend(pod_cgroups(id).into_iter().map(|c| format!("cgroup {}", c.display())));
    }
    assert!(
        left.is_empty(),
        "left after every pod was removed ({} pods made):\n{}",
        report.pod_ids.len(),
        left.join("\n")
    );

    let (before, after) = (report.daemon.before, report.daemon.after);
    let (Some(fds_before), Some(threads_before)) = (before.fds, before.threads) else {
        panic!("the daemon's fds and threads could not be read before the load: {before:?}")
    };
    assert!(
        after.fds.is_some_and(|fds| fds <= fds_before + FD_SLACK),
        "the daemon holds more fds after the load than before: {before:?} -> {after:?}\n{report}"
    );
    let settled = tokio::time::Instant::now() + THREADS_SETTLE;
    let mut now = after;
    while now.threads.is_none_or(|t| t > threads_before + THREAD_SLACK) && tokio::time::Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = Usage::read(&setup.target).await;
    }
    assert!(
        now.threads.is_some_and(|t| t <= threads_before + THREAD_SLACK),
        "the daemon keeps more threads {THREADS_SETTLE:?} after the load than before: {before:?} -> {now:?}\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_answers_every_call_and_leaks_nothing() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let setup = setup(90).await;
    let config = config(false);
    let report = load::run(&setup.target, &setup.images, &config).await;
    let report = report.unwrap_or_else(|e| panic!("load: {e}\n{}", tail(&setup.daemon.logs())));
    println!("{report}");
    assert_no_errors(&report, &setup.daemon);
    assert_nothing_left(&setup, &report).await;
}

/// What a held container looked like: its pod, state and process.
type Seen = BTreeMap<String, (String, i32, Option<u32>)>;

/// The held pods' state and their containers' as crisp lists them now, and every problem with
/// what else it lists: a duplicate, a container of no listed pod, a churned object not whole.
async fn observe(lab: &Lab, client: &mut CriClient, held: &Held) -> (BTreeMap<String, i32>, Seen, Vec<String>) {
    let pods = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    let containers =
        client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner().containers;
    let mut problems = Vec::new();
    let pod_ids: BTreeSet<&str> = pods.iter().map(|p| p.id.as_str()).collect();
    if pod_ids.len() != pods.len() {
        problems.push(format!("a pod is listed twice: {:?}", pods.iter().map(|p| &p.id).collect::<Vec<_>>()));
    }
    let container_ids: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    if container_ids.len() != containers.len() {
        problems.push("a container is listed twice".to_owned());
    }
    let held_pods: BTreeSet<&str> = held.pods.iter().map(|p| p.pod_id.as_str()).collect();
    let held_containers: BTreeSet<&str> = held.pods.iter().flat_map(|p| &p.container_ids).map(String::as_str).collect();
    for pod in pods.iter().filter(|p| !held_pods.contains(p.id.as_str())) {
        if pod.state == PodSandboxState::SandboxReady as i32 && !lab.path(&format!("state/netns/{}", pod.id)).exists() {
            problems.push(format!("churned pod {} is ready without its netns", pod.id));
        }
    }
    let mut seen = Seen::new();
    for container in &containers {
        if !pod_ids.contains(container.pod_sandbox_id.as_str()) {
            problems
                .push(format!("container {} of pod {}, which is not listed", container.id, container.pod_sandbox_id));
        }
        let running = container.state == ContainerState::ContainerRunning as i32;
        let pid = if running { container_pid(client, &container.id).await } else { None };
        // A churner may stop its container between the list and the look at its process: only
        // one still running once its process is seen dead is a problem.
        if running && !pid.is_some_and(alive) && still_running(client, &container.id).await {
            problems.push(format!("running container {} has no live process ({pid:?})", container.id));
        }
        if held_containers.contains(container.id.as_str()) {
            seen.insert(container.id.clone(), (container.pod_sandbox_id.clone(), container.state, pid));
        }
    }
    let pods = pods.into_iter().filter(|p| held_pods.contains(p.id.as_str())).map(|p| (p.id, p.state)).collect();
    (pods, seen, problems)
}

async fn container_pid(client: &mut CriClient, id: &str) -> Option<u32> {
    let request = ContainerStatusRequest { container_id: id.into(), verbose: true };
    let info = client.runtime.container_status(request).await.ok()?.into_inner().info;
    let record: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    record["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

async fn still_running(client: &mut CriClient, id: &str) -> bool {
    let request = ContainerStatusRequest { container_id: id.into(), verbose: false };
    let status = client.runtime.container_status(request).await.ok().and_then(|s| s.into_inner().status);
    status.is_some_and(|s| s.state == ContainerState::ContainerRunning as i32)
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarts_under_load_keep_every_held_object() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let restarts: usize = env_or("CRISP_LOAD_RESTARTS", 5);
    let mut setup = setup(91).await;
    let config = config(true);
    let (lab, daemon) = (&setup.lab, &mut setup.daemon);
    let restarted = async |held: Held| {
        let mut client = daemon.client().await;
        let (pods, containers, problems) = observe(lab, &mut client, &held).await;
        assert!(problems.is_empty(), "before any restart:\n{}", problems.join("\n"));
        let ready = PodSandboxState::SandboxReady as i32;
        assert!(pods.len() == held.pods.len() && pods.values().all(|s| *s == ready), "held pods: {pods:?}");
        let running = ContainerState::ContainerRunning as i32;
        assert!(containers.values().all(|(_, state, pid)| *state == running && pid.is_some()), "{containers:?}");
        for restart in 1..=restarts {
            // The load runs a while between restarts, so that each one cuts calls in flight.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let (signal, name) = if restart % 2 == 1 { (libc::SIGKILL, "SIGKILL") } else { (libc::SIGTERM, "SIGTERM") };
            daemon.signal(signal);
            daemon.wait_exit(Duration::from_secs(30)).await;
            *daemon = tokio::task::block_in_place(|| lab.start());
            let mut client = daemon.client().await;
            let (pods_now, containers_now, problems) = observe(lab, &mut client, &held).await;
            let when = format!("after restart {restart} of {restarts} ({name})");
            assert!(problems.is_empty(), "{when}:\n{}\n{}", problems.join("\n"), tail(&daemon.logs()));
            assert_eq!(pods_now, pods, "{when}: the held pods drifted\n{}", tail(&daemon.logs()));
            assert_eq!(containers_now, containers, "{when}: the held containers drifted\n{}", tail(&daemon.logs()));
        }
    };
    let run = load::run_while(&setup.target, &setup.images, &config, restarted).await;
    let (report, ()) = run.unwrap_or_else(|e| panic!("load: {e}\n{}", tail(&setup.daemon.logs())));
    println!("{report}");
    assert_no_errors(&report, &setup.daemon);
    assert_nothing_left(&setup, &report).await;
}
