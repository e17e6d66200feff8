//! Manifests fetched with a size cap: a registry's answer is read only up to the cap, so a
//! hostile one cannot make crisp buffer an endless document. oci-client does the auth
//! handshake; the request is crisp's.

use futures::StreamExt;
use oci_client::RegistryOperation;
use oci_client::secrets::RegistryAuth;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION};

use super::endpoint::Endpoint;
use super::error::PullError;
use super::manifest::{ACCEPTED, MAX_DOCUMENT_SIZE};
use crate::digest::Digest;
use crate::reference::Reference;

pub struct Fetcher<'a> {
    pub client: &'a oci_client::Client,
    pub http: &'a reqwest::Client,
    pub endpoint: &'a Endpoint,
    pub reference: &'a Reference,
    pub auth: &'a RegistryAuth,
}

impl Fetcher<'_> {
    /// The manifest `remote` names (by tag or digest), its bytes and their digest.
    pub async fn manifest(&self, remote: &oci_client::Reference) -> Result<(Vec<u8>, Digest), PullError> {
        let token = self
            .client
            .auth(remote, self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| PullError::registry(self.endpoint, self.reference, e))?;
        let scheme = if self.endpoint.plain_http { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            remote.resolve_registry(),
            remote.repository(),
            remote.digest().or(remote.tag()).unwrap_or("latest")
        );
        let mut request = self.http.get(&url).header(ACCEPT, ACCEPTED.join(", "));
        request = match (token, self.auth) {
            (Some(token), _) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        };
        let unreachable = |e: reqwest::Error| PullError::Unreachable {
            reference: self.reference.to_string(),
            message: format!("{}: {e}", self.endpoint),
        };
        let response = request.send().await.map_err(unreachable)?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(PullError::NotFound {
                    reference: self.reference.to_string(),
                    tried: format!("{}: no manifest {url}", self.endpoint),
                });
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(PullError::Unauthorized {
                    reference: self.reference.to_string(),
                    message: format!("{}: {} for {url}", self.endpoint, response.status()),
                });
            }
            status => {
                return Err(PullError::Unreachable {
                    reference: self.reference.to_string(),
                    message: format!("{}: {status} for {url}", self.endpoint),
                });
            }
        }
        let too_large = || {
            PullError::invalid(
                self.reference,
                format!("the manifest at {url} is over the {MAX_DOCUMENT_SIZE} byte limit"),
            )
        };
        if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_SIZE as u64) {
            return Err(too_large());
        }
        let body = read_capped(response.bytes_stream(), MAX_DOCUMENT_SIZE, unreachable, too_large).await?;
        let digest = Digest::of(&body);
        if let Some(wanted) = remote.digest().filter(|wanted| *wanted != digest.as_str()) {
            return Err(PullError::invalid(
                self.reference,
                format!("manifest {wanted} from {url} has digest {digest}"),
            ));
        }
        Ok((body, digest))
    }
}

/// Reads a stream into memory, failing as soon as it passes `cap` bytes.
pub async fn read_capped<E>(
    mut stream: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    cap: usize,
    failed: impl Fn(E) -> PullError,
    too_large: impl Fn() -> PullError,
) -> Result<Vec<u8>, PullError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(&failed)?;
        if bytes.len() + chunk.len() > cap {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A registry that answers `/v2/` and serves `manifest` for every manifest request, with or
    /// without a Content-Length.
    async fn fake_registry(manifest: Vec<u8>, with_length: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let manifest = manifest.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(request)) = lines.next_line().await {
                        while let Ok(Some(header)) = lines.next_line().await {
                            if header.is_empty() {
                                break;
                            }
                        }
                        let body: &[u8] = if request.contains("/manifests/") { &manifest } else { b"{}" };
                        let head = if with_length {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                        } else {
                            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned()
                        };
                        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(body).await.is_err() {
                            return;
                        }
                        if !with_length {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn fetch(addr: &str, reference: &str) -> Result<(Vec<u8>, Digest), PullError> {
        let reference = Reference::parse(&format!("{addr}/{reference}")).unwrap();
        let endpoint = Endpoint { host: addr.to_owned(), plain_http: true, insecure: false, upstream: true };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (client, http) = (endpoint.client(), endpoint.http_client().unwrap());
        let fetcher = Fetcher {
            client: &client,
            http: &http,
            endpoint: &endpoint,
            reference: &reference,
            auth: &RegistryAuth::Anonymous,
        };
        fetcher.manifest(&endpoint.reference(&reference)).await
    }

    #[tokio::test]
    async fn reads_a_manifest_and_its_digest() {
        let manifest = br#"{"schemaVersion":2}"#.to_vec();
        let addr = fake_registry(manifest.clone(), true).await;
        let (bytes, digest) = fetch(&addr, "a/b:v1").await.unwrap();
        assert_eq!(bytes, manifest);
        assert_eq!(digest, Digest::of(&manifest));
        // By digest: what comes back must be that digest.
        fetch(&addr, &format!("a/b@{}", Digest::of(&manifest))).await.unwrap();
        let other = Digest::of(b"other");
        let err = fetch(&addr, &format!("a/b@{other}")).await.unwrap_err();
        assert!(matches!(err, PullError::Invalid { .. }), "{err}");
    }

    #[tokio::test]
    async fn refuses_manifests_over_the_cap_with_or_without_a_length() {
        for with_length in [true, false] {
            let addr = fake_registry(vec![b' '; MAX_DOCUMENT_SIZE + 1], with_length).await;
            let err = fetch(&addr, "a/b:v1").await.unwrap_err();
            assert!(matches!(&err, PullError::Invalid { reason, .. } if reason.contains("byte limit")), "{err}");
        }
    }
}
