//! Prometheus metrics at `[metrics] address`: what happened (RPCs, pulls, CNI and runtime
//! calls) counted as it happens, what is (pods, containers, monitors, the daemon's process) read
//! at scrape time.
//!
//! The series that count events live for the whole process, as the log subscriber does: RPCs
//! are counted where every RPC passes (`service::rpc`), CNI and runtime calls from the
//! `tracing` spans their crates open (see [`spans`]), so those crates need no metrics library.

mod http;
mod scrape;
mod spans;

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use http::serve;
pub use spans::SpanTimings;

const PREFIX: &str = "crisp";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    handler: String,
    command: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<RpcLabels>,
    pulls: Counter,
    pull_failures: Counter,
    pull_seconds: Histogram,
    cni_seconds: Histograms<OperationLabels>,
    runtime_seconds: Histograms<RuntimeLabels>,
}

/// 1 ms to 33 s: an RPC, a plugin or a runtime command.
fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 50 ms to 7 min: pulls of small and large images.
fn pull_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix(PREFIX);
    let metrics = Metrics {
        rpcs: Family::default(),
        rpc_seconds: Family::new_with_constructor(call_histogram),
        pulls: Counter::default(),
        pull_failures: Counter::default(),
        pull_seconds: pull_histogram(),
        cni_seconds: Family::new_with_constructor(call_histogram),
        runtime_seconds: Family::new_with_constructor(call_histogram),
        registry: Registry::default(),
    };
    registry.register("grpc_requests", "CRI RPCs handled, by method and gRPC status code", metrics.rpcs.clone());
    registry.register_with_unit(
        "grpc_request_duration",
        "Time to handle a CRI RPC, by method and gRPC status code",
        Unit::Seconds,
        metrics.rpc_seconds.clone(),
    );
    registry.register(
        "image_pulls",
        "Image pulls asked for, by PullImage or for the pause image",
        metrics.pulls.clone(),
    );
    registry.register("image_pull_failures", "Image pulls that failed", metrics.pull_failures.clone());
    registry.register_with_unit(
        "image_pull_duration",
        "Time an image pull took, failed ones too",
        Unit::Seconds,
        metrics.pull_seconds.clone(),
    );
    registry.register_with_unit(
        "cni_operation_duration",
        "Time a CNI operation took along the network's plugin chain, by operation",
        Unit::Seconds,
        metrics.cni_seconds.clone(),
    );
    registry.register_with_unit(
        "runtime_call_duration",
        "Time a command of the OCI runtime took, by handler and command",
        Unit::Seconds,
        metrics.runtime_seconds.clone(),
    );
    Metrics { registry, ..metrics }
});

/// Counts an RPC that ended with `code`.
pub fn observe_rpc(method: &'static str, code: tonic::Code, elapsed: Duration) {
    let labels = RpcLabels { method, code: code_name(code) };
    METRICS.rpcs.get_or_create(&labels).inc();
    METRICS.rpc_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
}

/// Runs a pull, counting and timing it whatever its outcome.
pub async fn timed_pull<T, E>(pull: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let started = Instant::now();
    let result = pull.await;
    METRICS.pulls.inc();
    if result.is_err() {
        METRICS.pull_failures.inc();
    }
    METRICS.pull_seconds.observe(started.elapsed().as_secs_f64());
    result
}

fn observe_cni(operation: String, elapsed: Duration) {
    METRICS.cni_seconds.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
}

fn observe_runtime(handler: String, command: String, elapsed: Duration) {
    METRICS.runtime_seconds.get_or_create(&RuntimeLabels { handler, command }).observe(elapsed.as_secs_f64());
}

/// gRPC's canonical names, as other runtimes' and gRPC's own metrics label codes.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
