//! Telemetry set-up shared by every service: `tracing` for logs and spans, bridged to
//! OpenTelemetry so that W3C trace context can travel in NATS headers and one approval
//! becomes one trace.
//!
//! Spans get trace ids whether or not anything exports them; OTLP export is switched on by
//! the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! variable. [`metrics`] contains the step-up counters and histograms, served as Prometheus
//! text and exported over OTLP in the same way.

pub mod metrics;

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use thiserror::Error;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The log filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Telemetry could not be set up.
#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("OTLP exporter could not be built from the OTEL_* variables: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("Prometheus exporter could not be registered: {0}")]
    Prometheus(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the tracer provider alive; dropping it flushes pending spans and metrics.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry: flushing spans at shutdown failed: {error}");
        }
        metrics::shutdown();
    }
}

/// Installs the global subscriber (filter from `RUST_LOG`, default [`DEFAULT_FILTER`]) and
/// the W3C trace-context propagator, and sets up [`metrics`]. `service` becomes the
/// OpenTelemetry `service.name`.
pub fn init(service: &str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    metrics::init(service)?;
    let provider = tracer_provider(service)?;
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("stepup"));
    init_with_layer(format, layer)?;
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard { provider })
}

/// Installs the global subscriber with `otel_layer` as its OpenTelemetry bridge. Tests pass
/// a layer whose tracer exports to memory.
pub fn init_with_layer<L>(format: LogFormat, otel_layer: L) -> Result<(), TelemetryError>
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    subscriber(format, otel_layer)?
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)
}

/// Builds the subscriber that [`init_with_layer`] installs and sets the W3C trace-context
/// propagator, without installing the subscriber. Tests add layers of their own, such as
/// one that captures every log line, before they install it.
pub fn subscriber<L>(
    format: LogFormat,
    otel_layer: L,
) -> Result<impl tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync, TelemetryError>
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let fmt = match format {
        // Colour codes only for a terminal: in a log file they get in the way of grep.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };

    // The log filter applies to log lines only: spans reach OpenTelemetry whatever the log
    // level, so trace context keeps flowing when an operator turns logging down.
    let span_filter = tracing_subscriber::filter::LevelFilter::INFO;
    Ok(tracing_subscriber::registry()
        .with(otel_layer.with_filter(span_filter))
        .with(fmt.with_filter(filter)))
}

fn tracer_provider(service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

fn otlp_configured() -> bool {
    any_variable_set(&[
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ])
}

fn any_variable_set(names: &[&str]) -> bool {
    names
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Returns the W3C trace-context headers (`traceparent`, `tracestate`) of the current span.
pub fn current_trace_headers() -> HashMap<String, String> {
    let context = tracing::Span::current().context();
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    headers
}

/// Makes `span` a child of the trace context in `headers`, when there is a valid one.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HashMap<String, String>) {
    let context = TraceContextPropagator::new().extract(headers);
    if !context.span().span_context().is_valid() {
        return;
    }
    if let Err(error) = span.set_parent(context) {
        tracing::debug!(%error, "span could not join the incoming trace");
    }
}

/// Makes `span` a child of the span a W3C `traceparent` names, when it is valid. The
/// callback uses it to put its events in the approval's trace, which the browser's HTTP
/// requests do not carry.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let headers = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        set_parent_from_headers(span, &headers);
    }
}

/// Links `span` to the span a W3C `traceparent` names, when it is valid. Unlike
/// [`set_parent_from_traceparent`] this works on a span that has started already, such as
/// an HTTP request's span that learns its approval only from a reply; the request stays in
/// its own trace and points at the approval's.
pub fn link_to_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let headers = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&headers);
    span.add_link(context.span().span_context().clone());
}

/// Returns the trace id of the current span as 32 hex digits, or `None` outside a trace.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
