//! OpenTelemetry traces: the `tracing` spans of RPCs, CNI and runtime calls, pulls and unpacks,
//! exported over OTLP/gRPC when `[tracing] endpoint` is set. A caller's W3C `traceparent`
//! becomes the parent of its RPC's span.

use std::task::{Context, Poll};

use opentelemetry::context::FutureExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracingConfig;

/// The exporter, when one is configured. Needs the async runtime: the gRPC channel lives there.
pub fn provider(config: &TracingConfig) -> Result<Option<SdkTracerProvider>, opentelemetry_otlp::ExporterBuildError> {
    if config.endpoint.is_empty() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(&config.endpoint).build()?;
    // Parent-based: a trace the caller sampled (or dropped) is kept (or dropped) whole.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_rate)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(Resource::builder().with_service_name("crisp").build())
        .build();
    Ok(Some(provider))
}

pub fn tracer(provider: &SdkTracerProvider) -> Tracer {
    provider.tracer("crisp")
}

/// An RPC's span, a child of the caller's trace if it sent one (see [`TraceContextLayer`]).
/// What only traces need is set as OpenTelemetry attributes, out of the log lines.
pub fn rpc_span(rpc: &'static str) -> tracing::Span {
    let span = tracing::info_span!("rpc", rpc, otel.name = rpc, otel.kind = "server");
    let remote = opentelemetry::Context::current();
    if remote.has_active_span() {
        // Fails only when no exporter is installed: then there is no trace to join.
        let _ = span.set_parent(remote);
    }
    span.set_attribute("rpc.system", "grpc");
    span
}

/// The RPC's gRPC status code; failures of the runtime itself mark the span as an error.
pub fn record_code(span: &tracing::Span, code: tonic::Code, failed: bool) {
    span.set_attribute("rpc.grpc.status_code", code as i64);
    if failed {
        span.set_status(Status::error(code.description()));
    }
}

/// A tower layer for the gRPC server: runs each request with the trace context of its
/// `traceparent` header (gRPC metadata) current, where [`adopt_remote_parent`] finds it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceContextService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = opentelemetry::context::WithContext<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let remote = TraceContextPropagator::new().extract(&Headers(request.headers()));
        self.inner.call(request).with_context(remote)
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_extracted() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        let span = opentelemetry::trace::TraceContextExt::span(&cx);
        let remote = span.span_context();
        assert!(remote.is_remote() && remote.is_sampled());
        assert_eq!(remote.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(remote.span_id().to_string(), "b7ad6b7169203331");
    }
}
