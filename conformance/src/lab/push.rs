//! Pushing lab images with oci-client, the same client code crisp pulls with.

use http::HeaderValue;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::digest::Digest;
use super::error::LabError;
use super::image::Image;

/// A client for the lab's registries, which speak plain HTTP on 127.0.0.1. A client keeps the
/// first credentials it is given for a registry, so use one client per identity.
pub fn lab_client() -> Client {
    // oci-client's HTTP stack needs a TLS provider even for plain HTTP; ring builds lighter than
    // aws-lc. Installing fails only when one is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        // The lab's blobs are small: one request each beats a chunked upload session.
        use_monolithic_push: true,
        ..ClientConfig::default()
    })
}

/// Pushes `image` as `reference` (`registry/repository:tag`) and returns its manifest digest.
///
/// The manifest goes up as the exact bytes that were built: oci-client's `push_manifest` would
/// re-serialize it as canonical JSON, giving it a different digest than the one the image was
/// built with.
pub async fn push(
    client: &Client,
    reference: &Reference,
    image: &Image,
    auth: &RegistryAuth,
) -> Result<Digest, LabError> {
    client
        .auth(reference, auth, RegistryOperation::Push)
        .await
        .map_err(|e| distribution_error("authenticate to push", reference, e))?;
    push_content(client, reference, image).await
}

/// Pushes each image by digest and an OCI index over them, tagged as `reference`; each image
/// is listed for `linux` and the architecture given beside it. Returns the index's digest.
pub async fn push_index(
    client: &Client,
    reference: &Reference,
    platforms: &[(&Image, &str)],
    auth: &RegistryAuth,
) -> Result<Digest, LabError> {
    let failed = |operation| move |source| distribution_error(operation, reference, source);
    client.auth(reference, auth, RegistryOperation::Push).await.map_err(failed("authenticate to push"))?;
    let mut manifests = Vec::new();
    for (image, architecture) in platforms {
        let by_digest = Reference::with_digest(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            image.manifest_digest().as_str().to_owned(),
        );
        push_content(client, &by_digest, image).await?;
        manifests.push(serde_json::json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": image.manifest_digest().as_str(),
            "size": image.manifest().len(),
            "platform": {"os": "linux", "architecture": architecture},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": manifests,
    }))
    .map_err(LabError::Json)?;
    client
        .push_manifest_raw(reference, index.clone(), HeaderValue::from_static(OCI_IMAGE_INDEX_MEDIA_TYPE))
        .await
        .map_err(failed("push the index of"))?;
    Ok(Digest::of(&index))
}

/// The image's blobs, then its manifest under `reference` (a tag or its own digest).
async fn push_content(client: &Client, reference: &Reference, image: &Image) -> Result<Digest, LabError> {
    let failed = |operation| move |source| distribution_error(operation, reference, source);
    let blobs = image
        .layers()
        .iter()
        .map(|layer| (layer.blob(), layer.digest()))
        .chain([(image.config(), image.config_digest())]);
    for (blob, digest) in blobs {
        // A restarted long-running lab already stores its (reproducible) blobs.
        if !client.blob_exists(reference, digest.as_str()).await.map_err(failed("check a blob of"))? {
            client.push_blob(reference, blob.to_vec(), digest.as_str()).await.map_err(failed("push a blob of"))?;
        }
    }

    let location = client
        .push_manifest_raw(reference, image.manifest().to_vec(), HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE))
        .await
        .map_err(failed("push the manifest of"))?;
    let expected = image.manifest_digest();
    // The registry names the manifest it stored by the digest it computed: a mismatch means it
    // did not keep our bytes.
    if !location.ends_with(&format!("/manifests/{expected}")) {
        return Err(LabError::ManifestLocation { reference: reference.whole(), location, expected: expected.clone() });
    }
    Ok(expected.clone())
}

fn distribution_error(operation: &'static str, reference: &Reference, source: OciDistributionError) -> LabError {
    LabError::Distribution { operation, reference: reference.whole(), source }
}
