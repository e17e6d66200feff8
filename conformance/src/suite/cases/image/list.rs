//! ListImages and ImageFsInfo.

use http::HeaderValue;
use k8s_cri::v1::{Image, ImageFsInfoRequest};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

use super::{ensure, ensure_id, ensure_repo_digest, ensure_tags, list, present, pull, rpc_failed};
use crate::lab::image::LabImage;
use crate::lab::push::lab_client;
use crate::suite::test_images::is_image_id;
use crate::suite::{CaseResult, Context};

/// critest: "listImage should get exactly 3 image in the result list": three images pulled by
/// tag are each listed once, with their one tag and their repo digest, as ImageStatus describes
/// them.
pub async fn has_pulled_images(context: &mut Context) -> CaseResult {
    let pulled = [LabImage::UserUid, LabImage::UserName, LabImage::UserUidGid];
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

/// critest: "listImage should get exactly 3 repoTags in the result image": one image pulled by
/// three tags (the lab's, and two more this case gives it in the registry) is one image, listed
/// once with the three.
pub async fn three_tags_one_image(context: &mut Context) -> CaseResult {
    let which = LabImage::UserUidGid;
    let reference = context.images.reference(which);
    let others =
        tag_again(context.images.registry(), which, &["crisp-conformance-second", "crisp-conformance-third"]).await?;
    let mut ids = Vec::new();
    for name in std::iter::once(&reference).chain(&others) {
        pull(context, which, name).await?;
        ids.push(present(context, name).await?.id);
    }
    ids.dedup();
    ensure(ids.len() == 1, || format!("the three tags of one image are images {ids:?}"))?;
    let listed = list(context).await?;
    let image = only(&listed, context, which)?;
    ensure_tags(image, &[&reference, &others[0], &others[1]])?;
    Ok(())
}

/// Tags `which` in the lab's `registry` with `tags` too (its manifest, unchanged, under each);
/// the references they make.
async fn tag_again(registry: &str, which: LabImage, tags: &[&str]) -> Result<Vec<String>, String> {
    let source = Reference::with_tag(registry.to_owned(), which.repository().into(), which.tag().into());
    let client = lab_client();
    let failed = |what: &str, e: OciDistributionError| format!("{what} {}: {e}", source.whole());
    let auth = &RegistryAuth::Anonymous;
    let (manifest, _) = client
        .pull_manifest_raw(&source, auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| failed("fetching the manifest of", e))?;
    let mut references = Vec::new();
    for tag in tags {
        let target =
            Reference::with_tag(source.registry().to_owned(), source.repository().to_owned(), (*tag).to_owned());
        client.auth(&target, auth, RegistryOperation::Push).await.map_err(|e| failed("authenticating to tag", e))?;
        let media_type = HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE);
        client
            .push_manifest_raw(&target, manifest.clone(), media_type)
            .await
            .map_err(|e| failed(&format!("tagging as {tag}"), e))?;
        references.push(target.whole());
    }
    Ok(references)
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
