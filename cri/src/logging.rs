//! Structured logs to stderr through `tracing`, as text or JSON; the same spans feed the
//! metrics' call latencies and, when an exporter is configured, the traces.

use std::io::IsTerminal;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, ServerConfig};
use crate::metrics::SpanTimings;

/// `RUST_LOG`, when set, overrides the configured level (for debugging one module). It filters
/// the logs only: traces keep every span at INFO and above whatever the log level.
pub fn init(server: &ServerConfig, traces: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(server.log_level.as_str()));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let logs = match server.log_format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let traces = traces.map(|provider| {
        tracing_opentelemetry::layer().with_tracer(crate::telemetry::tracer(provider)).with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(SpanTimings::layer()).with(traces).init();
}
