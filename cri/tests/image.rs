//! End-to-end: the ImageService of a real crisp daemon pulling from the lab's real registry.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::time::Duration;

use common::{Daemon, Lab, assert_contains};
use crisp_conformance::client::CriClient;
use crisp_conformance::lab::image::{
    EntryType, Image, ImageSpec, LabImage, LayerBuilder, MULTI_LAYER_ADDED, MULTI_LAYER_KEPT, MULTI_LAYER_REMOVED,
};
use crisp_conformance::lab::push::{lab_client, push, push_index};
use crisp_conformance::lab::registry::{Credentials, Registry};
use crisp_conformance::lab::{Lab as ImageLab, PushedImage};
use k8s_cri::v1::{
    AuthConfig, ImageFsInfoRequest, ImageSpec as CriImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest,
    RemoveImageRequest,
};
use tonic::{Code, Status};

struct Setup {
    lab: Lab,
    registry: ImageLab,
    daemon: Daemon,
    client: CriClient,
}

/// A lab registry, and crisp resolving docker.io through it after the mirrors in `before`.
async fn setup_with_mirrors(before: &[&str]) -> Setup {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    let mut mirrors: Vec<String> = before.iter().map(|m| format!("{m:?}")).collect();
    mirrors.push(format!("\"http://{}\"", registry.registry().addr()));
    lab.write_config(&format!("[[image.registries]]\nhost = \"docker.io\"\nmirrors = [{}]\n", mirrors.join(", ")));
    let daemon = lab.start();
    let client = daemon.client().await;
    Setup { lab, registry, daemon, client }
}

async fn setup() -> Setup {
    setup_with_mirrors(&[]).await
}

fn spec(image: &str) -> Option<CriImageSpec> {
    Some(CriImageSpec { image: image.to_owned(), ..Default::default() })
}

async fn pull(client: &CriClient, image: &str) -> Result<String, Status> {
    pull_as(client, image, None).await
}

async fn pull_as(client: &CriClient, image: &str, auth: Option<AuthConfig>) -> Result<String, Status> {
    let request = PullImageRequest { image: spec(image), auth, sandbox_config: None };
    Ok(client.image.clone().pull_image(request).await?.into_inner().image_ref)
}

async fn status(client: &CriClient, image: &str) -> Option<k8s_cri::v1::Image> {
    let request = ImageStatusRequest { image: spec(image), verbose: false };
    client.image.clone().image_status(request).await.unwrap().into_inner().image
}

async fn list(client: &CriClient) -> Vec<k8s_cri::v1::Image> {
    client.image.clone().list_images(ListImagesRequest { filter: None }).await.unwrap().into_inner().images
}

async fn remove(client: &CriClient, image: &str) {
    client.image.clone().remove_image(RemoveImageRequest { image: spec(image) }).await.unwrap();
}

impl Setup {
    fn image(&self, which: LabImage) -> &PushedImage {
        self.registry.image(which)
    }

    /// `127.0.0.1:PORT/repository:tag`.
    fn reference(&self, which: LabImage) -> String {
        format!("{}/{which}", self.registry.registry().addr())
    }

    fn repo_digest(&self, which: LabImage) -> String {
        format!("{}/{}@{}", self.registry.registry().addr(), which.repository(), self.image(which).digest)
    }

    fn store(&self, dir: &str) -> PathBuf {
        self.lab.path("root/image").join(dir)
    }

    fn entries(&self, dir: &str) -> BTreeSet<String> {
        fs::read_dir(self.store(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    }
}

fn id(image: &Image) -> String {
    image.id().as_str().to_owned()
}

/// The chain IDs of an image's layers, as crisp keys its unpacked layers (hex only).
fn chain_ids(image: &Image) -> Vec<String> {
    use sha2::Digest as _;
    let mut chain: Vec<String> = Vec::new();
    for layer in image.layers() {
        let diff_id = layer.diff_id().as_str().to_owned();
        let next = match chain.last() {
            None => diff_id,
            Some(parent) => format!("sha256:{:x}", sha2::Sha256::digest(format!("{parent} {diff_id}"))),
        };
        chain.push(next);
    }
    chain.into_iter().map(|c| c.trim_start_matches("sha256:").to_owned()).collect()
}

#[tokio::test]
async fn pull_by_tag_digest_and_both_then_status_by_every_reference() {
    let s = setup().await;
    let busybox = s.image(LabImage::Busybox).image.clone();
    let tagged = s.reference(LabImage::Busybox);
    let digested = s.repo_digest(LabImage::Busybox);

    assert_eq!(pull(&s.client, &tagged).await.unwrap(), id(&busybox));
    let image = status(&s.client, &tagged).await.expect("pulled image has a status");
    assert_eq!(image.id, id(&busybox));
    assert_eq!(image.repo_tags, std::slice::from_ref(&tagged));
    assert_eq!(image.repo_digests, std::slice::from_ref(&digested));
    assert_eq!(image.spec.as_ref().unwrap().image, id(&busybox));
    assert!(image.size > busybox.layers()[0].blob().len() as u64);
    assert!(!image.pinned);

    let hex = busybox.id().as_str().trim_start_matches("sha256:").to_owned();
    for query in [id(&busybox), hex.clone(), hex[..12].to_owned(), digested.clone(), tagged.clone()] {
        assert_eq!(status(&s.client, &query).await.map(|i| i.id), Some(id(&busybox)), "{query}");
    }

    assert_eq!(pull(&s.client, &digested).await.unwrap(), id(&busybox));
    let both = format!("{tagged}@{}", s.image(LabImage::Busybox).digest);
    assert_eq!(pull(&s.client, &both).await.unwrap(), id(&busybox));
    assert_eq!(list(&s.client).await.len(), 1);
    assert_eq!(status(&s.client, &tagged).await.unwrap().repo_tags, [tagged]);
}

#[tokio::test]
async fn short_names_resolve_through_a_mirror_after_one_that_is_down() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let s = setup_with_mirrors(&["http://127.0.0.1:1"]).await;
    let busybox = id(&s.image(LabImage::Busybox).image);
    assert_eq!(pull(&s.client, "busybox").await.unwrap(), busybox);
    for query in ["busybox", "busybox:latest", "docker.io/library/busybox", "library/busybox:latest"] {
        assert_eq!(status(&s.client, query).await.map(|i| i.id), Some(busybox.clone()), "{query}");
    }

    // The same image by another reference: one ID, both tags.
    pull(&s.client, &s.reference(LabImage::Busybox)).await.unwrap();
    let images = list(&s.client).await;
    assert_eq!(images.len(), 1);
    let tags: BTreeSet<_> = images[0].repo_tags.iter().cloned().collect();
    assert_eq!(tags, BTreeSet::from(["docker.io/library/busybox:latest".to_owned(), s.reference(LabImage::Busybox)]));

    // Removing it by one tag removes the image with all its tags.
    remove(&s.client, "busybox").await;
    assert!(list(&s.client).await.is_empty());
    assert!(status(&s.client, &s.reference(LabImage::Busybox)).await.is_none());
}

#[tokio::test]
async fn the_configured_pause_image_is_pinned() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    let pause = format!("{}/{}", registry.registry().addr(), LabImage::Pause);
    lab.write_config(&format!("[pod]\npause_image = {pause:?}\n"));
    let daemon = lab.start();
    let client = daemon.client().await;
    pull(&client, &pause).await.unwrap();
    pull(&client, &format!("{}/{}", registry.registry().addr(), LabImage::Busybox)).await.unwrap();
    let pinned: Vec<_> = list(&client).await.into_iter().map(|i| (i.repo_tags[0].clone(), i.pinned)).collect();
    assert_eq!(pinned.len(), 2);
    for (tag, is_pinned) in pinned {
        assert_eq!(is_pinned, tag == pause, "{tag}");
    }
}

#[tokio::test]
async fn user_comes_from_the_image_config() {
    let s = setup().await;
    for (which, uid, username) in [
        (LabImage::UserUid, Some(1002), ""),
        (LabImage::UserName, None, "www-data"),
        (LabImage::UserUidGid, Some(1003), ""),
    ] {
        pull(&s.client, &s.reference(which)).await.unwrap();
        let image = status(&s.client, &s.reference(which)).await.unwrap();
        assert_eq!(image.uid.map(|u| u.value), uid, "{which}");
        assert_eq!(image.username, username, "{which}");
    }
    // The three share their one layer: stored and unpacked once.
    assert_eq!(s.entries("layers").len(), 1);
}

#[tokio::test]
async fn multi_layer_image_unpacks_file_by_file() {
    let s = setup().await;
    let image = s.image(LabImage::MultiLayer).image.clone();
    pull(&s.client, &s.reference(LabImage::MultiLayer)).await.unwrap();
    let chain = chain_ids(&image);
    assert_eq!(s.entries("layers"), chain.iter().cloned().collect());
    let layer = |i: usize, path: &str| s.store("layers").join(&chain[i]).join(path.trim_start_matches('/'));

    // Busybox: applets are hard links to one inode, and it runs.
    let busybox = fs::metadata(layer(0, "/bin/busybox")).unwrap();
    assert_eq!(busybox.mode() & 0o7777, 0o755);
    assert_eq!(fs::read(layer(0, "/bin/busybox")).unwrap(), fs::read("/bin/busybox").unwrap());
    for applet in ["sh", "ls", "cat", "echo"] {
        assert_eq!(fs::metadata(layer(0, &format!("/bin/{applet}"))).unwrap().ino(), busybox.ino(), "{applet}");
    }
    assert_contains(&fs::read_to_string(layer(0, "/etc/passwd")).unwrap(), "user1002:x:1002:1002");
    assert_eq!(fs::metadata(layer(0, "/tmp")).unwrap().mode() & 0o7777, 0o1777);

    // Second layer: the data files.
    assert_eq!(fs::read_to_string(layer(1, MULTI_LAYER_KEPT)).unwrap(), format!("{MULTI_LAYER_KEPT}\n"));
    assert_eq!(fs::read_to_string(layer(1, MULTI_LAYER_REMOVED)).unwrap(), format!("{MULTI_LAYER_REMOVED}\n"));

    // Third: the OCI whiteout became an overlay whiteout (a 0:0 character device).
    let whiteout = fs::symlink_metadata(layer(2, MULTI_LAYER_REMOVED)).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!layer(2, "/data/.wh.removed.txt").exists());
    assert_eq!(fs::read_to_string(layer(2, MULTI_LAYER_ADDED)).unwrap(), format!("{MULTI_LAYER_ADDED}\n"));
}

#[tokio::test]
async fn an_index_resolves_to_the_host_platform() {
    let s = setup().await;
    let busybox = &s.image(LabImage::Busybox).image;
    let other = &s.image(LabImage::UserUid).image;
    let addr = s.registry.registry().addr();
    let reference = oci_client::Reference::with_tag(addr.to_string(), "crisp/multi-arch".into(), "v1".into());
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no lab platform mapping for {other}"),
    };
    let foreign = if host == "amd64" { "arm64" } else { "amd64" };
    let index =
        push_index(&lab_client(), &reference, &[(other, foreign), (busybox, host)], &s.registry.registry().auth())
            .await
            .unwrap();

    let pulled = pull(&s.client, &format!("{addr}/crisp/multi-arch:v1")).await.unwrap();
    assert_eq!(pulled, id(busybox));
    let image = status(&s.client, &pulled).await.unwrap();
    assert_eq!(image.repo_digests, [format!("{addr}/crisp/multi-arch@{}", index.as_str())]);
    assert_eq!(pull(&s.client, &format!("{addr}/crisp/multi-arch@{}", index.as_str())).await.unwrap(), id(busybox));
}

#[tokio::test]
async fn basic_auth_right_and_wrong_credentials() {
    let registry = Registry::start_with_auth(Credentials::new("crisp", "s3cret")).await.unwrap();
    let registry = ImageLab::with_registry(registry).await.unwrap();
    let lab = Lab::new();
    lab.write_config("");
    let daemon = lab.start();
    let client = daemon.client().await;
    let reference = format!("{}/{}", registry.registry().addr(), LabImage::Busybox);
    let auth = |user: &str, password: &str| {
        Some(AuthConfig { username: user.into(), password: password.into(), ..Default::default() })
    };

    let err = pull_as(&client, &reference, auth("crisp", "wrong")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_contains(err.message(), "not authorized");
    assert_contains(err.message(), &reference);
    let err = pull(&client, &reference).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(list(&client).await.is_empty());

    let id = pull_as(&client, &reference, auth("crisp", "s3cret")).await.unwrap();
    assert_eq!(id, registry.image(LabImage::Busybox).image.id().as_str());
    // The kubelet may pass the same as Docker's `auth` field.
    remove(&client, &reference).await;
    let encoded = "Y3Jpc3A6czNjcmV0"; // base64("crisp:s3cret")
    let auth = Some(AuthConfig { auth: encoded.into(), ..Default::default() });
    pull_as(&client, &reference, auth).await.unwrap();
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_stores_nothing() {
    let s = setup().await;
    let layer = s.image(LabImage::Busybox).image.layers()[0].clone();
    let hex = layer.digest().as_str().trim_start_matches("sha256:").to_owned();
    let data =
        s.registry.registry().dir().join(format!("storage/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    // Same size, other bytes: only the digest can tell.
    let mut corrupt = fs::read(&data).unwrap();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    fs::write(&data, corrupt).unwrap();

    let err = pull(&s.client, &s.reference(LabImage::Busybox)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_contains(err.message(), layer.digest().as_str());
    assert!(list(&s.client).await.is_empty());
    assert!(!s.entries("blobs/sha256").contains(&hex));
    assert!(s.entries("ingest").is_empty());
    assert!(s.entries("layers").is_empty());
}

/// A raw tar entry: name, type, link target.
type RawEntry<'a> = (&'a [u8], EntryType, Option<&'a [u8]>);

/// Pushes a one-layer image of `entries` under `crisp/hostile:TAG` and returns its reference.
async fn push_layer(s: &Setup, tag: &str, entries: &[RawEntry<'_>]) -> String {
    let mut layer = LayerBuilder::default();
    for (name, kind, link) in entries {
        layer.raw(name, *kind, *link, b"gotcha").unwrap();
    }
    let image = Image::build(&ImageSpec::default(), vec![layer.finish().unwrap()]).unwrap();
    let addr = s.registry.registry().addr();
    let reference = oci_client::Reference::with_tag(addr.to_string(), "crisp/hostile".into(), tag.into());
    push(&lab_client(), &reference, &image, &s.registry.registry().auth()).await.unwrap();
    format!("{addr}/crisp/hostile:{tag}")
}

#[tokio::test]
async fn hostile_layers_are_refused_and_nothing_escapes() {
    use EntryType::{Directory, Link, Regular, Symlink};
    let s = setup().await;
    let outside = s.lab.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), b"keep").unwrap();
    let outside_link = outside.to_str().unwrap().as_bytes().to_vec();
    let precious = outside.join("precious").to_str().unwrap().as_bytes().to_vec();
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        ("dotdot", vec![(b"../../escaped", Regular, None)], "escaped"),
        ("absolute", vec![(b"/escaped", Regular, None)], "escaped"),
        ("through-symlink", vec![(b"a", Symlink, Some(&outside_link)), (b"a/escaped", Regular, None)], "a/escaped"),
        ("hardlink-out", vec![(b"h", Link, Some(b"../../../etc/passwd"))], "h"),
        ("hardlink-absolute", vec![(b"h", Link, Some(&precious))], "h"),
        ("whiteout-dotdot", vec![(b"d", Directory, None), (b"d/.wh..", Regular, None)], ".wh.."),
    ];
    for (tag, entries, named) in &cases {
        let reference = push_layer(&s, tag, entries).await;
        let err = pull(&s.client, &reference).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{tag}: {err:?}");
        assert_contains(err.message(), named);
    }
    assert!(list(&s.client).await.is_empty());
    assert!(s.entries("layers").is_empty(), "{:?}", s.entries("layers"));
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep");
    for place in [s.lab.path(""), s.store(""), s.store("layers")] {
        assert!(!place.join("escaped").exists(), "{}", place.display());
    }
}

#[tokio::test]
async fn a_layer_past_the_size_limit_is_refused() {
    let registry = ImageLab::start().await.expect("lab registry");
    let lab = Lab::new();
    // Busybox alone unpacks to more than a megabyte.
    lab.write_config("[image]\nmax_layer_bytes = 1048576\n");
    let daemon = lab.start();
    let client = daemon.client().await;
    let err = pull(&client, &format!("{}/{}", registry.registry().addr(), LabImage::Busybox)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_contains(err.message(), "1048576");
    assert!(list(&client).await.is_empty());
    assert_eq!(fs::read_dir(lab.path("root/image/layers")).unwrap().count(), 0);
}

/// Counts the registry's GETs of a blob in its access log.
fn blob_gets(registry: &Registry, digest: &str) -> usize {
    let log = fs::read_to_string(registry.dir().join("registry.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("response completed") && l.contains("GET") && l.contains(&format!("/blobs/{digest}")))
        .count()
}

#[tokio::test]
async fn concurrent_pulls_share_one_download() {
    let s = setup().await;
    let reference = s.reference(LabImage::MultiLayer);
    let pulls = (0..6).map(|_| {
        let client = s.client.clone();
        let reference = reference.clone();
        async move { pull(&client, &reference).await }
    });
    let ids = futures::future::join_all(pulls).await;
    let image = &s.image(LabImage::MultiLayer).image;
    assert!(ids.iter().all(|r| r.as_ref().is_ok_and(|id| id == image.id().as_str())), "{ids:?}");
    for layer in image.layers() {
        assert_eq!(blob_gets(s.registry.registry(), layer.digest().as_str()), 1, "layer {}", layer.digest().as_str());
    }
}

#[tokio::test]
async fn images_survive_a_kill_and_removal_collects_content() {
    let mut s = setup().await;
    let busybox = id(&s.image(LabImage::Busybox).image);
    pull(&s.client, &s.reference(LabImage::Busybox)).await.unwrap();
    pull(&s.client, &s.reference(LabImage::UserUid)).await.unwrap();

    s.daemon.signal(libc::SIGKILL);
    s.daemon.wait_exit(Duration::from_secs(10)).await;
    // What an interrupted pull leaves behind, and content no record owns.
    fs::write(s.store("ingest/blob-interrupted"), b"partial").unwrap();
    fs::create_dir(s.store("layers/.unpack-interrupted")).unwrap();
    let orphan = "0".repeat(64);
    fs::write(s.store("blobs/sha256").join(&orphan), b"orphan").unwrap();

    s.daemon = s.lab.start();
    s.client = s.daemon.client().await;
    assert_eq!(list(&s.client).await.len(), 2);
    assert_eq!(status(&s.client, &s.reference(LabImage::Busybox)).await.unwrap().id, busybox);
    assert!(s.entries("ingest").is_empty());
    assert!(!s.entries("layers").iter().any(|l| l.starts_with('.')));
    assert!(!s.entries("blobs/sha256").contains(&orphan));

    // The user image shares busybox's layer: removing it keeps the layer for busybox.
    remove(&s.client, &s.reference(LabImage::UserUid)).await;
    assert_eq!(s.entries("layers").len(), 1);
    let user_config = s.image(LabImage::UserUid).image.id().as_str().trim_start_matches("sha256:").to_owned();
    assert!(!s.entries("blobs/sha256").contains(&user_config));
    remove(&s.client, &busybox).await;
    assert!(s.entries("layers").is_empty());
    assert!(s.entries("blobs/sha256").is_empty());
    assert!(s.entries("images").is_empty());
    // Removing what is not there is no error.
    remove(&s.client, &busybox).await;
    remove(&s.client, "busybox:never-pulled").await;
}

#[tokio::test]
async fn image_fs_info_reports_the_store() {
    let s = setup().await;
    let fs_info = || {
        let mut image = s.client.image.clone();
        async move { image.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner().image_filesystems }
    };
    let before = fs_info().await;
    pull(&s.client, &s.reference(LabImage::Busybox)).await.unwrap();
    let after = fs_info().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].fs_id.as_ref().unwrap().mountpoint, s.lab.path("root/image").display().to_string());
    assert!(after[0].timestamp > before[0].timestamp);
    let grown = |f: fn(&k8s_cri::v1::FilesystemUsage) -> u64| f(&after[0]) - f(&before[0]);
    // The busybox binary, unpacked, and its compressed blob.
    assert!(grown(|u| u.used_bytes.unwrap().value) > fs::metadata("/bin/busybox").unwrap().len());
    // Its dirs and files; the applets' hard links are one inode, counted once.
    assert!(grown(|u| u.inodes_used.unwrap().value) >= 10);
}

#[tokio::test]
async fn bad_and_missing_references() {
    let s = setup().await;
    for bad in ["", "Busybox", "busybox@sha256:short", "a//b"] {
        let err = pull(&s.client, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    let missing = format!("{}/library/never:pushed", s.registry.registry().addr());
    let err = pull(&s.client, &missing).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_contains(err.message(), &missing);
    assert!(status(&s.client, &missing).await.is_none());
    assert!(list(&s.client).await.is_empty());
}

/// A pull whose caller gives up (critest's 1 ms deadline) neither wedges the store nor leaves
/// the image half there: removal and later pulls go on.
#[tokio::test]
async fn a_cancelled_pull_leaves_the_store_usable() {
    let s = setup().await;
    let busybox = s.reference(LabImage::Busybox);
    pull(&s.client, &busybox).await.unwrap();

    let mut request = tonic::Request::new(PullImageRequest {
        image: spec(&s.reference(LabImage::MultiLayer)),
        auth: None,
        sandbox_config: None,
    });
    request.set_timeout(Duration::from_millis(5));
    let err = s.client.image.clone().pull_image(request).await.unwrap_err();
    // The client gives up: tonic says Cancelled for its own deadline, DeadlineExceeded for one
    // the server noticed first.
    assert!(matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded), "{err:?}");

    let removal = tokio::time::timeout(Duration::from_secs(30), remove(&s.client, &busybox));
    removal.await.expect("RemoveImage waited on a pull nobody awaits");
    assert!(status(&s.client, &busybox).await.is_none());
    let multi = id(&s.image(LabImage::MultiLayer).image);
    assert_eq!(pull(&s.client, &s.reference(LabImage::MultiLayer)).await.unwrap(), multi);
}

/// An uncompressed first layer's blob digest is also its chain ID.
#[tokio::test]
async fn an_uncompressed_layer_pulls() {
    let s = setup().await;
    let mut layer = LayerBuilder::default();
    layer.file("/hello", 0o644, b"plain\n").unwrap();
    let image = Image::build(&ImageSpec::default(), vec![layer.finish_uncompressed().unwrap()]).unwrap();
    let addr = s.registry.registry().addr();
    let reference = oci_client::Reference::with_tag(addr.to_string(), "crisp/plain".into(), "v1".into());
    push(&lab_client(), &reference, &image, &s.registry.registry().auth()).await.unwrap();

    let pulled = tokio::time::timeout(Duration::from_secs(30), pull(&s.client, &format!("{addr}/crisp/plain:v1")))
        .await
        .expect("the pull hung");
    assert_eq!(pulled.unwrap(), id(&image));
    let chain = &chain_ids(&image)[0];
    assert_eq!(fs::read(s.store("layers").join(chain).join("hello")).unwrap(), b"plain\n");
}

/// Pushing another image under a tag and pulling it again moves the tag; the old image keeps
/// what else names it.
#[tokio::test]
async fn a_tag_moves_to_the_image_pulled_last() {
    let mut s = setup().await;
    let addr = s.registry.registry().addr();
    let reference = oci_client::Reference::with_tag(addr.to_string(), "crisp/moving".into(), "v1".into());
    let tagged = format!("{addr}/crisp/moving:v1");
    let first = &s.image(LabImage::UserUid).image.clone();
    let second = &s.image(LabImage::UserName).image.clone();

    push(&lab_client(), &reference, first, &s.registry.registry().auth()).await.unwrap();
    assert_eq!(pull(&s.client, &tagged).await.unwrap(), id(first));
    push(&lab_client(), &reference, second, &s.registry.registry().auth()).await.unwrap();
    assert_eq!(pull(&s.client, &tagged).await.unwrap(), id(second));

    assert_eq!(status(&s.client, &tagged).await.unwrap().id, id(second));
    let old = status(&s.client, &id(first)).await.expect("the first image stays");
    assert!(old.repo_tags.is_empty(), "{:?}", old.repo_tags);
    assert_eq!(old.repo_digests, [format!("{addr}/crisp/moving@{}", first.manifest_digest().as_str())]);

    // The move survives a restart as it was made.
    s.daemon.signal(libc::SIGTERM);
    s.daemon.wait_exit(Duration::from_secs(15)).await;
    s.daemon = s.lab.start();
    s.client = s.daemon.client().await;
    assert_eq!(status(&s.client, &tagged).await.unwrap().id, id(second));
    assert!(status(&s.client, &id(first)).await.unwrap().repo_tags.is_empty());
}

/// Pull secrets are for the registry named in the reference; a mirror never sees them.
#[tokio::test]
async fn credentials_are_not_sent_to_mirrors() {
    let mirror = Registry::start_with_auth(Credentials::new("crisp", "s3cret")).await.unwrap();
    let mirror = ImageLab::with_registry(mirror).await.unwrap();
    // The registry the reference names: a loopback port nothing listens on.
    let upstream = "127.0.0.1:1";
    let lab = Lab::new();
    lab.write_config(&format!(
        "[[image.registries]]\nhost = \"{upstream}\"\nmirrors = [\"http://{}\"]\n",
        mirror.registry().addr()
    ));
    let daemon = lab.start();
    let client = daemon.client().await;
    // The lab pushed its images with the credentials: only what comes after is crisp's.
    let log_path = mirror.registry().dir().join("registry.log");
    let before = fs::read_to_string(&log_path).unwrap();
    // The registry names the user of authenticated requests: the lab's pushes show how.
    assert!(before.contains("auth.user.name=crisp") || before.contains("auth.user.name=\"crisp\""), "{before}");
    let pushed = before.len();
    let auth = Some(AuthConfig { username: "crisp".into(), password: "s3cret".into(), ..Default::default() });
    let err = pull_as(&client, &format!("{upstream}/{}", LabImage::Busybox), auth).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "the mirror refuses anonymous pulls: {err:?}");
    let log = fs::read_to_string(&log_path).unwrap()[pushed..].to_owned();
    assert!(log.contains("/v2/"), "the mirror was asked:\n{log}");
    assert!(
        !log.contains("auth.user.name=crisp") && !log.contains("auth.user.name=\"crisp\""),
        "credentials reached the mirror"
    );
}

/// Images sharing a layer, pulled at once: the layer is fetched and unpacked once.
#[tokio::test]
async fn concurrent_pulls_of_images_sharing_a_layer_fetch_it_once() {
    let s = setup().await;
    let images = [LabImage::Busybox, LabImage::UserUid, LabImage::UserName, LabImage::UserUidGid];
    let pulls = images.map(|which| {
        let client = s.client.clone();
        let reference = s.reference(which);
        async move { pull(&client, &reference).await }
    });
    for (which, result) in images.iter().zip(futures::future::join_all(pulls).await) {
        assert_eq!(result.unwrap(), id(&s.image(*which).image));
    }
    // Every repository's request for the blob is in the log; one in all is the point.
    let layer = s.image(LabImage::Busybox).image.layers()[0].digest().as_str().to_owned();
    assert_eq!(blob_gets(s.registry.registry(), &layer), 1);
    assert_eq!(s.entries("layers").len(), 1);
}
