//! ListImages and ImageFsInfo.

use k8s_cri::v1::{Image, ImageFsInfoRequest};

use super::{ensure, ensure_id, ensure_repo_digest, ensure_tags, list, present, pull, rpc_failed};
use crate::lab::image::LabImage;
use crate::suite::test_images::is_image_id;
use crate::suite::{CaseResult, Context};

/// critest: "listImage should get exactly 3 image in the result list": each pulled image once,
/// with its one tag and its repo digest, as ImageStatus describes it.
pub async fn has_pulled_images(context: &mut Context) -> CaseResult {
    let pulled = [LabImage::UserUid, LabImage::UserName];
    for which in pulled {
        pull(context, which, &context.images.reference(which)).await?;
    }
    let listed = list(context).await?;
    for which in pulled {
        let reference = context.images.reference(which);
        let image = only(&listed, context, which)?;
        ensure_tags(image, &[&reference])?;
        ensure_repo_digest(image, &context.images.repo_digest(which))?;
        let status = present(context, &reference).await?;
        ensure(&status == image, || format!("ListImages lists {image:?}, ImageStatus {reference:?} says {status:?}"))?;
    }
    Ok(())
}

/// Pulled by tag and by digest, an image is one image with both names.
pub async fn same_id_via_two_references(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let (reference, repo_digest) = (context.images.reference(which), context.images.repo_digest(which));
    pull(context, which, &reference).await?;
    pull(context, which, &repo_digest).await?;
    let (by_tag, by_digest) = (present(context, &reference).await?, present(context, &repo_digest).await?);
    ensure_id(context, &by_tag, which)?;
    ensure(by_tag.id == by_digest.id, || {
        format!("{reference:?} is {}, {repo_digest:?} is {}", by_tag.id, by_digest.id)
    })?;
    let listed = list(context).await?;
    let image = only(&listed, context, which)?;
    ensure_tags(image, &[&reference])?;
    ensure_repo_digest(image, &repo_digest)?;
    Ok(())
}

/// Where images are stored, and how much they take: the kubelet's image garbage collection
/// works from this.
pub async fn fs_info(context: &mut Context) -> CaseResult {
    let response = context.client.image.image_fs_info(ImageFsInfoRequest {}).await;
    let filesystems = response.map_err(|s| rpc_failed("ImageFsInfo", s))?.into_inner().image_filesystems;
    ensure(!filesystems.is_empty(), || "ImageFsInfo returned no image filesystem".into())?;
    for fs in &filesystems {
        let mountpoint = fs.fs_id.as_ref().map_or("", |id| id.mountpoint.as_str());
        ensure(!mountpoint.is_empty(), || format!("an image filesystem has no mountpoint: {fs:?}"))?;
        ensure(fs.used_bytes.is_some(), || format!("image filesystem {mountpoint} has no used_bytes"))?;
    }
    Ok(())
}

/// The one listed image that is `which`.
fn only<'a>(listed: &'a [Image], context: &Context, which: LabImage) -> Result<&'a Image, String> {
    let id = context.images.id(which);
    let mut matching = listed.iter().filter(|image| is_image_id(&image.id, id));
    match (matching.next(), matching.next()) {
        (Some(image), None) => Ok(image),
        (None, _) => Err(format!("ListImages does not list {which} ({id})")),
        (Some(_), Some(_)) => Err(format!("ListImages lists {which} ({id}) more than once")),
    }
}
