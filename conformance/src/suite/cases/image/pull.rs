//! PullImage by every kind of reference, and what the pulled image is then known by.

use k8s_cri::v1::Image;
use tonic::Code;

use super::{
    absent, docker_io, ensure, ensure_id, ensure_repo_digest, ensure_same, ensure_tags, list, present, pull,
    pull_unclaimed, remove,
};
use crate::lab::image::LabImage;
use crate::suite::{CaseResult, Context};

/// critest: "public image with tag should be pulled and removed".
pub async fn by_tag(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let reference = context.images.reference(which);
    let image_ref = pull(context, which, &reference).await?;
    let image = present(context, &reference).await?;
    ensure_id(context, &image, which)?;
    ensure_tags(&image, &[&reference])?;
    ensure_repo_digest(&image, &context.images.repo_digest(which))?;
    ensure(image.size > 0, || "size is 0".into())?;
    ensure_image_ref(context, &image_ref, &image).await?;
    remove(context, &reference).await?;
    absent(context, &reference).await?;
    Ok(())
}

/// critest: "public image without tag should be pulled and removed": no tag means `latest`.
pub async fn untagged(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let (untagged, reference) = (context.images.untagged(which), context.images.reference(which));
    pull(context, which, &untagged).await?;
    let image = present(context, &reference).await?;
    ensure_id(context, &image, which)?;
    ensure_tags(&image, &[&reference])?;
    ensure_same(&image, &present(context, &untagged).await?, &untagged)?;
    remove(context, &untagged).await?;
    absent(context, &reference).await?;
    Ok(())
}

/// critest: "public image with digest should be pulled and removed": no tag comes with it.
pub async fn by_digest(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let repo_digest = context.images.repo_digest(which);
    let image_ref = pull(context, which, &repo_digest).await?;
    let image = present(context, &repo_digest).await?;
    ensure_id(context, &image, which)?;
    ensure_tags(&image, &[])?;
    ensure(image.repo_digests == [repo_digest.as_str()], || {
        format!("repo_digests are {:?}, want [{repo_digest:?}]", image.repo_digests)
    })?;
    ensure_image_ref(context, &image_ref, &image).await?;
    remove(context, &repo_digest).await?;
    absent(context, &repo_digest).await?;
    Ok(())
}

/// `repo:tag@digest`: the digest picks the image. Whether the tag is kept as a repo tag differs
/// between runtimes (containerd drops it, as docker's reference parsing does), so either is
/// fine, but no other tag is.
pub async fn by_tag_and_digest(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let (both, reference) = (context.images.tag_and_digest(which), context.images.reference(which));
    pull(context, which, &both).await?;
    let image = present(context, &both).await?;
    ensure_id(context, &image, which)?;
    ensure(image.repo_tags.is_empty() || image.repo_tags == [reference.as_str()], || {
        format!("repo_tags are {:?}, want none or [{reference:?}]", image.repo_tags)
    })?;
    ensure_repo_digest(&image, &context.images.repo_digest(which))?;
    remove(context, &both).await?;
    absent(context, &context.images.repo_digest(which)).await?;
    Ok(())
}

/// `busybox` is `docker.io/library/busybox:latest`, the name runtimes report.
pub async fn short_name(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let names = docker_io(context, which)?;
    pull(context, which, &names.short).await?;
    let image = present(context, &names.short).await?;
    ensure_id(context, &image, which)?;
    ensure_tags(&image, &[&names.tagged])?;
    ensure_repo_digest(&image, &names.repo_digest)?;
    ensure_same(&image, &present(context, &names.tagged).await?, &names.tagged)?;
    remove(context, &names.short).await?;
    absent(context, &names.tagged).await?;
    Ok(())
}

/// A tag the registry does not have: an error that says so, and no image.
pub async fn missing_tag(context: &mut Context) -> CaseResult {
    let reference = format!("{}:crisp-conformance-missing", context.images.untagged(LabImage::Busybox));
    match pull_unclaimed(context, &reference).await {
        Ok(image_ref) => return Err(format!("PullImage {reference:?} of a missing tag returned {image_ref:?}").into()),
        Err(status) => ensure(status.code() == Code::NotFound || status.message().contains(&reference), || {
            format!(
                "PullImage {reference:?} failed with {:?} {:?}: want NotFound or a message naming the reference",
                status.code(),
                status.message()
            )
        })?,
    }
    absent(context, &reference).await?;
    let listed = list(context).await?;
    let named = listed.iter().find(|image| image.repo_tags.contains(&reference));
    ensure(named.is_none(), || format!("ListImages lists {reference:?} after its pull failed: {named:?}"))?;
    Ok(())
}

/// PullImage's `image_ref` is what the kubelet keeps for the image: it must name the one pulled.
async fn ensure_image_ref(context: &mut Context, image_ref: &str, image: &Image) -> Result<(), String> {
    ensure(!image_ref.is_empty(), || "PullImage returned an empty image_ref".into())?;
    let by_ref = present(context, image_ref).await?;
    ensure(by_ref.id == image.id, || {
        format!("PullImage's image_ref {image_ref:?} is image {}, not {}", by_ref.id, image.id)
    })
}
