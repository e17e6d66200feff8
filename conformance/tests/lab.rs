//! The lab against a real `docker-registry` on this host: images are pushed with oci-client and
//! read back with it, byte for byte.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crisp_conformance::lab::image::{
    BUSYBOX, Image, LabImage, MULTI_LAYER_ADDED, MULTI_LAYER_KEPT, MULTI_LAYER_REMOVED, WEB_SERVER_INDEX,
    WEB_SERVER_PORT,
};
use crisp_conformance::lab::push::{lab_client, push};
use crisp_conformance::lab::registry::{Credentials, Registry};
use crisp_conformance::lab::{Digest, Lab, LabError};
use flate2::read::GzDecoder;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tar::EntryType;

/// An image as pulled back from a registry.
struct Pulled {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

async fn pull(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> Result<Pulled, oci_client::errors::OciDistributionError> {
    let (manifest, manifest_digest) = client.pull_manifest_raw(reference, auth, &[OCI_IMAGE_MEDIA_TYPE]).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = pull_blob(client, reference, parsed["config"]["digest"].as_str().unwrap()).await?;
    let mut layers = Vec::new();
    for layer in parsed["layers"].as_array().unwrap() {
        layers.push(pull_blob(client, reference, layer["digest"].as_str().unwrap()).await?);
    }
    Ok(Pulled { manifest: manifest.to_vec(), manifest_digest, config, layers })
}

async fn pull_blob(
    client: &Client,
    reference: &Reference,
    digest: &str,
) -> Result<Vec<u8>, oci_client::errors::OciDistributionError> {
    let mut blob = Vec::new();
    client.pull_blob(reference, digest, &mut blob).await?;
    Ok(blob)
}

/// A layer's entries by path (`bin/sh`), read in memory.
struct Entry {
    kind: EntryType,
    mode: u32,
    link: Option<String>,
    data: Vec<u8>,
}

fn entries(layer: &[u8]) -> BTreeMap<String, Entry> {
    let mut archive = tar::Archive::new(GzDecoder::new(layer));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let header = entry.header();
            let value = Entry { kind: header.entry_type(), mode: header.mode().unwrap(), link, data };
            (path, value)
        })
        .collect()
}

fn image_config(config: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(config).unwrap()["config"].clone()
}

fn pushed_image(lab: &Lab, which: LabImage) -> (&Reference, &Image) {
    let pushed = lab.image(which);
    (&pushed.reference, &pushed.image)
}

#[tokio::test]
async fn every_lab_image_reads_back_as_built() {
    let lab = Lab::start().await.unwrap();
    let client = lab_client();
    assert_eq!(lab.images().len(), LabImage::ALL.len());
    for (which, pushed) in lab.images() {
        assert_eq!(
            pushed.reference.whole(),
            format!("{}/{which}", lab.registry().addr()),
            "{which} is pushed under its fixed name"
        );
        let pulled = pull(&client, &pushed.reference, &RegistryAuth::Anonymous).await.unwrap();
        let image = &pushed.image;
        assert_eq!(pulled.manifest, image.manifest(), "{which}: manifest bytes");
        assert_eq!(&pushed.digest, image.manifest_digest(), "{which}: push returns the digest");
        assert_eq!(image.manifest_digest(), &pulled.manifest_digest, "{which}: manifest digest");
        assert_eq!(Digest::of(&pulled.manifest), *image.manifest_digest());
        assert_eq!(pulled.config, image.config(), "{which}: config bytes");
        assert_eq!(Digest::of(&pulled.config), *image.config_digest(), "{which}: image ID");
        assert_eq!(image.id(), image.config_digest());
        assert_eq!(pulled.layers.len(), image.layers().len(), "{which}: layer count");
        for (pulled, built) in pulled.layers.iter().zip(image.layers()) {
            assert_eq!(pulled.as_slice(), built.blob(), "{which}: layer bytes");
        }

        let config: serde_json::Value = serde_json::from_slice(&pulled.config).unwrap();
        assert_eq!(config["os"], "linux");
        assert!(config["architecture"].is_string());
        let diff_ids: Vec<String> = image.layers().iter().map(|l| l.diff_id().to_string()).collect();
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids), "{which}: diff_ids");
        assert!(config["config"]["Env"][0].as_str().unwrap().starts_with("PATH="), "{which}: Env carries PATH");
    }
}

#[tokio::test]
async fn busybox_layer_links_applets_to_busybox_and_carries_accounts() {
    let lab = Lab::start().await.unwrap();
    let (reference, _) = pushed_image(&lab, LabImage::Busybox);
    let pulled = pull(&lab_client(), reference, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(pulled.layers.len(), 1);
    let entries = entries(&pulled.layers[0]);

    let busybox = &entries["bin/busybox"];
    assert_eq!(busybox.kind, EntryType::Regular);
    assert_eq!(busybox.mode & 0o7777, 0o755);
    assert_eq!(busybox.data, std::fs::read(BUSYBOX).unwrap());
    for applet in ["sh", "echo", "id", "cat", "ls"] {
        let entry = &entries[&format!("bin/{applet}")];
        assert_eq!(entry.kind, EntryType::Link, "/bin/{applet} is a hard link");
        assert_eq!(entry.link.as_deref(), Some("bin/busybox"), "/bin/{applet} links to busybox");
        // Unpackers that chmod the shared inode from the link entry (containerd 1.6) keep 0755.
        assert_eq!(entry.mode & 0o7777, 0o755, "/bin/{applet} carries busybox's mode");
    }

    let passwd = String::from_utf8(entries["etc/passwd"].data.clone()).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("user1002:x:1002:1002:")), "{passwd}");
    assert!(passwd.lines().any(|l| l.starts_with("user1003:x:1003:1004:")), "{passwd}");
    assert!(passwd.lines().any(|l| l.starts_with("www-data:x:33:33:")), "{passwd}");
    let group = String::from_utf8(entries["etc/group"].data.clone()).unwrap();
    assert!(group.lines().any(|l| l == "group1004:x:1004:user1002"), "{group}");
    assert_eq!(entries["tmp"].mode & 0o7777, 0o1777);
    assert_eq!(entries["tmp"].kind, EntryType::Directory);
    assert!(!entries.contains_key("etc/hosts"), "the runtime provides /etc/hosts");

    assert_eq!(image_config(&pulled.config)["Cmd"], serde_json::json!(["sh"]));
}

#[tokio::test]
async fn user_variants_share_the_busybox_layer_and_set_their_user() {
    let lab = Lab::start().await.unwrap();
    let client = lab_client();
    let busybox = pull(&client, &lab.image(LabImage::Busybox).reference, &RegistryAuth::Anonymous).await.unwrap();
    assert!(image_config(&busybox.config).get("User").is_none());
    let busybox_layer = lab.image(LabImage::Busybox).image.layers()[0].digest().clone();

    for (which, user) in
        [(LabImage::UserUid, "1002"), (LabImage::UserName, "www-data"), (LabImage::UserUidGid, "1003:1004")]
    {
        let (reference, image) = pushed_image(&lab, which);
        let pulled = pull(&client, reference, &RegistryAuth::Anonymous).await.unwrap();
        assert_eq!(image_config(&pulled.config)["User"], user, "{which}");
        assert_eq!(image.layers().len(), 1);
        assert_eq!(image.layers()[0].digest(), &busybox_layer, "{which} reuses the busybox layer");
        assert_eq!(pulled.layers[0], busybox.layers[0], "{which}: same layer bytes");
        assert_ne!(image.id(), lab.image(LabImage::Busybox).image.id(), "{which} has its own ID");
    }
}

#[tokio::test]
async fn pause_image_holds_the_pause_binary() {
    let lab = Lab::start().await.unwrap();
    let (reference, _) = pushed_image(&lab, LabImage::Pause);
    assert_eq!(reference.repository(), "pause");
    assert_eq!(reference.tag(), Some("3.10"));
    let pulled = pull(&lab_client(), reference, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(pulled.layers.len(), 1);
    let entries = entries(&pulled.layers[0]);
    let pause = &entries["pause"];
    assert_eq!(pause.kind, EntryType::Regular);
    assert_eq!(pause.mode & 0o7777, 0o755);
    assert!(pause.data == crisp_pod::pause::BINARY, "the layer holds crisp's pause binary exactly");
    assert_eq!(image_config(&pulled.config)["Entrypoint"], serde_json::json!(["/pause"]));
}

#[tokio::test]
async fn multi_layer_image_whites_out_a_lower_file() {
    let lab = Lab::start().await.unwrap();
    let (reference, image) = pushed_image(&lab, LabImage::MultiLayer);
    let pulled = pull(&lab_client(), reference, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(pulled.layers.len(), 3);
    assert_eq!(image.layers()[0].digest(), lab.image(LabImage::Busybox).image.layers()[0].digest());

    let relative = |path: &str| path.trim_start_matches('/').to_owned();
    let second = entries(&pulled.layers[1]);
    assert_eq!(second[&relative(MULTI_LAYER_KEPT)].data, format!("{MULTI_LAYER_KEPT}\n").as_bytes());
    assert!(second.contains_key(&relative(MULTI_LAYER_REMOVED)));
    let third = entries(&pulled.layers[2]);
    assert!(third.contains_key("data/.wh.removed.txt"), "{:?}", third.keys().collect::<Vec<_>>());
    assert_eq!(third["data/.wh.removed.txt"].kind, EntryType::Regular);
    assert_eq!(third[&relative(MULTI_LAYER_ADDED)].data, format!("{MULTI_LAYER_ADDED}\n").as_bytes());

    let config = image_config(&pulled.config);
    assert_eq!(config["WorkingDir"], "/data");
    assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
}

#[tokio::test]
async fn web_server_image_serves_its_page_with_busybox_httpd() {
    let lab = Lab::start().await.unwrap();
    let (reference, image) = pushed_image(&lab, LabImage::WebServer);
    let pulled = pull(&lab_client(), reference, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(pulled.layers.len(), 2);
    assert_eq!(image.layers()[0].digest(), lab.image(LabImage::Busybox).image.layers()[0].digest());
    let site = entries(&pulled.layers[1]);
    assert_eq!(site["www/index.html"].data, WEB_SERVER_INDEX.as_bytes());
    assert_eq!(site["www/index.html"].mode & 0o7777, 0o644);
    let busybox = entries(&pulled.layers[0]);
    assert!(busybox.contains_key("bin/httpd"), "the host's busybox-static has no httpd applet");

    let config = image_config(&pulled.config);
    let port = WEB_SERVER_PORT.to_string();
    assert_eq!(config["Cmd"], serde_json::json!(["httpd", "-f", "-p", port, "-h", "/www"]));
    assert_eq!(config["ExposedPorts"], serde_json::json!({format!("{port}/tcp"): {}}));
}

#[tokio::test]
async fn busybox_runs_from_an_unpacked_layer_through_its_hard_links() {
    let lab = Lab::start().await.unwrap();
    let (reference, _) = pushed_image(&lab, LabImage::Busybox);
    let pulled = pull(&lab_client(), reference, &RegistryAuth::Anonymous).await.unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    tar::Archive::new(GzDecoder::new(pulled.layers[0].as_slice())).unpack(rootfs.path()).unwrap();

    let busybox = std::fs::metadata(rootfs.path().join("bin/busybox")).unwrap();
    let echo = std::fs::metadata(rootfs.path().join("bin/echo")).unwrap();
    assert_eq!(echo.ino(), busybox.ino(), "/bin/echo is the same inode as /bin/busybox");
    assert!(busybox.nlink() > 100, "every applet links to busybox");

    let output = Command::new(rootfs.path().join("bin/echo")).arg("hi").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"hi\n");
}

#[tokio::test]
async fn auth_registry_admits_only_its_credentials() {
    let credentials = Credentials::new("crisp", "lab-secret");
    let registry = Registry::start_with_auth(credentials.clone()).await.unwrap();
    assert_eq!(registry.credentials(), Some(&credentials));
    let image = LabImage::build_all().unwrap().remove(&LabImage::Busybox).unwrap();
    let reference = Reference::with_tag(registry.addr().to_string(), "crisp/auth".into(), "latest".into());
    let basic = credentials.registry_auth();
    let wrong = RegistryAuth::Basic("crisp".into(), "not-the-secret".into());

    // A client keeps the first credentials it sees for a registry: one client per identity.
    let anonymous_push = push(&lab_client(), &reference, &image, &RegistryAuth::Anonymous).await;
    assert!(matches!(anonymous_push, Err(LabError::Distribution { .. })), "{anonymous_push:?}");
    let wrong_push = push(&lab_client(), &reference, &image, &wrong).await;
    assert!(matches!(wrong_push, Err(LabError::Distribution { .. })), "{wrong_push:?}");

    let digest = push(&lab_client(), &reference, &image, &basic).await.unwrap();
    assert_eq!(&digest, image.manifest_digest());

    let anonymous_pull = pull(&lab_client(), &reference, &RegistryAuth::Anonymous).await;
    assert!(anonymous_pull.is_err(), "an anonymous pull is refused");
    let pulled = pull(&lab_client(), &reference, &registry.auth()).await.unwrap();
    assert_eq!(pulled.manifest, image.manifest());
    assert_eq!(*image.manifest_digest(), pulled.manifest_digest);
}

#[tokio::test]
async fn a_lab_on_an_auth_registry_pushes_with_its_credentials() {
    let registry = Registry::start_with_auth(Credentials::new("crisp", "lab-secret")).await.unwrap();
    let lab = Lab::with_registry(registry).await.unwrap();
    let (reference, image) = pushed_image(&lab, LabImage::UserUid);
    let pulled = pull(&lab_client(), reference, &lab.registry().auth()).await.unwrap();
    assert_eq!(pulled.manifest, image.manifest());
}

fn is_running(pid: u32) -> bool {
    // The registry is our child and Drop reaps it, so not even a zombie may remain.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn dropping_a_registry_kills_it_and_removes_its_dir() {
    for registry in
        [Registry::start().await.unwrap(), Registry::start_with_auth(Credentials::new("u", "p")).await.unwrap()]
    {
        let (pid, dir) = (registry.pid(), registry.dir().to_path_buf());
        assert!(is_running(pid));
        assert!(dir.join("config.yml").is_file());
        assert!(dir.join("registry.log").is_file());
        drop(registry);
        assert!(!is_running(pid), "registry {pid} outlived its Registry");
        assert!(!dir.exists(), "{} outlived its Registry", dir.display());
    }

    let lab = Lab::start().await.unwrap();
    let (pid, dir) = (lab.registry().pid(), lab.registry().dir().to_path_buf());
    drop(lab);
    assert!(!is_running(pid));
    assert!(!dir.exists());
}

fn unused_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test]
async fn a_fixed_registry_keeps_its_storage_and_refuses_a_second_instance() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("lab");
    let addr = unused_addr();
    let registry = Registry::serve_at(addr, &storage).await.unwrap();
    assert_eq!(registry.addr(), addr);

    let second = Registry::serve_at(addr, &storage).await;
    assert!(matches!(second, Err(LabError::AlreadyServing { addr: a }) if a == addr), "{second:?}");

    let image = LabImage::build_all().unwrap().remove(&LabImage::Busybox).unwrap();
    let reference = Reference::with_tag(addr.to_string(), "library/busybox".into(), "latest".into());
    push(&lab_client(), &reference, &image, &RegistryAuth::Anonymous).await.unwrap();

    let pid = registry.pid();
    drop(registry);
    assert!(!is_running(pid));
    assert!(storage.join("storage").is_dir(), "a fixed registry's storage outlives it");

    let restarted = Registry::serve_at(addr, &storage).await.unwrap();
    let pulled = pull(&lab_client(), &reference, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(pulled.manifest, image.manifest(), "a restarted registry serves what it stored");
    drop(restarted);
}

/// Kills and reaps a `crisp-lab` child however the test ends.
struct LabProcess(Child);

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn crisp_lab_serve(addr: SocketAddr, dir: &Path) -> LabProcess {
    LabProcess(
        Command::new(env!("CARGO_BIN_EXE_crisp-lab"))
            .arg("serve")
            .arg("--addr")
            .arg(addr.to_string())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn crisp_lab_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = unused_addr();
    let mut lab = crisp_lab_serve(addr, dir.path());

    let stdout = BufReader::new(lab.0.stdout.take().unwrap());
    let mut pushed = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        pushed.push(line);
    }
    let expected: Vec<String> = LabImage::ALL.iter().map(|which| format!("pushed {addr}/{which} sha256:")).collect();
    assert_eq!(pushed.len(), expected.len(), "{pushed:?}");
    for prefix in &expected {
        assert!(pushed.iter().any(|line| line.starts_with(prefix.as_str())), "no `{prefix}` in {pushed:?}");
    }

    let reference = Reference::with_tag(addr.to_string(), "library/busybox".into(), "latest".into());
    let pulled = pull(&lab_client(), &reference, &RegistryAuth::Anonymous).await.unwrap();
    let busybox = LabImage::build_all().unwrap().remove(&LabImage::Busybox).unwrap();
    assert_eq!(*busybox.manifest_digest(), pulled.manifest_digest, "lab images build reproducibly");

    let mut second = crisp_lab_serve(addr, dir.path());
    let status = second.0.wait().unwrap();
    let mut stderr = String::new();
    second.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "a second lab on {addr} must fail");
    assert!(stderr.contains("already serves a registry"), "{stderr}");

    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(lab.0.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = lab.0.wait().unwrap();
    assert!(status.success(), "crisp-lab exits 0 on SIGTERM: {status:?}");
    assert!(std::net::TcpStream::connect(addr).is_err(), "the registry stopped with crisp-lab");
}
