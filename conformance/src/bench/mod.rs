//! Benchmarks: a workload timed against one CRI endpoint, or two interleaved, reported as
//! percentiles of wall time. One module per workload.

mod all;
pub mod burst;
pub mod density;
pub mod floor;
mod host;
pub mod load;
mod pods;
pub mod pull;
mod report;
pub mod sequential;
mod stats;

use std::time::Duration;

pub use all::{AllReport, TargetCheck, TargetsTable};
pub use host::CpuSeconds;
pub use report::{BenchReport, EndpointTimes, Ratio};
pub use stats::Summary;

use crate::client::{CriClient, Endpoint};

/// An endpoint a workload runs against.
#[derive(Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    pub client: CriClient,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{endpoint}: {rpc}: {:?}: {}", status.code(), status.message())]
    Rpc { endpoint: Endpoint, rpc: String, status: tonic::Status },
    #[error("{endpoint}: {rpc} did not finish within {after:?}")]
    Timeout { endpoint: Endpoint, rpc: String, after: Duration },
    #[error("{endpoint}: {reference} is still there after RemoveImage: a pull of it would not be cold")]
    NotRemoved { endpoint: Endpoint, reference: String },
    #[error("{endpoint}: the pod network is not ready ({why}): pods cannot run")]
    NetworkNotReady { endpoint: Endpoint, why: String },
}

/// Time one RPC may take before the benchmark gives up on the endpoint.
const RPC_TIMEOUT: Duration = Duration::from_secs(300);

/// Awaits `target`'s answer to `rpc`, within [`RPC_TIMEOUT`].
async fn call<T>(
    target: &Target,
    rpc: &str,
    response: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, BenchError> {
    let endpoint = || target.endpoint.clone();
    match tokio::time::timeout(RPC_TIMEOUT, response).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(BenchError::Rpc { endpoint: endpoint(), rpc: rpc.to_owned(), status }),
        Err(_) => Err(BenchError::Timeout { endpoint: endpoint(), rpc: rpc.to_owned(), after: RPC_TIMEOUT }),
    }
}

/// Indices of `count` targets in the order they run in `iteration`: rotated by one each time, so
/// that no target always runs right after another one warmed something shared (the registry).
fn order(count: usize, iteration: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |i| (i + iteration) % count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rotates() {
        assert_eq!(order(2, 0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(order(2, 1).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(order(2, 2).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(order(1, 7).collect::<Vec<_>>(), [0]);
        assert_eq!(order(3, 1).collect::<Vec<_>>(), [1, 2, 0]);
    }
}
