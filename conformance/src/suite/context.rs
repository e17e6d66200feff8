//! What a case runs with: the runtime's client, the test images, and the lab images the running
//! case pulled, which the runner removes after it.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_cri::v1::{ImageSpec, ListImagesRequest, RemoveImageRequest};

use super::cases::rpc_failed;
use super::test_images::is_image_id;
use super::{CaseResult, Stop, TestImages};
use crate::client::CriClient;
use crate::lab::image::LabImage;

pub struct Context {
    pub client: CriClient,
    pub images: TestImages,
    pulled: BTreeSet<LabImage>,
}

/// Time the runner gives a case's images to go after it.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

impl Context {
    pub fn new(client: CriClient, images: TestImages) -> Self {
        Self { client, images, pulled: BTreeSet::new() }
    }

    /// Makes `which` the running case's to pull and to have removed after it. It must not be in
    /// the runtime before the case first claims it: the runner would then remove an image that
    /// someone else pulled, and the case would not see a pull that starts from nothing.
    pub(crate) async fn claim(&mut self, which: LabImage) -> CaseResult {
        if self.pulled.contains(&which) {
            return Ok(());
        }
        let id = self.images.id(which).clone();
        let listed = self.list_images().await.map_err(|e| format!("checking that {which} is not pulled yet: {e}"))?;
        if listed.iter().any(|image| is_image_id(&image.id, &id)) {
            return Err(Stop::Skip(format!(
                "{} ({id}) is already in the runtime and this suite removes only what it pulled: \
                 remove it to run this case",
                self.images.reference(which)
            )));
        }
        self.pulled.insert(which);
        Ok(())
    }

    /// Removes those of the case's images that are still there, forgetting them either way: one
    /// that stays makes the next case that claims it skip, saying so.
    pub(crate) async fn remove_pulled(&mut self) -> Result<(), String> {
        let pulled = std::mem::take(&mut self.pulled);
        if pulled.is_empty() {
            return Ok(());
        }
        let remove = async {
            for image in self.list_images().await? {
                if pulled.iter().any(|which| is_image_id(&image.id, self.images.id(*which))) {
                    let request =
                        RemoveImageRequest { image: Some(ImageSpec { image: image.id, ..Default::default() }) };
                    self.client.image.remove_image(request).await.map_err(|s| rpc_failed("RemoveImage", s))?;
                }
            }
            Ok(())
        };
        tokio::time::timeout(CLEANUP_TIMEOUT, remove)
            .await
            .unwrap_or_else(|_| Err(format!("removing the case's images took over {CLEANUP_TIMEOUT:?}")))
    }

    async fn list_images(&mut self) -> Result<Vec<k8s_cri::v1::Image>, String> {
        let listed = self.client.image.list_images(ListImagesRequest { filter: None }).await;
        Ok(listed.map_err(|s| rpc_failed("ListImages", s))?.into_inner().images)
    }
}
