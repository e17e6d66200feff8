//! End-to-end: containers over the socket, from the lab's busybox image, on runc.

mod common;

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use common::{Lab, assert_contains};
use crisp_conformance::client::CriClient;
use crisp_conformance::lab::Lab as ImageLab;
use crisp_conformance::lab::image::LabImage;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig, LinuxContainerResources,
    ListContainersRequest, PodSandboxConfig, PodSandboxMetadata, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
};
use tonic::Code;

struct Setup {
    lab: Lab,
    _registry: ImageLab,
    client: CriClient,
    daemon: common::Daemon,
    pod: String,
    pod_config: PodSandboxConfig,
    image: String,
}

async fn setup(n: u8) -> Setup {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::with_network(n);
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let image = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    client
        .image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec { image: image.clone(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap();
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "ctr".into(),
            uid: "ctr-uid".into(),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: "ctr-pod".into(),
        log_directory: lab.path("logs").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let pod = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod_config.clone()), runtime_handler: String::new() })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    Setup { lab, _registry: registry, client, daemon, pod, pod_config, image }
}

impl Setup {
    fn config(&self, name: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: self.image.clone(), ..Default::default() }),
            command: command.iter().map(|c| c.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: HashMap::from([("name".into(), name.into())]),
            ..Default::default()
        }
    }

    async fn create(&mut self, config: ContainerConfig) -> Result<String, tonic::Status> {
        self.client
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: self.pod.clone(),
                config: Some(config),
                sandbox_config: Some(self.pod_config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    async fn start(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.client.runtime.start_container(StartContainerRequest { container_id: id.into() }).await.map(|_| ())
    }

    async fn status(&mut self, id: &str) -> ContainerStatus {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: false };
        self.client.runtime.container_status(request).await.unwrap().into_inner().status.unwrap()
    }

    async fn wait_exited(&mut self, id: &str) -> ContainerStatus {
        for _ in 0..500 {
            let status = self.status(id).await;
            if status.state == ContainerState::ContainerExited as i32 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("container {id} did not exit:\n{}", self.daemon.logs());
    }

    async fn exec(&mut self, id: &str, cmd: &[&str], timeout: i64) -> Result<(i32, String, String), tonic::Status> {
        let request =
            ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|c| c.to_string()).collect(), timeout };
        let r = self.client.runtime.exec_sync(request).await?.into_inner();
        Ok((
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        ))
    }

    async fn teardown(mut self) {
        self.client
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: self.pod.clone() })
            .await
            .unwrap();
        let left = self.client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner();
        assert!(left.containers.is_empty(), "removing the pod removes its containers");
        let dir = self.lab.dir.path().to_string_lossy().into_owned();
        let netns_dir = self.lab.path("state/netns").to_string_lossy().into_owned();
        let mounts: Vec<_> = common::net::mounts_under(&dir).into_iter().filter(|m| *m != netns_dir).collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    }
}

#[tokio::test]
async fn a_container_runs_logs_execs_and_stops() {
    let mut s = setup(20).await;
    let id = s.create(s.config("talker", &["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"])).await.unwrap();
    assert_eq!(s.status(&id).await.state, ContainerState::ContainerCreated as i32);
    // A retry gets the same container.
    assert_eq!(
        s.create(s.config("talker", &["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"])).await.unwrap(),
        id
    );

    s.start(&id).await.unwrap();
    let status = s.status(&id).await;
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    assert!(status.started_at >= status.created_at && status.created_at > 0);
    assert_eq!(s.start(&id).await.unwrap_err().code(), Code::FailedPrecondition);

    let (code, out, _) = s.exec(&id, &["id"], 10).await.unwrap();
    assert_eq!(code, 0);
    assert_contains(&out, "uid=0(root)");
    let (code, out, err) = s.exec(&id, &["sh", "-c", "cat /etc/hostname; echo bad >&2; exit 5"], 10).await.unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (5, "ctr-pod\n", "bad\n"));
    assert_eq!(s.exec(&id, &["sleep", "100"], 1).await.unwrap_err().code(), Code::DeadlineExceeded);

    let log = fs::read_to_string(s.lab.path("logs/talker.log")).unwrap();
    assert_contains(&log, " stdout F hello\n");
    assert_contains(&log, " stderr F oops\n");

    s.client.runtime.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 1 }).await.unwrap();
    let status = s.status(&id).await;
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    // Not PID 1 (the pause is, in the pod's PID namespace): SIGTERM ends it.
    assert_eq!((status.exit_code, status.reason.as_str()), (143, "Error"));
    s.client.runtime.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 1 }).await.unwrap();
    s.client.runtime.remove_container(RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    s.client.runtime.remove_container(RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    let err = s.client.runtime.container_status(ContainerStatusRequest { container_id: id, verbose: false }).await;
    assert_eq!(err.unwrap_err().code(), Code::NotFound);
    s.teardown().await;
}

#[tokio::test]
async fn exit_codes_reasons_and_oom() {
    let mut s = setup(21).await;
    let ok = s.create(s.config("ok", &["true"])).await.unwrap();
    let bad = s.create(s.config("bad", &["sh", "-c", "exit 3"])).await.unwrap();
    let mut hungry = s.config("hungry", &["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"]);
    hungry.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources { memory_limit_in_bytes: 32 << 20, ..Default::default() }),
        ..Default::default()
    });
    let hungry = s.create(hungry).await.unwrap();
    for id in [&ok, &bad, &hungry] {
        s.start(id).await.unwrap();
    }
    let status = s.wait_exited(&ok).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    assert!(status.finished_at >= status.started_at);
    let status = s.wait_exited(&bad).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    let status = s.wait_exited(&hungry).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "OOMKilled"));
    s.teardown().await;
}

#[tokio::test]
async fn containers_outlive_a_killed_daemon() {
    let mut s = setup(22).await;
    let steady = s.create(s.config("steady", &["sleep", "1000"])).await.unwrap();
    let brief = s.create(s.config("brief", &["sh", "-c", "sleep 2; exit 7"])).await.unwrap();
    s.start(&steady).await.unwrap();
    s.start(&brief).await.unwrap();

    s.daemon.signal(libc::SIGKILL);
    s.daemon.wait_exit(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.daemon = s.lab.start();
    s.client = s.daemon.client().await;

    assert_eq!(s.status(&steady).await.state, ContainerState::ContainerRunning as i32);
    let status = s.status(&brief).await;
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::ContainerExited as i32, 7),
        "an exit while crisp was down"
    );
    let (code, _, _) = s.exec(&steady, &["true"], 10).await.unwrap();
    assert_eq!(code, 0);
    s.client.runtime.stop_container(StopContainerRequest { container_id: steady.clone(), timeout: 0 }).await.unwrap();
    assert_eq!(s.status(&steady).await.exit_code, 137);
    s.teardown().await;
}
