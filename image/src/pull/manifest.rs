//! Manifests, indexes and image configs, read strictly: what crisp does not understand or
//! does not trust is refused, never guessed at.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::store::ImageConfigSummary;

/// Manifests and configs are small; larger ones are hostile or broken.
pub const MAX_DOCUMENT_SIZE: usize = 4 << 20;

pub const ACCEPTED: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub urls: Vec<String>,
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<u32>,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

#[derive(Debug)]
pub enum Manifest {
    Index(Vec<Descriptor>),
    Image { config: Descriptor, layers: Vec<Descriptor> },
}

pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    if doc.schema_version != Some(2) {
        return Err(format!("unsupported schemaVersion {:?}: only 2 is", doc.schema_version));
    }
    match (doc.manifests, doc.config, doc.layers) {
        (Some(manifests), None, None) => Ok(Manifest::Index(manifests)),
        (None, Some(config), Some(layers)) => {
            if let Some(foreign) = layers.iter().find(|l| !l.urls.is_empty()) {
                return Err(format!("layer {} has foreign URLs: crisp pulls only from the registry", foreign.digest));
            }
            Ok(Manifest::Image { config, layers })
        }
        (Some(_), _, _) => Err("both an index (manifests) and an image manifest (config, layers)".into()),
        _ => Err("neither an index nor an image manifest".into()),
    }
}

/// The host's platform as OCI names it.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

pub fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let (os, arch) = host_platform();
    manifests.iter().find(|m| m.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch))
}

#[derive(Deserialize)]
struct ConfigDocument {
    #[serde(default)]
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    user: Option<String>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
}

pub struct ImageConfig {
    pub diff_ids: Vec<Digest>,
    pub summary: ImageConfigSummary,
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, String> {
    let doc: ConfigDocument = serde_json::from_slice(bytes).map_err(|e| format!("not an image config: {e}"))?;
    let c = doc.config.unwrap_or_default();
    Ok(ImageConfig {
        diff_ids: doc.rootfs.diff_ids,
        summary: ImageConfigSummary {
            user: c.user.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: c.labels.unwrap_or_default(),
            stop_signal: c.stop_signal.unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn desc(extra: &str) -> String {
        format!(r#"{{"mediaType":"x","digest":"{D}","size":1{extra}}}"#)
    }

    #[test]
    fn manifests_and_indexes() {
        let image = format!(r#"{{"schemaVersion":2,"config":{},"layers":[{}]}}"#, desc(""), desc(""));
        assert!(matches!(parse_manifest(image.as_bytes()), Ok(Manifest::Image { layers, .. }) if layers.len() == 1));
        let platform = r#","platform":{"os":"linux","architecture":"amd64"}"#;
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, desc(platform));
        let Ok(Manifest::Index(entries)) = parse_manifest(index.as_bytes()) else { panic!() };
        assert_eq!(pick_platform(&entries).is_some(), host_platform() == ("linux", "amd64"));
    }

    #[test]
    fn refuses_what_it_does_not_trust() {
        let both = format!(r#"{{"schemaVersion":2,"manifests":[],"config":{},"layers":[]}}"#, desc(""));
        assert!(parse_manifest(both.as_bytes()).unwrap_err().contains("both"));
        let foreign =
            format!(r#"{{"schemaVersion":2,"config":{},"layers":[{}]}}"#, desc(""), desc(r#","urls":["http://x"]"#));
        assert!(parse_manifest(foreign.as_bytes()).unwrap_err().contains("foreign"));
        assert!(parse_manifest(br#"{"schemaVersion":1}"#).unwrap_err().contains("schemaVersion"));
        let bad_digest = r#"{"schemaVersion":2,"config":{"digest":"md5:x","size":1},"layers":[]}"#;
        assert!(parse_manifest(bad_digest.as_bytes()).is_err());
    }

    #[test]
    fn config_summary() {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"1003:1004","Env":["A=1"],"Cmd":["sh"],"WorkingDir":"/w","Volumes":{{"/data":{{}}}},"ExposedPorts":{{"80/tcp":{{}}}}}},"rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let parsed = parse_config(config.as_bytes()).unwrap();
        assert_eq!(parsed.diff_ids.len(), 1);
        assert_eq!(parsed.summary.user, "1003:1004");
        assert_eq!(parsed.summary.volumes, ["/data"]);
        assert_eq!(parsed.summary.exposed_ports, ["80/tcp"]);
        assert_eq!(parsed.summary.cmd, ["sh"]);
    }
}
