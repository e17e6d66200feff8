//! The lab's images as a runtime under test pulls them: from a plain-HTTP registry serving every
//! [`LabImage`] under its `repository:tag`, and from docker.io when the runtime mirrors docker.io
//! to that registry.

use std::collections::BTreeMap;

use oci_client::Reference;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use crate::lab::image::LabImage;
use crate::lab::push::lab_client;
use crate::lab::{Digest, Lab, LabError};

/// Where the test images are, and what the runtime will know them by.
#[derive(Clone, Debug)]
pub struct TestImages {
    /// `HOST:PORT`.
    registry: String,
    docker_io_mirrored: bool,
    digests: BTreeMap<LabImage, Digests>,
}

#[derive(Clone, Debug)]
struct Digests {
    manifest: Digest,
    config: Digest,
}

/// A lab image's names under docker.io, which a runtime resolves through the test registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerIoNames {
    /// What a person types: `busybox`.
    pub short: String,
    /// The normalized tagged reference runtimes report: `docker.io/library/busybox:latest`.
    pub tagged: String,
    /// `docker.io/library/busybox@sha256:...`.
    pub repo_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TestImagesError {
    #[error("cannot build the lab images: {0}")]
    Build(#[from] LabError),
    #[error("cannot get the manifest digest of {reference} from the test registry: {source}")]
    Fetch {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
    #[error(
        "the test registry serves {reference} as {served} but this host builds it as {built}: \
         serve the lab with this host's crisp-lab (the images are built from the host's busybox-static)"
    )]
    Mismatch { reference: String, served: String, built: Digest },
}

impl TestImages {
    /// The images of a lab this process runs.
    pub fn from_lab(lab: &Lab, docker_io_mirrored: bool) -> Self {
        let digests = lab
            .images()
            .iter()
            .map(|(which, pushed)| {
                let digests = Digests { manifest: pushed.digest.clone(), config: pushed.image.id().clone() };
                (*which, digests)
            })
            .collect();
        Self { registry: lab.registry().addr().to_string(), docker_io_mirrored, digests }
    }

    /// The images of a lab another process serves at `registry`. Their digests come from building
    /// them here (they are reproducible) and are checked against what the registry serves, so
    /// that a digest case fails for the runtime's faults only.
    pub async fn at(registry: impl Into<String>, docker_io_mirrored: bool) -> Result<Self, TestImagesError> {
        let registry = registry.into();
        let client = lab_client();
        let mut digests = BTreeMap::new();
        for (which, image) in LabImage::build_all()? {
            let reference =
                Reference::with_tag(registry.clone(), which.repository().to_owned(), which.tag().to_owned());
            let served = client
                .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
                .await
                .map_err(|source| TestImagesError::Fetch { reference: reference.whole(), source })?;
            let built = image.manifest_digest().clone();
            if built != served {
                return Err(TestImagesError::Mismatch { reference: reference.whole(), served, built });
            }
            digests.insert(which, Digests { manifest: built, config: image.id().clone() });
        }
        Ok(Self { registry, docker_io_mirrored, digests })
    }

    /// `HOST:PORT`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `HOST:PORT/library/busybox:latest`.
    pub fn reference(&self, which: LabImage) -> String {
        format!("{}:{}", self.untagged(which), which.tag())
    }

    /// `HOST:PORT/library/busybox`, which means `:latest`.
    pub fn untagged(&self, which: LabImage) -> String {
        format!("{}/{}", self.registry, which.repository())
    }

    /// `HOST:PORT/library/busybox@sha256:...`, the manifest's digest: what runtimes list among an
    /// image's `repo_digests`.
    pub fn repo_digest(&self, which: LabImage) -> String {
        format!("{}@{}", self.untagged(which), self.manifest_digest(which))
    }

    /// `HOST:PORT/library/busybox:latest@sha256:...`: the digest decides, the tag is a comment.
    pub fn tag_and_digest(&self, which: LabImage) -> String {
        format!("{}@{}", self.reference(which), self.manifest_digest(which))
    }

    pub fn manifest_digest(&self, which: LabImage) -> &Digest {
        // Every LabImage is in `digests`: both constructors cover LabImage::ALL.
        &self.digests[&which].manifest
    }

    /// The image ID runtimes report: the digest of the image's config.
    pub fn id(&self, which: LabImage) -> &Digest {
        &self.digests[&which].config
    }

    /// The image's docker.io names, when the runtime resolves docker.io through the test registry
    /// and the image is under `library/`, where docker.io's short names point.
    pub fn docker_io(&self, which: LabImage) -> Option<DockerIoNames> {
        let name = which.repository().strip_prefix("library/").filter(|_| self.docker_io_mirrored)?;
        let short = if which.tag() == "latest" { name.to_owned() } else { format!("{name}:{}", which.tag()) };
        let repository = format!("docker.io/{}", which.repository());
        Some(DockerIoNames {
            short,
            tagged: format!("{repository}:{}", which.tag()),
            repo_digest: format!("{repository}@{}", self.manifest_digest(which)),
        })
    }
}

/// Whether `id`, as a runtime reports it, is the image ID `config`: runtimes write it as the
/// digest (containerd) or as its bare hex (CRI-O).
pub(crate) fn is_image_id(id: &str, config: &Digest) -> bool {
    id == config.as_str() || config.as_str().strip_prefix("sha256:") == Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(docker_io_mirrored: bool) -> TestImages {
        let digests = LabImage::ALL
            .into_iter()
            .map(|which| {
                let name = which.to_string();
                let digests = Digests {
                    manifest: Digest::of(format!("manifest of {name}").as_bytes()),
                    config: Digest::of(format!("config of {name}").as_bytes()),
                };
                (which, digests)
            })
            .collect();
        TestImages { registry: "127.0.0.1:5000".into(), docker_io_mirrored, digests }
    }

    #[test]
    fn references() {
        let images = images(false);
        let manifest = Digest::of(b"manifest of library/busybox:latest");
        assert_eq!(images.reference(LabImage::Busybox), "127.0.0.1:5000/library/busybox:latest");
        assert_eq!(images.untagged(LabImage::Busybox), "127.0.0.1:5000/library/busybox");
        assert_eq!(images.repo_digest(LabImage::Busybox), format!("127.0.0.1:5000/library/busybox@{manifest}"));
        assert_eq!(
            images.tag_and_digest(LabImage::Busybox),
            format!("127.0.0.1:5000/library/busybox:latest@{manifest}")
        );
        assert_eq!(images.reference(LabImage::Pause), "127.0.0.1:5000/pause:3.10");
        assert_eq!(images.id(LabImage::UserUid), &Digest::of(b"config of crisp/user-uid:latest"));
    }

    #[test]
    fn docker_io_names_only_when_mirrored_and_under_library() {
        assert_eq!(images(false).docker_io(LabImage::Busybox), None);
        let mirrored = images(true);
        assert_eq!(mirrored.docker_io(LabImage::UserUid), None);
        assert_eq!(mirrored.docker_io(LabImage::Pause), None);
        let manifest = Digest::of(b"manifest of library/busybox:latest");
        assert_eq!(
            mirrored.docker_io(LabImage::Busybox),
            Some(DockerIoNames {
                short: "busybox".into(),
                tagged: "docker.io/library/busybox:latest".into(),
                repo_digest: format!("docker.io/library/busybox@{manifest}"),
            })
        );
    }

    #[test]
    fn image_ids_with_or_without_the_algorithm() {
        let config = Digest::of(b"config");
        let hex = config.as_str().strip_prefix("sha256:").unwrap().to_owned();
        assert!(is_image_id(config.as_str(), &config));
        assert!(is_image_id(&hex, &config));
        assert!(!is_image_id(&hex[..12], &config));
        assert!(!is_image_id(Digest::of(b"other").as_str(), &config));
        assert!(!is_image_id("", &config));
    }
}
