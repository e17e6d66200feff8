//! The image service, as critest's image checks see it (pkg/validate/image.go, idempotence.go),
//! on the lab's images: pulls by every kind of reference, what ImageStatus and ListImages report,
//! removal, and the image filesystem.

mod list;
mod pull;
mod remove;
mod status;
mod timeout;

use k8s_cri::v1::{Image, ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest};

use super::{case, ensure, rpc_failed};
use crate::lab::image::LabImage;
use crate::suite::test_images::{DockerIoNames, is_image_id};
use crate::suite::{Case, Context, Stop};

pub fn cases() -> Vec<Case> {
    vec![
        case!("image/pull-by-tag", pull::by_tag),
        case!("image/pull-untagged-means-latest", pull::untagged),
        case!("image/pull-by-digest", pull::by_digest),
        case!("image/pull-by-tag-and-digest", pull::by_tag_and_digest),
        case!("image/pull-short-name", pull::short_name),
        case!("image/pull-missing-tag-fails-cleanly", pull::missing_tag),
        case!("image/pull-deadline-exceeded", timeout::deadline_exceeded),
        case!("image/status-by-every-reference", status::every_reference),
        case!("image/status-user-uid", status::user_uid),
        case!("image/status-user-name", status::user_name),
        case!("image/status-user-uid-gid", status::user_uid_gid),
        case!("image/list-has-pulled-images", list::has_pulled_images),
        case!("image/same-id-via-two-references", list::same_id_via_two_references),
        case!("image/three-tags-one-image", list::three_tags_one_image),
        case!("image/fs-info", list::fs_info),
        case!("image/visible-after-pull-gone-after-remove", remove::visibility),
        case!("image/remove-by-one-tag-removes-every-tag", remove::by_one_tag),
        case!("image/remove-missing-is-ok", remove::missing),
    ]
}

/// Why a case that needs a second name for an image, or a short name, cannot run.
const NOT_MIRRORED: &str = "needs --docker-io-mirrored: a runtime that resolves docker.io through the test registry";

fn spec(reference: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: reference.to_owned(), ..Default::default() })
}

/// The docker.io names of `which`, or a skip saying the run has none.
fn docker_io(context: &Context, which: LabImage) -> Result<DockerIoNames, Stop> {
    context.images.docker_io(which).ok_or_else(|| Stop::Skip(NOT_MIRRORED.into()))
}

/// Pulls `reference`, a name of `which`, and returns PullImage's `image_ref`. `which` must not
/// be in the runtime before the case first pulls it; the runner removes it after the case.
async fn pull(context: &mut Context, which: LabImage, reference: &str) -> Result<String, Stop> {
    context.claim(which).await?;
    Ok(pull_unclaimed(context, reference).await.map_err(|s| rpc_failed(&format!("PullImage {reference:?}"), s))?)
}

async fn pull_unclaimed(context: &mut Context, reference: &str) -> Result<String, tonic::Status> {
    let request = PullImageRequest { image: spec(reference), auth: None, sandbox_config: None };
    Ok(context.client.image.pull_image(request).await?.into_inner().image_ref)
}

/// ImageStatus of `reference`: `None` when the runtime has no such image.
async fn status(context: &mut Context, reference: &str) -> Result<Option<Image>, String> {
    let request = ImageStatusRequest { image: spec(reference), verbose: false };
    let response = context.client.image.image_status(request).await;
    Ok(response.map_err(|s| rpc_failed(&format!("ImageStatus {reference:?}"), s))?.into_inner().image)
}

/// ImageStatus of `reference`, which must find an image.
async fn present(context: &mut Context, reference: &str) -> Result<Image, String> {
    status(context, reference).await?.ok_or_else(|| format!("ImageStatus {reference:?} found no image"))
}

/// ImageStatus of `reference`, which must find none.
async fn absent(context: &mut Context, reference: &str) -> Result<(), String> {
    match status(context, reference).await? {
        None => Ok(()),
        Some(image) => Err(format!("ImageStatus {reference:?} still finds image {}", image.id)),
    }
}

async fn list(context: &mut Context) -> Result<Vec<Image>, String> {
    let response = context.client.image.list_images(ListImagesRequest { filter: None }).await;
    Ok(response.map_err(|s| rpc_failed("ListImages", s))?.into_inner().images)
}

async fn remove(context: &mut Context, reference: &str) -> Result<(), String> {
    let response = context.client.image.remove_image(RemoveImageRequest { image: spec(reference) }).await;
    response.map_err(|s| rpc_failed(&format!("RemoveImage {reference:?}"), s))?;
    Ok(())
}

/// The image is `which`: its ID is the digest of `which`'s config.
fn ensure_id(context: &Context, image: &Image, which: LabImage) -> Result<(), String> {
    let id = context.images.id(which);
    ensure(is_image_id(&image.id, id), || format!("image ID is {:?}, want {which}'s config digest {id}", image.id))
}

/// The image's `repo_tags` are exactly `want`, in any order.
fn ensure_tags(image: &Image, want: &[&str]) -> Result<(), String> {
    let mut tags: Vec<_> = image.repo_tags.iter().map(String::as_str).collect();
    let mut want = want.to_vec();
    tags.sort_unstable();
    want.sort_unstable();
    ensure(tags == want, || format!("repo_tags are {:?}, want {want:?}", image.repo_tags))
}

/// The image's `repo_digests` name `want`.
fn ensure_repo_digest(image: &Image, want: &str) -> Result<(), String> {
    ensure(image.repo_digests.iter().any(|d| d == want), || {
        format!("repo_digests are {:?}, want them to hold {want:?}", image.repo_digests)
    })
}

/// `other`, found by `reference`, is `image`.
fn ensure_same(image: &Image, other: &Image, reference: &str) -> Result<(), String> {
    ensure(other == image, || format!("ImageStatus {reference:?} returned {other:?}, want {image:?}"))
}
