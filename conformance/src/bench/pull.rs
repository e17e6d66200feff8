//! Cold pulls: the lab's multi-layer image, removed before every pull and after the last.

use std::num::NonZeroUsize;
use std::time::Instant;

use k8s_cri::v1::{ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest};

use super::{BenchError, BenchReport, Target, call, order};
use crate::lab::image::LabImage;
use crate::suite::{TestImages, is_image_id};

/// Three layers, one of them busybox: the layer the other lab images share.
pub const IMAGE: LabImage = LabImage::MultiLayer;

/// The lab images whose layers the pulled image shares: while a runtime holds one of them, that
/// layer is not pulled again.
const SHARING_LAYERS: [LabImage; 4] = [LabImage::Busybox, LabImage::UserUid, LabImage::UserName, LabImage::UserUidGid];

/// Pulls [`IMAGE`] cold `iterations` times on each target, interleaving the targets.
pub async fn run(targets: &[Target], images: &TestImages, iterations: NonZeroUsize) -> Result<BenchReport, BenchError> {
    let reference = images.reference(IMAGE);
    let mut notes = Vec::new();
    for target in targets.iter() {
        let shared = holding_shared_layers(target, images).await?;
        if !shared.is_empty() {
            notes.push(format!(
                "{} holds {}: the layers {IMAGE} shares with them were not pulled",
                target.endpoint,
                shared.join(", ")
            ));
        }
    }

    let mut samples = vec![Vec::with_capacity(iterations.get()); targets.len()];
    let measured = async {
        for iteration in 0..iterations.get() {
            for index in order(targets.len(), iteration) {
                let target = &targets[index];
                remove(target, &reference).await?;
                let started = Instant::now();
                let pull = PullImageRequest { image: spec(&reference), auth: None, sandbox_config: None };
                call(target, "PullImage", target.client.image.clone().pull_image(pull)).await?;
                samples[index].push(started.elapsed());
            }
        }
        Ok::<_, BenchError>(())
    };
    let measured = measured.await;
    // Every target's copy goes, also when a pull failed on one of them.
    let mut removed = Ok(());
    for target in targets.iter() {
        removed = removed.and(remove(target, &reference).await);
    }
    // A failed measurement is the error to report, before a failed clean-up after it.
    measured?;
    removed?;

    let what = format!("PullImage {reference}, removed before each pull");
    let times = targets.iter().map(|t| &t.endpoint).zip(samples).collect();
    Ok(BenchReport::new("pull", what, iterations.get(), times, notes))
}

/// Removes `reference` and makes sure it is gone: a pull that finds it is no measurement.
async fn remove(target: &Target, reference: &str) -> Result<(), BenchError> {
    let request = RemoveImageRequest { image: spec(reference) };
    call(target, "RemoveImage", target.client.image.clone().remove_image(request)).await?;
    let request = ImageStatusRequest { image: spec(reference), verbose: false };
    let status = call(target, "ImageStatus", target.client.image.clone().image_status(request)).await?;
    match status.image {
        None => Ok(()),
        Some(_) => Err(BenchError::NotRemoved { endpoint: target.endpoint.clone(), reference: reference.to_owned() }),
    }
}

/// The lab images sharing layers with [`IMAGE`] that `target` holds.
async fn holding_shared_layers(target: &Target, images: &TestImages) -> Result<Vec<String>, BenchError> {
    let listed =
        call(target, "ListImages", target.client.image.clone().list_images(ListImagesRequest { filter: None }))
            .await?
            .images;
    let held = |which: &LabImage| listed.iter().any(|image| is_image_id(&image.id, images.id(*which)));
    Ok(SHARING_LAYERS.iter().filter(|which| held(which)).map(ToString::to_string).collect())
}

fn spec(reference: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: reference.to_owned(), ..Default::default() })
}
