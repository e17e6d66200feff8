//! OCI images built in memory: gzip tar layers, the image config and the manifest, each with the
//! digest a registry will know it by.

mod busybox;
mod catalog;
mod layer;
mod oci;
mod spec;

pub use busybox::{BUSYBOX, busybox_layer};
pub use catalog::{
    LabImage, MULTI_LAYER_ADDED, MULTI_LAYER_KEPT, MULTI_LAYER_REMOVED, WEB_SERVER_INDEX, WEB_SERVER_PORT,
    WEB_SERVER_ROOT,
};
pub use layer::{Layer, LayerBuilder};
pub use spec::{DEFAULT_PATH, ImageSpec};
pub use tar::EntryType;

use super::digest::Digest;
use super::error::LabError;

/// A complete image, ready to push: the exact bytes of its manifest and config, and its layers.
#[derive(Clone, Debug)]
pub struct Image {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    config: Vec<u8>,
    config_digest: Digest,
    layers: Vec<Layer>,
}

impl Image {
    /// Builds the config and manifest for `layers`, bottom layer first.
    pub fn build(spec: &ImageSpec, layers: Vec<Layer>) -> Result<Self, LabError> {
        let config = oci::config_json(spec, &layers)?;
        let config_digest = Digest::of(&config);
        let manifest = oci::manifest_json(&config, &config_digest, &layers)?;
        Ok(Self { manifest_digest: Digest::of(&manifest), manifest, config, config_digest, layers })
    }

    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    pub fn config(&self) -> &[u8] {
        &self.config
    }

    pub fn config_digest(&self) -> &Digest {
        &self.config_digest
    }

    /// The image ID, as CRI runtimes report it: the config's digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
}
