//! Step-up metrics: one OpenTelemetry meter provider per process, read by a Prometheus
//! exporter for `/metrics` and, when the standard `OTEL_*` variables name an endpoint,
//! exported over OTLP as well.
//!
//! Services record through the functions here (`challenge_issued`, ...), so every
//! instrument has one name, unit and label set. The Prometheus side uses the
//! `opentelemetry-prometheus` exporter, which the OpenTelemetry project releases in step
//! with the SDK, and the `prometheus` crate's text encoder.
//!
//! The provider is built on first use. [`init`] builds it with the service's name and
//! OTLP export; code that records before [`init`] ran (tests, libraries) gets a provider
//! named [`DEFAULT_SERVICE`] instead. Several services in one process (`stepup run all`,
//! the end-to-end tests) share one provider, so each `/metrics` shows the whole process.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use prometheus::{Encoder as _, TextEncoder};

use crate::TelemetryError;

/// The `service.name` of a provider built before [`init`] ran.
pub const DEFAULT_SERVICE: &str = "stepup";

/// Upper bucket bounds, in seconds, of the time from `stepup.required` to completion: an
/// approver reads the message, signs in and enters a second factor, which takes seconds to
/// minutes.
const COMPLETION_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Upper bucket bounds, in seconds, of the callback's wait for an outcome: one token
/// request and two NATS hops, bounded by the callback's `outcome_wait`.
const CALLBACK_WAIT_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0,
];

/// The end of a callback's wait for the challenge's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Satisfied,
    Failed,
    /// No outcome arrived in time and the approver saw the pending page.
    TimedOut,
}

impl WaitOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Satisfied => "satisfied",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

/// The process's meter provider, the registry `/metrics` reads, and the instruments.
struct Metrics {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    instruments: Instruments,
}

struct Instruments {
    issued: Counter<u64>,
    completed: Counter<u64>,
    failed: Counter<u64>,
    expired: Counter<u64>,
    time_to_completion: Histogram<f64>,
    callback_wait: Histogram<f64>,
    consumer_pending: Gauge<u64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Builds the process's meter provider for `service`, with OTLP export when the `OTEL_*`
/// variables name an endpoint, and installs it as the global one. A provider that exists
/// already, because this ran before or something recorded first, stays in place.
pub fn init(service: &str) -> Result<(), TelemetryError> {
    if METRICS.get().is_some() {
        return Ok(());
    }
    let metrics = Metrics::build(service, otlp_configured())?;
    if let Err(unused) = METRICS.set(metrics) {
        // Another thread installed its provider first; this one never recorded anything.
        let _ = unused.provider.shutdown();
    }
    Ok(())
}

/// Flushes pending OTLP exports and stops the provider. Called when the process ends.
pub fn shutdown() {
    if let Some(metrics) = METRICS.get()
        && let Err(error) = metrics.provider.shutdown()
    {
        eprintln!("telemetry: flushing metrics at shutdown failed: {error}");
    }
}

/// Counts a challenge issued for `provider`.
pub fn challenge_issued(provider: &str) {
    instruments()
        .issued
        .add(1, &[KeyValue::new("provider", provider.to_owned())]);
}

/// Counts a challenge satisfied through `provider`.
pub fn challenge_completed(provider: &str) {
    instruments()
        .completed
        .add(1, &[KeyValue::new("provider", provider.to_owned())]);
}

/// Counts a challenge that failed with the reason code `reason`.
pub fn challenge_failed(provider: &str, reason: &str) {
    instruments().failed.add(
        1,
        &[
            KeyValue::new("provider", provider.to_owned()),
            KeyValue::new("reason", reason.to_owned()),
        ],
    );
}

/// Counts a challenge that expired before it was satisfied.
pub fn challenge_expired(provider: &str) {
    instruments()
        .expired
        .add(1, &[KeyValue::new("provider", provider.to_owned())]);
}

/// Records the time from a challenge's `stepup.required` to its completion.
pub fn record_time_to_completion(provider: &str, elapsed: Duration) {
    instruments().time_to_completion.record(
        elapsed.as_secs_f64(),
        &[KeyValue::new("provider", provider.to_owned())],
    );
}

/// Records how long the callback waited for a challenge's outcome.
pub fn record_callback_wait(elapsed: Duration, outcome: WaitOutcome) {
    instruments().callback_wait.record(
        elapsed.as_secs_f64(),
        &[KeyValue::new("outcome", outcome.as_str())],
    );
}

/// Records the messages a durable consumer has not received yet (JetStream's
/// `num_pending`), which is how far the consumer lags behind its stream.
pub fn record_consumer_pending(consumer: &str, pending: u64) {
    instruments()
        .consumer_pending
        .record(pending, &[KeyValue::new("consumer", consumer.to_owned())]);
}

/// The content type of [`render_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Renders every metric of the process in the Prometheus text format.
pub fn render_prometheus() -> Result<String, prometheus::Error> {
    let families = metrics().registry.gather();
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&families, &mut buffer)?;
    String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
}

/// Builds the response of a `/metrics` endpoint: the Prometheus text, or a 500 when
/// encoding failed.
pub fn http_response() -> http::Response<String> {
    let (status, content_type, body) = match render_prometheus() {
        Ok(text) => (http::StatusCode::OK, PROMETHEUS_CONTENT_TYPE, text),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "metrics could not be encoded\n".to_owned(),
            )
        }
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| match Metrics::build(DEFAULT_SERVICE, false) {
        Ok(metrics) => metrics,
        Err(error) => {
            // Only a registry conflict fails here, and the registry is new. Recording
            // still works, but `/metrics` shows nothing.
            eprintln!("telemetry: the Prometheus exporter could not be set up: {error}");
            Metrics::without_readers()
        }
    })
}

fn instruments() -> &'static Instruments {
    &metrics().instruments
}

impl Metrics {
    fn build(service: &str, otlp: bool) -> Result<Self, TelemetryError> {
        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|error| TelemetryError::Prometheus(error.to_string()))?;

        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus_reader);
        if otlp {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .build()?;
            builder = builder.with_reader(PeriodicReader::builder(exporter).build());
        }

        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        let instruments = Instruments::new(&provider.meter("stepup"));
        Ok(Self {
            provider,
            registry,
            instruments,
        })
    }

    fn without_readers() -> Self {
        let provider = SdkMeterProvider::builder().build();
        let instruments = Instruments::new(&provider.meter("stepup"));
        Self {
            provider,
            registry: prometheus::Registry::new(),
            instruments,
        }
    }
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        Self {
            issued: meter
                .u64_counter("stepup.challenges.issued")
                .with_description("Challenges issued, by provider")
                .build(),
            completed: meter
                .u64_counter("stepup.challenges.completed")
                .with_description("Challenges satisfied by a verified step-up, by provider")
                .build(),
            failed: meter
                .u64_counter("stepup.challenges.failed")
                .with_description("Challenges failed, by provider and reason code")
                .build(),
            expired: meter
                .u64_counter("stepup.challenges.expired")
                .with_description("Challenges that expired before completion, by provider")
                .build(),
            time_to_completion: meter
                .f64_histogram("stepup.challenge.completion.duration")
                .with_description("Time from stepup.required to the challenge's completion")
                .with_unit("s")
                .with_boundaries(COMPLETION_BUCKETS.to_vec())
                .build(),
            callback_wait: meter
                .f64_histogram("stepup.callback.wait.duration")
                .with_description("Time the callback waited for a challenge's outcome")
                .with_unit("s")
                .with_boundaries(CALLBACK_WAIT_BUCKETS.to_vec())
                .build(),
            consumer_pending: meter
                .u64_gauge("stepup.consumer.pending")
                .with_description("Messages a durable consumer has not received yet")
                .with_unit("{message}")
                .build(),
        }
    }
}

fn otlp_configured() -> bool {
    crate::any_variable_set(&[
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> String {
        render_prometheus().unwrap()
    }

    #[test]
    fn counters_carry_provider_and_reason_labels() {
        challenge_issued("okta-test");
        challenge_completed("okta-test");
        challenge_failed("okta-test", "acr_not_satisfied");
        challenge_expired("okta-test");

        let text = rendered();
        for expected in [
            "stepup_challenges_issued_total{",
            "stepup_challenges_completed_total{",
            "stepup_challenges_failed_total{",
            "stepup_challenges_expired_total{",
            "reason=\"acr_not_satisfied\"",
            "provider=\"okta-test\"",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    #[test]
    fn histograms_use_seconds_buckets() {
        record_time_to_completion("hist-test", Duration::from_millis(4_500));
        record_callback_wait(Duration::from_millis(300), WaitOutcome::Satisfied);

        let text = rendered();
        assert!(
            text.contains("stepup_challenge_completion_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("le=\"5\""), "{text}");
        assert!(
            text.contains("stepup_callback_wait_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("outcome=\"satisfied\""), "{text}");
        assert!(text.contains("le=\"0.5\""), "{text}");
    }

    #[test]
    fn consumer_pending_is_a_gauge() {
        record_consumer_pending("audit-test", 7);

        let text = rendered();
        assert!(
            text.contains("# TYPE stepup_consumer_pending gauge"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|line| {
                line.starts_with("stepup_consumer_pending")
                    && line.contains("consumer=\"audit-test\"")
            })
            .unwrap_or_default();
        assert!(line.ends_with(" 7"), "{line}");
    }

    #[test]
    fn http_response_is_prometheus_text() {
        challenge_issued("http-test");

        let response = http_response();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            PROMETHEUS_CONTENT_TYPE
        );
        assert!(response.body().contains("provider=\"http-test\""));
    }
}
