//! The OCI image config and manifest documents, serialized with a fixed field order so that the
//! same image always encodes to the same bytes and therefore the same digests.

use std::collections::BTreeMap;

use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use serde::Serialize;

use super::layer::Layer;
use super::spec::ImageSpec;
use crate::lab::digest::Digest;

pub(super) fn config_json(spec: &ImageSpec, layers: &[Layer]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&ConfigFile {
        architecture: oci_architecture(),
        os: "linux",
        config: ContainerConfig {
            user: spec.user.as_deref(),
            env: &spec.env,
            entrypoint: &spec.entrypoint,
            cmd: &spec.cmd,
            working_dir: spec.working_dir.as_deref(),
            exposed_ports: spec.exposed_ports.iter().map(|p| (p.as_str(), Empty {})).collect(),
            volumes: spec.volumes.iter().map(|v| (v.as_str(), Empty {})).collect(),
        },
        rootfs: RootFs { kind: "layers", diff_ids: layers.iter().map(Layer::diff_id).collect() },
    })
}

pub(super) fn manifest_json(
    config: &[u8],
    config_digest: &Digest,
    layers: &[Layer],
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: OCI_IMAGE_MEDIA_TYPE,
        config: Descriptor { media_type: IMAGE_CONFIG_MEDIA_TYPE, digest: config_digest, size: config.len() },
        layers: layers
            .iter()
            .map(|layer| Descriptor {
                media_type: layer.media_type(),
                digest: layer.digest(),
                size: layer.blob().len(),
            })
            .collect(),
    })
}

/// The lab's binaries (busybox-static, pause) are the host's, so the image claims the host's
/// architecture under its OCI name.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    architecture: &'static str,
    os: &'static str,
    config: ContainerConfig<'a>,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<&'a str, Empty>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<&'a str, Empty>,
}

/// The spec encodes sets (ports, volumes) as objects whose values are `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a Digest>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'static str,
    digest: &'a Digest,
    size: usize,
}
