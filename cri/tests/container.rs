//! End-to-end: containers over the socket, from the lab's busybox image, on runc.

mod common;

use std::fs;
use std::time::Duration;

use common::assert_contains;
use common::containers::setup;
use k8s_cri::v1::{
    ContainerState, ContainerStatusRequest, LinuxContainerConfig, LinuxContainerResources, RemoveContainerRequest,
    StopContainerRequest,
};
use tonic::Code;

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
    // The image as pod status shows it: by repo digest, and its ID apart.
    assert!(status.image_ref.contains("@sha256:"), "{}", status.image_ref);
    assert!(status.image_id.starts_with("sha256:"), "{}", status.image_id);
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

#[tokio::test]
async fn the_termination_message_is_reported() {
    let mut s = setup(23).await;
    let file = s.lab.path("termination-log");
    fs::write(&file, "").unwrap();
    let mut config = s.config("last-words", &["sh", "-c", "echo -n 'out of cheese' > /dev/termination-log; exit 1"]);
    config.annotations.insert("io.kubernetes.container.terminationMessagePath".into(), "/dev/termination-log".into());
    config.mounts.push(k8s_cri::v1::Mount {
        container_path: "/dev/termination-log".into(),
        host_path: file.to_string_lossy().into_owned(),
        ..Default::default()
    });
    let id = s.run(config).await;
    let status = s.wait_exited(&id).await;
    assert_eq!((status.exit_code, status.reason.as_str(), status.message.as_str()), (1, "Error", "out of cheese"));
    s.teardown().await;
}

#[tokio::test]
async fn resources_are_reported_and_updated() {
    let mut s = setup(24).await;
    let mut config = s.config("sized", &["sleep", "1000"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 256,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = s.run(config).await;
    let reported = |status: &k8s_cri::v1::ContainerStatus| {
        let linux = status.resources.as_ref().and_then(|r| r.linux.clone()).expect("resources reported");
        (linux.memory_limit_in_bytes, linux.cpu_shares)
    };
    assert_eq!(reported(&s.status(&id).await), (64 << 20, 256));

    let update = k8s_cri::v1::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    };
    s.client.runtime.update_container_resources(update).await.unwrap();
    let cgroup = |controller: &str, file: &str| {
        fs::read_to_string(format!("/sys/fs/cgroup/{controller}/crisp/crisp-{id}/{file}")).unwrap().trim().to_owned()
    };
    assert_eq!(cgroup("memory", "memory.limit_in_bytes"), (128u64 << 20).to_string());
    assert_eq!(cgroup("cpu", "cpu.shares"), "512");
    assert_eq!(reported(&s.status(&id).await), (128 << 20, 512));
    s.teardown().await;
}
