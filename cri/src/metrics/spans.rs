//! CNI and runtime call latencies from the spans the network and runtime crates open around
//! each call (`cni`, `runtime`): the same spans feed the traces, and those crates stay free of
//! any metrics library.

use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

type TimedOnly = FilterFn<fn(&Metadata<'_>) -> bool>;

/// Times the calls' spans from creation to close, so that time spent waiting between polls
/// (on a child process, on a plugin) counts.
pub struct SpanTimings;

impl SpanTimings {
    /// The layer, seeing only the spans it times: every other callsite stays as the log
    /// filter left it.
    pub fn layer<S>() -> Filtered<SpanTimings, TimedOnly, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        SpanTimings.with_filter(FilterFn::new(is_timed as fn(&Metadata<'_>) -> bool))
    }
}

fn is_timed(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && matches!(
            (metadata.target().split("::").next(), metadata.name()),
            (Some("crisp_network"), "cni") | (Some("crisp_runtime"), "runtime")
        )
}

struct Timing {
    started: Instant,
    call: Call,
}

enum Call {
    Cni { operation: String },
    Runtime { handler: String, command: String },
}

/// The labels a timed span carries as fields.
#[derive(Default)]
struct Fields {
    operation: Option<String>,
    handler: Option<String>,
    command: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }
}

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "operation" => self.operation = Some(value),
            "handler" => self.handler = Some(value),
            "command" => self.command = Some(value),
            _ => {}
        }
    }
}

impl<S> Layer<S> for SpanTimings
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let unknown = || "unknown".to_owned();
        let call = match attrs.metadata().name() {
            "cni" => Call::Cni { operation: fields.operation.unwrap_or_else(unknown) },
            _ => Call::Runtime {
                handler: fields.handler.unwrap_or_else(unknown),
                command: fields.command.unwrap_or_else(unknown),
            },
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Timing { started: Instant::now(), call });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(timing) = span.extensions_mut().remove::<Timing>() else { return };
        let elapsed = timing.started.elapsed();
        match timing.call {
            Call::Cni { operation } => super::observe_cni(operation, elapsed),
            Call::Runtime { handler, command } => super::observe_runtime(handler, command, elapsed),
        }
    }
}
