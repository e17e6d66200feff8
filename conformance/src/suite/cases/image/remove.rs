//! RemoveImage: what it removes, that it takes effect at once, and that it is idempotent.

use super::{absent, docker_io, ensure, ensure_id, ensure_tags, list, present, pull, remove};
use crate::lab::image::LabImage;
use crate::suite::{CaseResult, Context};

/// The kubelet pulls, then at once creates containers from the image; it removes, then at once
/// counts what is left: no settling time in either direction.
pub async fn visibility(context: &mut Context) -> CaseResult {
    let which = LabImage::MultiLayer;
    let reference = context.images.reference(which);
    pull(context, which, &reference).await?;
    let image = present(context, &reference).await?;
    ensure_id(context, &image, which)?;
    let listed = list(context).await?;
    ensure(listed.iter().any(|i| i.id == image.id), || format!("ListImages lacks {} right after its pull", image.id))?;

    remove(context, &reference).await?;
    absent(context, &reference).await?;
    absent(context, &image.id).await?;
    let listed = list(context).await?;
    ensure(!listed.iter().any(|i| i.id == image.id), || format!("ListImages lists {} after its removal", image.id))?;
    remove(context, &reference).await.map_err(|e| format!("removing again: {e}"))?;
    Ok(())
}

/// An image is removed whole, whichever of its tags names it.
pub async fn by_one_tag(context: &mut Context) -> CaseResult {
    let which = LabImage::Busybox;
    let names = docker_io(context, which)?;
    let reference = context.images.reference(which);
    pull(context, which, &names.short).await?;
    pull(context, which, &reference).await?;
    let image = present(context, &reference).await?;
    ensure_id(context, &image, which)?;
    ensure_tags(&image, &[&names.tagged, &reference])?;

    remove(context, &reference).await?;
    absent(context, &reference).await?;
    absent(context, &names.tagged).await?;
    let listed = list(context).await?;
    ensure(!listed.iter().any(|i| i.id == image.id), || format!("ListImages lists {} after its removal", image.id))?;
    Ok(())
}

/// critest's idempotence check: removing what is not there succeeds, every time.
pub async fn missing(context: &mut Context) -> CaseResult {
    let zeros = "0".repeat(64);
    let missing = [
        zeros.clone(),
        format!("sha256:{zeros}"),
        format!("{}/crisp-conformance/missing:never", context.images.registry()),
    ];
    for reference in &missing {
        for _ in 0..2 {
            remove(context, reference).await?;
        }
    }
    Ok(())
}
