//! Where an image is pulled from: the registry's configured mirrors in order, then the registry.

use std::net::IpAddr;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};

use crate::config::RegistryConfig;
use crate::reference::{DOCKER_HUB, Reference};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two reads of a response: a registry that stalls mid-blob fails the pull.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as requests address it.
    pub host: String,
    pub plain_http: bool,
    /// Accept TLS certificates that do not verify.
    pub insecure: bool,
    /// The registry itself rather than a mirror of it: the only one credentials go to.
    pub upstream: bool,
}

impl Endpoint {
    pub fn client(&self) -> oci_client::Client {
        oci_client::Client::new(ClientConfig {
            protocol: if self.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            accept_invalid_certificates: self.insecure,
            // Indexes are resolved by crisp, which picks the platform and checks each manifest.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        })
    }

    /// The HTTP client for what crisp requests itself (capped manifest reads), set up as the
    /// registry client is.
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(self.insecure)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
    }

    /// The reference as this endpoint serves it: by digest when there is one, else by tag.
    pub fn reference(&self, reference: &Reference) -> oci_client::Reference {
        match (reference.digest(), reference.tag()) {
            (Some(digest), _) => oci_client::Reference::with_digest(
                self.host.clone(),
                reference.repository().to_owned(),
                digest.to_string(),
            ),
            (None, tag) => oci_client::Reference::with_tag(
                self.host.clone(),
                reference.repository().to_owned(),
                tag.unwrap_or("latest").to_owned(),
            ),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", if self.plain_http { "http" } else { "https" }, self.host)
    }
}

/// The endpoints for a registry, in the order they are tried. A registry on the loopback
/// interface is reached over plain HTTP, as Docker treats 127.0.0.0/8 as insecure by default.
pub fn endpoints(registries: &[RegistryConfig], reference: &Reference) -> Vec<Endpoint> {
    let host = reference.registry();
    let config = registries.iter().find(|r| r.host == host);
    let insecure = config.is_some_and(|c| c.insecure);
    let mut endpoints: Vec<Endpoint> = config
        .into_iter()
        .flat_map(|c| c.mirrors.iter())
        .map(|mirror| {
            let (plain_http, rest) = match mirror.strip_prefix("http://") {
                Some(rest) => (true, rest),
                None => (false, mirror.strip_prefix("https://").unwrap_or(mirror)),
            };
            Endpoint { host: rest.trim_end_matches('/').to_owned(), plain_http, insecure, upstream: false }
        })
        .collect();
    let upstream = if host == DOCKER_HUB { "registry-1.docker.io" } else { host };
    endpoints.push(Endpoint { host: upstream.to_owned(), plain_http: is_loopback(host), insecure, upstream: true });
    endpoints
}

fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(host: &str, mirrors: &[&str], insecure: bool) -> RegistryConfig {
        RegistryConfig { host: host.into(), mirrors: mirrors.iter().map(|m| m.to_string()).collect(), insecure }
    }

    #[test]
    fn mirrors_first_then_the_registry() {
        let registries = [registry("docker.io", &["http://127.0.0.1:5000", "https://mirror.example/"], false)];
        let got = endpoints(&registries, &Reference::parse("busybox").unwrap());
        assert_eq!(got.iter().map(|e| e.upstream).collect::<Vec<_>>(), [false, false, true]);
        let shown: Vec<_> = got.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["http://127.0.0.1:5000", "https://mirror.example", "https://registry-1.docker.io"]);
        let r = got[0].reference(&Reference::parse("busybox").unwrap());
        assert_eq!(r.whole(), "127.0.0.1:5000/library/busybox:latest");
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        for (reference, plain) in [
            ("127.0.0.1:5000/x", true),
            ("localhost:5000/x", true),
            ("[::1]:5000/x", true),
            ("quay.io/x", false),
            ("10.0.0.1:5000/x", false),
        ] {
            let got = endpoints(&[], &Reference::parse(reference).unwrap());
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].plain_http, plain, "{reference}");
        }
    }

    #[test]
    fn insecure_applies_to_host_and_mirrors() {
        let registries = [registry("quay.io", &["mirror:443"], true)];
        let got = endpoints(&registries, &Reference::parse("quay.io/a/b").unwrap());
        assert!(got.iter().all(|e| e.insecure && !e.plain_http));
    }

    #[test]
    fn digest_references_pull_by_digest() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("quay.io/a/b:v1@{d}")).unwrap();
        let e = &endpoints(&[], &r)[0];
        assert_eq!(e.reference(&r).whole(), format!("quay.io/a/b@{d}"));
    }
}
