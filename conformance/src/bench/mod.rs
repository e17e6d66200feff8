//! Benchmarks: a workload timed against one CRI endpoint, or two interleaved, reported as
//! percentiles of wall time. One module per workload.

pub mod pull;
mod report;
mod stats;

use std::time::Duration;

pub use report::{BenchReport, EndpointTimes, Ratio};
pub use stats::Summary;

use crate::client::{CriClient, Endpoint};

/// An endpoint a workload runs against.
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
