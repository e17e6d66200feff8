//! Image references as the kubelet and crictl write them, normalized the way Docker does:
//! `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;

use crate::digest::{Digest, DigestError};
use crate::host::is_host_port;

pub const DOCKER_HUB: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: &'static str },
    #[error("invalid image reference {reference:?}: {source}")]
    Digest { reference: String, source: DigestError },
}

/// A normalized reference: registry, repository, and a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason| ReferenceError::Invalid { reference: text.to_owned(), reason };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => {
                let digest =
                    Digest::parse(d).map_err(|source| ReferenceError::Digest { reference: text.to_owned(), source })?;
                (n, Some(digest))
            }
            None => (text, None),
        };
        // A tag is after the last ':' that follows the last '/': a registry's port comes before.
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        if let Some(tag) = tag {
            if !is_tag(tag) {
                return Err(invalid("a tag is 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if is_registry(first) => (first, rest.to_owned()),
            _ => (DOCKER_HUB, name.to_owned()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB } else { registry };
        if !is_host_port(registry) {
            return Err(invalid("the registry is not a valid host[:port]"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        // The limit is on the normalized name, as Docker's: `busybox` counts as
        // `docker.io/library/busybox`, so a name accepted here also parses once printed.
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(invalid("the name is longer than 255 characters"));
        }
        if !repository.split('/').all(is_path_component) {
            return Err(invalid(
                "repository path components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Reference { registry: registry.to_owned(), repository, tag, digest })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, as `repo_tags` lists it; none for a digest-only reference.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/repository@digest` for a manifest digest, as `repo_digests` lists it.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The first path component names a registry when it looks like a host: it has a dot or a port,
/// or is `localhost`, or has uppercase letters (which repositories cannot).
fn is_registry(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost" || component.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or any run of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        if !(separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/crisp/user-uid"), "127.0.0.1:5000/crisp/user-uid:latest");
        assert_eq!(norm("[::1]:5000/app:v1"), "[::1]:5000/app:v1");
        assert_eq!(norm("a.b/c/d/e__f-g.h:v1.2_3"), "a.b/c/d/e__f-g.h:v1.2_3");
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.tagged(), None);
        let r = Reference::parse(&format!("127.0.0.1:5000/busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.tagged().unwrap(), "127.0.0.1:5000/busybox:1.36");
        assert_eq!(r.with_digest(r.digest().unwrap()), format!("127.0.0.1:5000/busybox@{D}"));
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:abc",
            "a//b",
            "/busybox",
            "busybox/",
            "a/B",
            "a/b_-c",
            "a/.b",
            "host:99999999/x",
            "busybox:tag:tag",
            &format!("busybox:{}", "t".repeat(129)),
            &format!("x/{}", "a".repeat(300)),
            // 250 characters as written, 268 once normalized.
            &"a".repeat(250),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
