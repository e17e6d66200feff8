//! Connecting to a CRI endpoint, as crictl names them: `unix:///path/to.sock` or a bare path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint as TonicEndpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unsupported endpoint {0:?}: want unix:///path/to.sock")]
    Endpoint(String),
    #[error("connecting to {path}: {source}")]
    Connect { path: PathBuf, source: tonic::transport::Error },
}

/// A CRI endpoint: a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(PathBuf);

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, ClientError> {
        let path = text.strip_prefix("unix://").unwrap_or(text);
        if path.starts_with('/') { Ok(Endpoint(path.into())) } else { Err(ClientError::Endpoint(text.into())) }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unix://{}", self.0.display())
    }
}

/// The two CRI services, possibly on two endpoints.
#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

impl CriClient {
    pub async fn connect(runtime: &Endpoint, image: &Endpoint) -> Result<CriClient, ClientError> {
        let runtime_channel = channel(runtime).await?;
        let image_channel = if image == runtime { runtime_channel.clone() } else { channel(image).await? };
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(runtime_channel).max_decoding_message_size(16 << 20),
            image: ImageServiceClient::new(image_channel).max_decoding_message_size(16 << 20),
        })
    }
}

async fn channel(endpoint: &Endpoint) -> Result<Channel, ClientError> {
    let path = endpoint.path().to_owned();
    // The URI is required by tonic but unused: the connector below dials the socket.
    TonicEndpoint::from_static("http://cri.invalid")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ClientError::Connect { path: endpoint.path().to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(Endpoint::parse("unix:///run/crisp/crisp.sock").unwrap().path(), Path::new("/run/crisp/crisp.sock"));
        assert_eq!(Endpoint::parse("/run/x.sock").unwrap().to_string(), "unix:///run/x.sock");
        assert!(Endpoint::parse("tcp://127.0.0.1:1").is_err());
        assert!(Endpoint::parse("unix://relative").is_err());
    }
}
