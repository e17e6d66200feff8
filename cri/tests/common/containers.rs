//! A daemon with the lab registry's busybox pulled and one ready pod, for container tests: create,
//! start, exec and inspect its containers, then remove the pod and check nothing is left.

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use crisp_conformance::client::CriClient;
use crisp_conformance::lab::Lab as ImageLab;
use crisp_conformance::lab::image::LabImage;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListContainersRequest, PodSandboxConfig, PodSandboxMetadata, PullImageRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest,
};

use super::{Daemon, Lab};

pub struct Setup {
    pub lab: Lab,
    pub registry: ImageLab,
    pub client: CriClient,
    pub daemon: Daemon,
    pub pod: String,
    pub pod_config: PodSandboxConfig,
    /// The lab's busybox, pulled.
    pub image: String,
}

/// How the daemon and the pod are made.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// A privileged pod, which privileged containers need.
    pub privileged_pod: bool,
    /// The daemon (and so its monitors and containers) in a private mount namespace of its own,
    /// where a test may change mounts and their propagation without touching the host's.
    pub own_mount_namespace: bool,
}

/// A daemon on the lab network `n` with busybox pulled and a pod running.
pub async fn setup(n: u8) -> Setup {
    setup_with(n, Options::default()).await
}

pub async fn setup_with(n: u8, options: Options) -> Setup {
    setup_configured(n, options, |_| String::new()).await
}

/// [`setup_with`] whose config gets what `extra` writes for the lab (TOML appended).
pub async fn setup_configured(n: u8, options: Options, extra: impl FnOnce(&Lab) -> String) -> Setup {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::with_network(n);
    lab.write_config(&extra(&lab));
    let daemon = if options.own_mount_namespace { lab.start_in_own_mount_namespace() } else { lab.start() };
    let client = daemon.client().await;
    let mut pod_config = PodSandboxConfig {
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
    if options.privileged_pod {
        pod_config.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext { privileged: true, ..Default::default() }),
            ..Default::default()
        });
    }
    let mut s = Setup { lab, registry, client, daemon, pod: String::new(), pod_config, image: String::new() };
    s.image = s.pull(LabImage::Busybox).await;
    let request = RunPodSandboxRequest { config: Some(s.pod_config.clone()), runtime_handler: String::new() };
    s.pod = match s.client.runtime.run_pod_sandbox(request).await {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(e) => panic!("RunPodSandbox: {e}\n{}", s.daemon.logs()),
    };
    s
}

impl Setup {
    /// Pulls a lab image, returning the reference containers name it by.
    pub async fn pull(&mut self, which: LabImage) -> String {
        let image = format!("{}/{which}", self.registry.registry().addr());
        let request = PullImageRequest {
            image: Some(ImageSpec { image: image.clone(), ..Default::default() }),
            ..Default::default()
        };
        if let Err(e) = self.client.image.pull_image(request).await {
            panic!("pulling {image}: {e}\n{}", self.daemon.logs());
        }
        image
    }

    pub fn config(&self, name: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: self.image.clone(), ..Default::default() }),
            command: command.iter().map(|c| c.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: HashMap::from([("name".into(), name.into())]),
            ..Default::default()
        }
    }

    pub async fn create(&mut self, config: ContainerConfig) -> Result<String, tonic::Status> {
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

    pub async fn start(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.client.runtime.start_container(StartContainerRequest { container_id: id.into() }).await.map(|_| ())
    }

    /// Creates and starts a container that must run, failing the test with crisp's log if not.
    pub async fn run(&mut self, config: ContainerConfig) -> String {
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let id = match self.create(config).await {
            Ok(id) => id,
            Err(e) => panic!("creating {name}: {e}\n{}", self.daemon.logs()),
        };
        if let Err(e) = self.start(&id).await {
            panic!("starting {name}: {e}\n{}", self.daemon.logs());
        }
        id
    }

    pub async fn status(&mut self, id: &str) -> ContainerStatus {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: false };
        self.client.runtime.container_status(request).await.unwrap().into_inner().status.unwrap()
    }

    /// The container's init process as the host sees it, from the verbose status.
    pub async fn pid(&mut self, id: &str) -> u32 {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: true };
        let info = self.client.runtime.container_status(request).await.unwrap().into_inner().info;
        let record: serde_json::Value = serde_json::from_str(&info["info"]).expect("verbose info is JSON");
        let pid = record["pid"].as_u64().unwrap_or_else(|| panic!("no pid in the verbose info: {record}"));
        pid as u32
    }

    pub async fn wait_exited(&mut self, id: &str) -> ContainerStatus {
        for _ in 0..500 {
            let status = self.status(id).await;
            if status.state == ContainerState::ContainerExited as i32 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("container {id} did not exit:\n{}", self.daemon.logs());
    }

    pub async fn exec(&mut self, id: &str, cmd: &[&str], timeout: i64) -> Result<(i32, String, String), tonic::Status> {
        let request =
            ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|c| c.to_string()).collect(), timeout };
        let r = self.client.runtime.exec_sync(request).await?.into_inner();
        Ok((
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        ))
    }

    /// The stdout of a command that must succeed.
    pub async fn exec_ok(&mut self, id: &str, cmd: &[&str]) -> String {
        match self.exec(id, cmd, 10).await {
            Ok((0, out, _)) => out,
            Ok((code, out, err)) => panic!("{cmd:?} exited {code}:\nstdout: {out}\nstderr: {err}"),
            Err(e) => panic!("ExecSync {cmd:?}: {e}\n{}", self.daemon.logs()),
        }
    }

    /// The exit code and stderr of a command that must fail.
    pub async fn exec_fails(&mut self, id: &str, cmd: &[&str]) -> (i32, String) {
        match self.exec(id, cmd, 10).await {
            Ok((0, out, err)) => panic!("{cmd:?} succeeded:\nstdout: {out}\nstderr: {err}"),
            Ok((code, _, err)) => (code, err),
            Err(e) => panic!("ExecSync {cmd:?}: {e}\n{}", self.daemon.logs()),
        }
    }

    /// Removes the pod, checking it takes its containers and leaves no mounts under the lab's
    /// dir in the daemon's mount namespace (the host's, unless it has its own).
    pub async fn teardown(mut self) {
        self.client
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: self.pod.clone() })
            .await
            .unwrap();
        let left = self.client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner();
        assert!(left.containers.is_empty(), "removing the pod removes its containers");
        let dir = self.lab.dir.path().to_string_lossy().into_owned();
        let netns_dir = self.lab.path("state/netns").to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string(format!("/proc/{}/mountinfo", self.daemon.child.id())).unwrap();
        let mounts: Vec<_> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir) && *m != netns_dir)
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    }
}
