//! End-to-end: what crisp does when what it depends on fails. CNI plugins and a runtime handler
//! that fail or hang on demand (small scripts in the lab's dir, delegating to Debian's plugins and
//! runc otherwise), a registry that stalls mid-blob, unreadable records, a full disk: each RPC
//! fails with a clear status, leaves nothing behind, and the daemon keeps serving the rest.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::net::{PodNet, mounts_under, processes_mentioning};
use common::{Lab, assert_contains};
use crisp_conformance::client::CriClient;
use crisp_conformance::lab::Lab as ImageLab;
use crisp_conformance::lab::image::LabImage;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    ImageStatusRequest, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest, ListImagesRequest,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatusRequest, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use tonic::Code;

fn pod_config(lab: &Lab, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "failures".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: lab.path("logs").to_string_lossy().into_owned(),
        ..Default::default()
    }
}

async fn run(client: &mut CriClient, config: &PodSandboxConfig, handler: &str) -> Result<String, tonic::Status> {
    let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
    client.runtime.run_pod_sandbox(request).await.map(|r| r.into_inner().pod_sandbox_id)
}

async fn remove(client: &mut CriClient, id: &str) {
    client.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
    client.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
}

async fn pod_ids(client: &mut CriClient) -> Vec<String> {
    let items = client.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner().items;
    items.into_iter().map(|p| p.id).collect()
}

async fn container_ids(client: &mut CriClient) -> Vec<String> {
    let items = client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner().containers;
    items.into_iter().map(|c| c.id).collect()
}

async fn is_ready(client: &mut CriClient, id: &str) -> bool {
    let request = PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
    let status = client.runtime.pod_sandbox_status(request).await.unwrap().into_inner().status.unwrap();
    status.state == PodSandboxState::SandboxReady as i32
}

async fn pull(client: &mut CriClient, image: &str) -> Result<String, tonic::Status> {
    let request =
        PullImageRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
    client.image.pull_image(request).await.map(|r| r.into_inner().image_ref)
}

fn container_config(image: &str, name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: vec!["sleep".into(), "1000".into()],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

async fn create(
    client: &mut CriClient,
    pod: &str,
    config: &PodSandboxConfig,
    container: ContainerConfig,
) -> Result<String, tonic::Status> {
    let request = CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(container),
        sandbox_config: Some(config.clone()),
    };
    client.runtime.create_container(request).await.map(|r| r.into_inner().container_id)
}

fn write_script(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A plugin chained after bridge and portmap that hangs ADD while `<dir>/hang-add` exists and
/// DEL while `<dir>/hang-del` does (touching `<dir>/hanging` first), and is Debian's `tuning`
/// (which passes the result on) otherwise. The config gets `extra` TOML.
fn hanging_plugin_network(lab: &Lab, n: u8, extra: &str) -> (PodNet, PathBuf) {
    let plugins = lab.path("plugins");
    let dir = lab.path("flags");
    fs::create_dir_all(&dir).unwrap();
    let script = plugins.join("crisp-hang");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n\
             hang() {{ touch {dir:?}/hanging; while :; do sleep 1; done; }}\n\
             case \"$CNI_COMMAND\" in\n\
               ADD) [ -e {dir:?}/hang-add ] && hang;;\n\
               DEL) [ -e {dir:?}/hang-del ] && hang;;\n\
             esac\n\
             exec /usr/lib/cni/tuning\n"
        ),
    );
    let net = lab.set_network(n, r#", {"type": "crisp-hang"}"#);
    let config = lab.write_config(extra);
    // A drop-in: the lab's config has a [network] table of its own.
    let dropins = config.parent().unwrap().join("crisp.d");
    fs::create_dir_all(&dropins).unwrap();
    let network = format!("[network]\nplugin_dirs = [\"/usr/lib/cni\", {plugins:?}]\nplugin_timeout = 2\n");
    fs::write(dropins.join("10-plugins.toml"), network).unwrap();
    (net, script)
}

/// A runtime handler `fake`: runc, except that `create` fails while `<dir>/fail-create` exists
/// (with its message in the runtime's JSON log, as runc writes it) and hangs while
/// `<dir>/hang-create` does (touching `<dir>/hanging` first).
fn fake_runtime(lab: &Lab) -> PathBuf {
    let dir = lab.path("flags");
    fs::create_dir_all(&dir).unwrap();
    let script = lab.path("handlers/fake-runc");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n\
             log=; prev=; cmd=\n\
             for a in \"$@\"; do\n\
               [ \"$prev\" = --log ] && log=\"$a\"\n\
               [ \"$a\" = create ] && cmd=create\n\
               prev=\"$a\"\n\
             done\n\
             if [ \"$cmd\" = create ] && [ -e {dir:?}/fail-create ]; then\n\
               echo '{{\"level\":\"error\",\"msg\":\"create refused on purpose\"}}' >>\"$log\"; exit 1\n\
             fi\n\
             if [ \"$cmd\" = create ] && [ -e {dir:?}/hang-create ]; then\n\
               touch {dir:?}/hanging; while :; do sleep 1; done\n\
             fi\n\
             exec /usr/sbin/runc \"$@\"\n"
        ),
    );
    script
}

fn flag(lab: &Lab, name: &str, on: bool) {
    let path = lab.path("flags").join(name);
    if on {
        fs::write(path, "").unwrap();
    } else {
        fs::remove_file(path).unwrap();
    }
}

/// Waits (up to a generous bound that only catches a broken test) for `what` to hold.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The plugin or runtime that was killed is gone, not left running.
async fn assert_killed(script: &Path) {
    let text = script.to_string_lossy().into_owned();
    wait_for(&format!("{text} killed"), || processes_mentioning(&text).is_empty()).await;
}

/// What a pod that failed to come up must not leave: records, runtime state, netns and shm
/// mounts, monitors, addresses and veths.
fn assert_no_pod_left(lab: &Lab, net: Option<&PodNet>) {
    let empty = |dir: &str| fs::read_dir(lab.path(dir)).map(|d| d.count()).unwrap_or(0) == 0;
    assert!(empty("root/pods"), "pod records left");
    assert!(empty("state/pods"), "pod state left");
    assert!(empty("state/netns"), "netns files left");
    let dir = lab.dir.path().to_string_lossy().into_owned();
    let netns_dir = lab.path("state/netns").to_string_lossy().into_owned();
    let mounts: Vec<String> = mounts_under(&dir).into_iter().filter(|m| *m != netns_dir).collect();
    assert_eq!(mounts, Vec::<String>::new(), "mounts left");
    assert_eq!(processes_mentioning(&format!("{dir}/state/pods")), Vec::<i32>::new(), "monitors left");
    if let Some(net) = net {
        assert_eq!(net.reserved_ips(), Vec::<String>::new(), "addresses left reserved");
        assert_eq!(net.veths(), Vec::<String>::new(), "veths left");
    }
}

#[tokio::test]
async fn a_cni_plugin_hanging_on_add_is_killed_at_the_plugin_timeout() {
    let lab = Lab::new();
    let (net, script) = hanging_plugin_network(&lab, 75, "");
    flag(&lab, "hang-add", true);
    let daemon = lab.start();
    let mut client = daemon.client().await;

    let err = run(&mut client, &pod_config(&lab, "hung"), "").await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}\n{}", daemon.logs());
    assert_contains(err.message(), "CNI plugin crisp-hang ADD: killed after 2s");
    assert!(lab.path("flags/hanging").exists(), "the plugin was reached and hung");
    assert_killed(&script).await;
    assert_eq!(pod_ids(&mut client).await, Vec::<String>::new());
    // bridge, earlier in the chain, got an address and a veth: DEL freed them.
    assert_no_pod_left(&lab, Some(&net));

    flag(&lab, "hang-add", false);
    let id = run(&mut client, &pod_config(&lab, "hung"), "").await.unwrap();
    remove(&mut client, &id).await;
    assert_no_pod_left(&lab, Some(&net));
}

#[tokio::test]
async fn a_cni_plugin_hanging_on_del_bounds_stop_pod_sandbox() {
    let lab = Lab::new();
    let (net, script) = hanging_plugin_network(&lab, 76, "");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let id = run(&mut client, &pod_config(&lab, "stuck-del"), "").await.unwrap();

    flag(&lab, "hang-del", true);
    let request = StopPodSandboxRequest { pod_sandbox_id: id.clone() };
    let err = client.runtime.stop_pod_sandbox(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}\n{}", daemon.logs());
    assert_contains(err.message(), "CNI plugin crisp-hang DEL: killed after 2s");
    assert_killed(&script).await;
    // The pod stays, for the kubelet's retry to finish.
    assert_eq!(pod_ids(&mut client).await, vec![id.clone()]);
    assert!(!is_ready(&mut client, &id).await);

    flag(&lab, "hang-del", false);
    remove(&mut client, &id).await;
    assert_eq!(pod_ids(&mut client).await, Vec::<String>::new());
    assert_no_pod_left(&lab, Some(&net));
}

#[tokio::test]
async fn a_runtime_failing_create_fails_the_rpc_with_its_message_and_leaves_nothing() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    let net = lab.set_network(77, "");
    let fake = fake_runtime(&lab);
    lab.write_config(&format!("[runtime.handlers.fake]\npath = {fake:?}\n"));
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let image = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    pull(&mut client, &image).await.unwrap();

    flag(&lab, "fail-create", true);
    let config = pod_config(&lab, "refused");
    let err = run(&mut client, &config, "fake").await.unwrap_err();
    assert_contains(err.message(), "create refused on purpose");
    assert_contains(err.message(), "fake-runc");
    assert_eq!(pod_ids(&mut client).await, Vec::<String>::new());
    assert_no_pod_left(&lab, Some(&net));

    flag(&lab, "fail-create", false);
    let pod = run(&mut client, &config, "fake").await.unwrap();
    flag(&lab, "fail-create", true);
    let err = create(&mut client, &pod, &config, container_config(&image, "refused")).await.unwrap_err();
    assert_contains(err.message(), "create refused on purpose");
    assert_eq!(container_ids(&mut client).await, Vec::<String>::new());
    let empty = |dir: &str| fs::read_dir(lab.path(dir)).map(|d| d.count()).unwrap_or(0) == 0;
    assert!(empty("root/containers") && empty("state/containers"), "container dirs left");

    // The same container, asked again once the runtime works, is made afresh.
    flag(&lab, "fail-create", false);
    let id = create(&mut client, &pod, &config, container_config(&image, "refused")).await.unwrap();
    client.runtime.start_container(StartContainerRequest { container_id: id }).await.unwrap();
    remove(&mut client, &pod).await;
    assert_no_pod_left(&lab, Some(&net));
}

#[tokio::test]
async fn a_runtime_hanging_on_create_is_killed_at_the_command_timeout() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    let net = lab.set_network(78, "");
    let fake = fake_runtime(&lab);
    lab.write_config(&format!("[runtime]\ncommand_timeout = 3\n\n[runtime.handlers.fake]\npath = {fake:?}\n"));
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let image = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    pull(&mut client, &image).await.unwrap();
    let steady = run(&mut client, &pod_config(&lab, "steady"), "").await.unwrap();
    let config = pod_config(&lab, "victim");
    let victim = run(&mut client, &config, "fake").await.unwrap();

    flag(&lab, "hang-create", true);
    let hung = tokio::spawn({
        let (mut client, config, victim) = (client.clone(), config.clone(), victim.clone());
        let container = container_config(&image, "hung");
        async move { create(&mut client, &victim, &config, container).await }
    });
    let hanging = lab.path("flags/hanging");
    wait_for("the runtime hangs in create", || hanging.exists()).await;
    // Meanwhile the daemon serves other pods: status, a new pod, a container in it.
    assert!(is_ready(&mut client, &steady).await);
    let other_config = pod_config(&lab, "other");
    let other = run(&mut client, &other_config, "").await.unwrap();
    let id = create(&mut client, &other, &other_config, container_config(&image, "fine")).await.unwrap();
    client.runtime.start_container(StartContainerRequest { container_id: id.clone() }).await.unwrap();

    let err = hung.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}\n{}", daemon.logs());
    assert_contains(err.message(), "no answer within 3s, killed");
    assert_killed(&fake).await;
    assert_eq!(container_ids(&mut client).await, vec![id]);

    // A pod whose pause hangs in create: the same, and nothing of it is left.
    let err = run(&mut client, &pod_config(&lab, "hung-pod"), "fake").await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_killed(&fake).await;
    let mut left = pod_ids(&mut client).await;
    left.sort();
    let mut expected = vec![steady.clone(), victim.clone(), other.clone()];
    expected.sort();
    assert_eq!(left, expected);

    flag(&lab, "hang-create", false);
    for pod in [steady, victim, other] {
        remove(&mut client, &pod).await;
    }
    assert_no_pod_left(&lab, Some(&net));
}

/// A pod on the host's network: no CNI network needed.
fn host_network_pod(lab: &Lab, name: &str) -> PodSandboxConfig {
    let mut config = pod_config(lab, name);
    let namespace_options = NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() };
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(namespace_options),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// Stops the daemon as an operator would, damages a record, and starts it again.
async fn restart_with_damage(lab: &Lab, mut daemon: common::Daemon, damage: impl FnOnce()) -> common::Daemon {
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", daemon.logs());
    damage();
    lab.start()
}

/// Cuts a record file in half, as a torn write on a filesystem without ordering would.
fn truncate(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

async fn image_ids(client: &mut CriClient) -> Vec<String> {
    let images = client.image.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    images.into_iter().map(|i| i.id).collect()
}

#[tokio::test]
async fn an_unreadable_sandbox_record_is_set_aside_and_the_other_pods_served() {
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let damaged = run(&mut client, &host_network_pod(&lab, "damaged"), "").await.unwrap();
    let intact = run(&mut client, &host_network_pod(&lab, "intact"), "").await.unwrap();

    let record = lab.path(&format!("root/pods/{damaged}/sandbox.json"));
    let daemon = restart_with_damage(&lab, daemon, || truncate(&record)).await;
    let mut client = daemon.client().await;
    assert_eq!(pod_ids(&mut client).await, vec![intact.clone()], "{}", daemon.logs());
    assert!(is_ready(&mut client, &intact).await);
    assert!(!record.exists());
    assert!(record.with_file_name("sandbox.json.corrupt").exists(), "kept for the operator");
    assert_contains(&daemon.logs(), "unreadable sandbox record set aside");
    assert_contains(&daemon.logs(), &record.display().to_string());

    remove(&mut client, &intact).await;
    assert_eq!(pod_ids(&mut client).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_unreadable_container_record_is_set_aside_and_the_other_containers_served() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let image = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    pull(&mut client, &image).await.unwrap();
    let config = host_network_pod(&lab, "two-containers");
    let pod = run(&mut client, &config, "").await.unwrap();
    let mut ids = Vec::new();
    for name in ["damaged", "intact"] {
        let id = create(&mut client, &pod, &config, container_config(&image, name)).await.unwrap();
        client.runtime.start_container(StartContainerRequest { container_id: id.clone() }).await.unwrap();
        ids.push(id);
    }
    let (damaged, intact) = (ids[0].clone(), ids[1].clone());

    let record = lab.path(&format!("root/containers/{damaged}/container.json"));
    let daemon = restart_with_damage(&lab, daemon, || fs::write(&record, "{\"id\": \"").unwrap()).await;
    let mut client = daemon.client().await;
    assert_eq!(container_ids(&mut client).await, vec![intact.clone()], "{}", daemon.logs());
    let request =
        ExecSyncRequest { container_id: intact.clone(), cmd: vec!["echo".into(), "served".into()], timeout: 10 };
    let answer = client.runtime.exec_sync(request).await.unwrap().into_inner();
    assert_eq!((answer.exit_code, answer.stdout.as_slice()), (0, b"served\n".as_slice()));
    let items = client.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert_eq!(items[0].state, ContainerState::ContainerRunning as i32);
    assert!(!record.exists());
    assert!(record.with_file_name("container.json.corrupt").exists(), "kept for the operator");
    assert_contains(&daemon.logs(), "unreadable container record set aside");
    assert_contains(&daemon.logs(), &record.display().to_string());

    remove(&mut client, &pod).await;
}

#[tokio::test]
async fn an_unreadable_image_record_is_set_aside_and_the_other_images_served() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let busybox = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    let web = format!("{}/{}", registry.registry().addr(), LabImage::WebServer);
    pull(&mut client, &busybox).await.unwrap();
    let damaged = pull(&mut client, &web).await.unwrap();
    assert!(image_ids(&mut client).await.contains(&damaged), "PullImage answers the image's ID");
    let hex = damaged.trim_start_matches("sha256:");

    let record = lab.path(&format!("root/image/images/{hex}.json"));
    let daemon = restart_with_damage(&lab, daemon, || truncate(&record)).await;
    let mut client = daemon.client().await;
    let left = image_ids(&mut client).await;
    assert_eq!(left.len(), 1, "{left:?}\n{}", daemon.logs());
    assert_ne!(left[0], damaged);
    let request =
        ImageStatusRequest { image: Some(ImageSpec { image: busybox.clone(), ..Default::default() }), verbose: false };
    assert!(client.image.image_status(request).await.unwrap().into_inner().image.is_some());
    assert!(record.with_extension("corrupt").exists(), "kept for the operator");
    assert_contains(&daemon.logs(), "image record set aside");
    assert_contains(&daemon.logs(), &record.display().to_string());

    // The image set aside is pulled afresh.
    assert_eq!(pull(&mut client, &web).await.unwrap(), damaged);
    assert_eq!(image_ids(&mut client).await.len(), 2);
}

#[tokio::test]
async fn an_unreadable_cni_cache_entry_is_set_aside_and_its_pod_still_detaches() {
    let lab = Lab::new();
    let net = lab.set_network(79, "");
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let damaged = run(&mut client, &pod_config(&lab, "damaged"), "").await.unwrap();
    let intact = run(&mut client, &pod_config(&lab, "intact"), "").await.unwrap();
    assert_eq!(net.reserved_ips().len(), 2);

    let entry = lab.path(&format!("root/network/cache/{damaged}-eth0.json"));
    let daemon = restart_with_damage(&lab, daemon, || truncate(&entry)).await;
    let mut client = daemon.client().await;
    assert_contains(&daemon.logs(), "unreadable CNI cache entry set aside");
    assert_contains(&daemon.logs(), &entry.display().to_string());
    assert!(!entry.exists());
    assert!(entry.with_file_name(format!("{damaged}-eth0.json.corrupt")).exists(), "kept for the operator");
    let mut listed = pod_ids(&mut client).await;
    listed.sort();
    let mut expected = vec![damaged.clone(), intact.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(is_ready(&mut client, &intact).await);

    // Its DEL goes along the network configured now: the address it got is freed.
    remove(&mut client, &damaged).await;
    assert_eq!(net.reserved_ips().len(), 1, "{}", daemon.logs());
    remove(&mut client, &intact).await;
    assert_no_pod_left(&lab, Some(&net));
}

/// Fills the filesystem at `dir` with one file, until it has no byte left.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // The last partial chunk: byte by byte.
    while file.write(&[0]).is_ok_and(|n| n == 1) {}
    path
}

#[tokio::test]
async fn a_full_disk_under_root_is_resource_exhausted_corrupts_nothing_and_passes() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    let root = lab.path("root");
    fs::create_dir_all(&root).unwrap();
    // A small filesystem of its own; the lab's clean-up unmounts it (it is under the lab's dir),
    // also when the test fails.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0700", "crisp-full"])
        .arg(&root)
        .status()
        .expect("mount(8) (util-linux) runs");
    assert!(mounted.success(), "mounting a tmpfs on {}", root.display());
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let busybox = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    let web = format!("{}/{}", registry.registry().addr(), LabImage::WebServer);
    let image = pull(&mut client, &busybox).await.unwrap();
    let config = host_network_pod(&lab, "before");
    let pod = run(&mut client, &config, "").await.unwrap();
    let container = create(&mut client, &pod, &config, container_config(&busybox, "before")).await.unwrap();
    client.runtime.start_container(StartContainerRequest { container_id: container.clone() }).await.unwrap();

    let filler = fill(&root);
    let full = |what: &str, result: Result<String, tonic::Status>, logs: &dyn Fn() -> String| {
        let err = result.expect_err(what);
        assert_eq!(err.code(), Code::ResourceExhausted, "{what}: {err:?}\n{}", logs());
        assert!(
            err.message().contains("No space left on device") || err.message().contains("no space"),
            "{what}: {err:?}"
        );
    };
    let logs = || daemon.logs();
    full("PullImage", pull(&mut client, &web).await, &logs);
    let other = host_network_pod(&lab, "after");
    full("RunPodSandbox", run(&mut client, &other, "").await, &logs);
    full("CreateContainer", create(&mut client, &pod, &config, container_config(&busybox, "after")).await, &logs);
    assert_eq!(pod_ids(&mut client).await, vec![pod.clone()]);
    assert_eq!(container_ids(&mut client).await, vec![container.clone()]);
    assert_eq!(image_ids(&mut client).await, vec![image.clone()]);

    // A restart, the disk still full: what was there reads back whole.
    let daemon = restart_with_damage(&lab, daemon, || {}).await;
    let mut client = daemon.client().await;
    assert_eq!(pod_ids(&mut client).await, vec![pod.clone()], "{}", daemon.logs());
    assert!(is_ready(&mut client, &pod).await);
    assert_eq!(container_ids(&mut client).await, vec![container.clone()]);
    assert_eq!(image_ids(&mut client).await, vec![image.clone()]);
    assert!(!daemon.logs().contains("set aside"), "{}", daemon.logs());

    // Space again: the same calls pass.
    fs::remove_file(&filler).unwrap();
    pull(&mut client, &web).await.unwrap();
    let after = run(&mut client, &other, "").await.unwrap();
    let id = create(&mut client, &pod, &config, container_config(&busybox, "after")).await.unwrap();
    client.runtime.start_container(StartContainerRequest { container_id: id }).await.unwrap();
    remove(&mut client, &after).await;
    remove(&mut client, &pod).await;
}

/// An HTTP proxy in front of a registry, one request per connection, that while `stall` is set
/// answers a layer blob (a blob of more than 64 KiB) with its headers and half its bytes, then
/// nothing, holding the connection open until `release`.
struct StallingProxy {
    addr: std::net::SocketAddr,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The stalled connections with the path each asked for.
    held: std::sync::Arc<std::sync::Mutex<Vec<(std::net::TcpStream, String)>>>,
}

impl StallingProxy {
    fn start(upstream: String) -> StallingProxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = StallingProxy {
            addr: listener.local_addr().unwrap(),
            stall: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            held: Default::default(),
        };
        let (stall, held) = (proxy.stall.clone(), proxy.held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (stall, held, upstream) = (stall.clone(), held.clone(), upstream.clone());
                std::thread::spawn(move || {
                    if let Some((path, response, head_len)) = relay(&client, &upstream) {
                        let body = response.len() - head_len;
                        let mut out = &client;
                        if stall.load(Ordering::SeqCst) && path.contains("/blobs/") && body > 64 * 1024 {
                            let _ = std::io::Write::write_all(&mut out, &response[..head_len + body / 2]);
                            held.lock().unwrap().push((client, path));
                        } else {
                            let _ = std::io::Write::write_all(&mut out, &response);
                        }
                    }
                });
            }
        });
        proxy
    }

    /// Closes the stalled connections and lets every later request through.
    fn release(&self) {
        self.stall.store(false, std::sync::atomic::Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

/// Reads one request head from `client`, sends it upstream asking the registry to close after
/// it, and returns the path asked for, the whole response and the length of its head.
fn relay(client: &std::net::TcpStream, upstream: &str) -> Option<(String, Vec<u8>, usize)> {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let mut reader = client;
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut request: String = text
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    request.push_str("Connection: close\r\n\r\n");
    let mut registry = std::net::TcpStream::connect(upstream).ok()?;
    registry.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    registry.read_to_end(&mut response).ok()?;
    let head_len = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((path, response, head_len))
}

#[tokio::test]
async fn a_registry_stalling_mid_blob_fails_the_pull_and_leaves_no_partial_blob() {
    let registry = ImageLab::start().await.expect("lab registry");
    let proxy = StallingProxy::start(registry.registry().addr().to_string());
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let mut client = daemon.client().await;
    let image = format!("{}/{}", proxy.addr, LabImage::Busybox);

    let mut request = tonic::Request::new(PullImageRequest {
        image: Some(ImageSpec { image: image.clone(), ..Default::default() }),
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(5));
    let err = client.image.pull_image(request).await.unwrap_err();
    // tonic says Cancelled for its own deadline, DeadlineExceeded for one the server noticed first.
    assert!(matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded), "{err:?}\n{}", daemon.logs());
    let stalled = proxy.held.lock().unwrap().iter().map(|(_, path)| path.clone()).collect::<Vec<_>>();
    assert_eq!(stalled.len(), 1, "the layer's download stalled halfway: {stalled:?}");
    let digest = stalled[0].rsplit('/').next().unwrap().to_owned();
    let hex = digest.trim_start_matches("sha256:").to_owned();
    // Nothing of it is visible while it hangs: the half received is only in the ingest dir.
    assert_eq!(image_ids(&mut client).await, Vec::<String>::new());
    assert!(!lab.path(&format!("root/image/blobs/sha256/{hex}")).exists());
    let ingest = lab.path("root/image/ingest");
    assert_eq!(fs::read_dir(&ingest).unwrap().count(), 1, "the download in flight");

    // The registry cuts the transfer off: the download fails and its partial blob goes.
    proxy.release();
    wait_for("the partial download removed", || fs::read_dir(&ingest).map(|d| d.count() == 0).unwrap_or(false)).await;
    assert!(!lab.path(&format!("root/image/blobs/sha256/{hex}")).exists());
    assert_eq!(image_ids(&mut client).await, Vec::<String>::new());

    // A later pull fetches it whole.
    let id = pull(&mut client, &image).await.unwrap();
    assert_eq!(image_ids(&mut client).await, vec![id]);
    assert!(lab.path(&format!("root/image/blobs/sha256/{hex}")).exists());
}
