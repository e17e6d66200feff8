//! What every RPC goes through: a span (the trace's, under the caller's `traceparent`), a log
//! line, its count and latency in the metrics, and a panic turned into an `Internal` status so
//! that no panic reaches a client as a dropped connection.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use tonic::{Response, Status};
use tracing::Instrument;

pub async fn serve<T>(rpc: &'static str, work: impl Future<Output = Result<T, Status>>) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let span = crate::telemetry::rpc_span(rpc);
    let outcome = AssertUnwindSafe(work).catch_unwind().instrument(span.clone()).await;
    let result = outcome.unwrap_or_else(|panic| {
        let message = panic_message(&*panic);
        tracing::error!(rpc, "panicked: {message}");
        Err(Status::internal(format!("{rpc}: internal error: {message}")))
    });
    let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
    crate::metrics::observe_rpc(rpc, code, started.elapsed());
    crate::telemetry::record_code(&span, code, is_runtime_failure(code));
    match &result {
        Ok(_) => tracing::debug!(rpc, elapsed = ?started.elapsed(), "ok"),
        // Failures of the runtime itself are the operator's business; refusals of bad
        // requests are the caller's.
        Err(status) if is_runtime_failure(status.code()) => {
            tracing::warn!(rpc, elapsed = ?started.elapsed(), code = ?status.code(), "{}", status.message())
        }
        Err(status) => {
            tracing::debug!(rpc, elapsed = ?started.elapsed(), code = ?status.code(), "{}", status.message())
        }
    }
    result.map(Response::new)
}

fn is_runtime_failure(code: tonic::Code) -> bool {
    use tonic::Code::{DataLoss, Internal, ResourceExhausted, Unknown};
    matches!(code, Internal | Unknown | ResourceExhausted | DataLoss)
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_internal() {
        let status = serve::<()>("Boom", async { panic!("exploded") }).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "Boom: internal error: exploded");
    }

    #[tokio::test]
    async fn results_pass_through() {
        assert_eq!(serve("Ok", async { Ok(7) }).await.unwrap().into_inner(), 7);
        let status = serve::<()>("Bad", async { Err(Status::not_found("x")) }).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
}
