//! ImageStatus: one image whatever it is asked by, and the user its config runs as.

use super::{absent, ensure, ensure_id, ensure_same, present, pull, remove};
use crate::lab::image::LabImage;
use crate::suite::{CaseResult, Context};

/// critest: "image status should support all kinds of references": its ID, each of its repo
/// tags and each of its repo digests.
pub async fn every_reference(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let reference = context.images.reference(which);
    pull(context, which, &reference).await?;
    let image = present(context, &reference).await?;
    ensure_id(context, &image, which)?;
    ensure(!image.repo_tags.is_empty() && !image.repo_digests.is_empty(), || {
        format!("want repo tags and repo digests, got {:?} and {:?}", image.repo_tags, image.repo_digests)
    })?;
    let references = [&image.id].into_iter().chain(&image.repo_tags).chain(&image.repo_digests);
    for other in references {
        ensure_same(&image, &present(context, other).await?, other)?;
    }
    remove(context, &image.id).await?;
    absent(context, &reference).await?;
    Ok(())
}

/// critest: "image status get image fields should not have Uid|Username empty", `USER 1002`.
pub async fn user_uid(context: &mut Context) -> CaseResult {
    user(context, LabImage::UserUid, 1002, "").await
}

/// `USER www-data`: a name, no uid.
pub async fn user_name(context: &mut Context) -> CaseResult {
    user(context, LabImage::UserName, 0, "www-data").await
}

/// `USER 1003:1004`: the uid; the group is not the image's user.
pub async fn user_uid_gid(context: &mut Context) -> CaseResult {
    user(context, LabImage::UserUidGid, 1003, "").await
}

/// The image's `uid` (0 when unset, as critest reads it) and `username`.
async fn user(context: &mut Context, which: LabImage, uid: i64, username: &str) -> CaseResult {
    let reference = context.images.reference(which);
    pull(context, which, &reference).await?;
    let image = present(context, &reference).await?;
    ensure_id(context, &image, which)?;
    let got_uid = image.uid.as_ref().map_or(0, |uid| uid.value);
    ensure(got_uid == uid && image.username == username, || {
        format!("uid {:?} and username {:?}, want uid {uid} and username {username:?}", image.uid, image.username)
    })?;
    remove(context, &reference).await?;
    Ok(())
}
