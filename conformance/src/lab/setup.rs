use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use oci_client::Reference;

use super::digest::Digest;
use super::error::LabError;
use super::image::{Image, LabImage};
use super::push::{lab_client, push};
use super::registry::Registry;

/// A registry serving every [`LabImage`].
#[derive(Debug)]
pub struct Lab {
    registry: Registry,
    images: BTreeMap<LabImage, PushedImage>,
}

/// A lab image as the registry serves it.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// `127.0.0.1:PORT/repository:tag`.
    pub reference: Reference,
    /// The manifest digest the registry stored it under.
    pub digest: Digest,
    pub image: Image,
}

impl Lab {
    /// A lab on a temporary registry: what tests use.
    pub async fn start() -> Result<Self, LabError> {
        Self::with_registry(Registry::start().await?).await
    }

    /// A lab at a fixed address with storage under `dir`, for a long-running lab.
    pub async fn serve_at(addr: SocketAddr, dir: &Path) -> Result<Self, LabError> {
        Self::with_registry(Registry::serve_at(addr, dir).await?).await
    }

    /// Pushes every lab image to `registry`, with its credentials if it has any.
    pub async fn with_registry(registry: Registry) -> Result<Self, LabError> {
        let client = lab_client();
        let auth = registry.auth();
        let mut images = BTreeMap::new();
        for (which, image) in LabImage::build_all()? {
            let reference =
                Reference::with_tag(registry.addr().to_string(), which.repository().to_owned(), which.tag().to_owned());
            let digest = push(&client, &reference, &image, &auth).await?;
            images.insert(which, PushedImage { reference, digest, image });
        }
        Ok(Self { registry, images })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn images(&self) -> &BTreeMap<LabImage, PushedImage> {
        &self.images
    }

    pub fn image(&self, which: LabImage) -> &PushedImage {
        // Every LabImage is pushed before a Lab exists.
        &self.images[&which]
    }
}
