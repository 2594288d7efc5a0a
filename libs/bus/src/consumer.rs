//! Durable pull consumers with explicit acks.
//!
//! A message is acknowledged only after its handler reports the effect durable. A message
//! that cannot be processed (not a CloudEvent, or rejected by the handler, or out of
//! deliveries) is republished on the service's dead-letter subject and then acknowledged,
//! so the consumer carries on and nothing is lost.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::Message;
use base64::Engine as _;
use futures::StreamExt;
use serde::Deserialize;
use stepup_events::data::DeadLetter;
use stepup_events::{Envelope, subject};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Bus;
use crate::headers::trace_headers_of;

/// How often a consumer's backlog is read for the `stepup.consumer.pending` gauge.
const PENDING_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Delivery settings of one durable consumer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Seconds JetStream waits for an ack before it redelivers.
    pub ack_wait_secs: u64,
    /// Deliveries before a message goes to the dead-letter subject.
    pub max_deliver: i64,
    /// Delay before each redelivery after a failure, in milliseconds: the first entry
    /// after the first failed delivery, and so on; the last entry repeats.
    pub backoff_ms: Vec<u64>,
    /// Messages processed at once by one instance.
    pub max_in_flight: usize,
    /// How long messages in flight may still take once shutdown starts, in seconds. A
    /// message not finished by then is nak'd, so another instance takes it at once.
    pub shutdown_grace_secs: u64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            ack_wait_secs: 30,
            max_deliver: 5,
            backoff_ms: vec![500, 2_000, 10_000, 30_000],
            max_in_flight: 16,
            shutdown_grace_secs: 10,
        }
    }
}

/// A message delivered to a handler.
#[derive(Debug)]
pub struct Delivery {
    pub envelope: Envelope,
    /// The subject the message was published on.
    pub subject: String,
    /// 1 on the first delivery.
    pub delivered: i64,
}

/// What a handler did with a delivery.
#[derive(Debug)]
pub enum Outcome {
    /// The effect is durable: ack the message.
    Done,
    /// A transient failure: redeliver later, or dead-letter once deliveries run out.
    Retry { error: String },
    /// The message can never be processed: dead-letter it now.
    Poison { error: String },
}

/// The consumer could not be set up or stopped reading.
#[derive(Debug, Error)]
pub enum ConsumerError {
    #[error("stream {stream} not found: {source}")]
    Stream {
        stream: String,
        #[source]
        source: async_nats::jetstream::context::GetStreamError,
    },
    #[error("creating durable consumer {durable}: {source}")]
    Create {
        durable: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error("reading from durable consumer {durable}: {source}")]
    Read {
        durable: String,
        #[source]
        source: async_nats::jetstream::consumer::StreamError,
    },
}

/// Identifies one service's consumer: its durable name and what it reads.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The consuming service; names the dead-letter subject.
    pub service: String,
    pub durable: String,
    pub filter_subjects: Vec<String>,
}

/// Reads `spec`'s durable consumer on `stream` until `shutdown` is cancelled, handing each
/// event to `handler`. Messages already being handled when `shutdown` fires are finished.
pub async fn run<H, Fut>(
    bus: &Bus,
    stream: &str,
    spec: &ConsumerSpec,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), ConsumerError>
where
    H: Fn(Delivery) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let stream_handle =
        bus.jetstream()
            .get_stream(stream)
            .await
            .map_err(|source| ConsumerError::Stream {
                stream: stream.to_owned(),
                source,
            })?;
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subjects: spec.filter_subjects.clone(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: Duration::from_secs(settings.ack_wait_secs),
        max_deliver: settings.max_deliver,
        // No JetStream `backoff`: when set, its first value replaces `ack_wait` for the first
        // delivery, so a handler slower than that (a slow token endpoint) would see its
        // message redelivered while still working on it. Failed handlers get their delay
        // from `backoff_ms` through the nak instead.
        max_ack_pending: i64::try_from(settings.max_in_flight.max(1) * 4).unwrap_or(1_000),
        ..Default::default()
    };
    let consumer = stream_handle
        .create_consumer(config)
        .await
        .map_err(|source| ConsumerError::Create {
            durable: spec.durable.clone(),
            source,
        })?;
    let messages = consumer
        .messages()
        .await
        .map_err(|source| ConsumerError::Read {
            durable: spec.durable.clone(),
            source: async_nats::jetstream::consumer::StreamError::with_source(
                async_nats::jetstream::consumer::StreamErrorKind::Other,
                source,
            ),
        })?;
    tracing::info!(consumer = %spec.durable, subjects = ?spec.filter_subjects, "consumer started");
    let sampler = tokio::spawn(sample_pending(consumer, spec.durable.clone()));

    // Shutdown stops fetching at once; what is in flight gets `shutdown_grace_secs`.
    // NOTE: messages the client fetched but never handed out are not nak'd: JetStream
    // redelivers them after `ack_wait_secs`.
    let shutdown_started = shutdown.clone();
    messages
        .take_until(shutdown.cancelled_owned())
        .for_each_concurrent(settings.max_in_flight.max(1), |message| async {
            match message {
                Ok(message) => {
                    process(bus, spec, settings, &handler, message, &shutdown_started).await
                }
                Err(error) => {
                    tracing::warn!(consumer = %spec.durable, %error, "pull consumer read failed; continuing");
                }
            }
        })
        .await;

    sampler.abort();
    tracing::info!(consumer = %spec.durable, "consumer stopped");
    Ok(())
}

/// Records the consumer's `num_pending` at start and then every
/// [`PENDING_SAMPLE_INTERVAL`], until the task is aborted.
async fn sample_pending(
    mut consumer: async_nats::jetstream::consumer::PullConsumer,
    durable: String,
) {
    let mut ticks = tokio::time::interval(PENDING_SAMPLE_INTERVAL);
    loop {
        ticks.tick().await;
        match consumer.info().await {
            Ok(info) => {
                stepup_telemetry::metrics::record_consumer_pending(&durable, info.num_pending)
            }
            Err(error) => {
                tracing::debug!(consumer = %durable, %error, "reading the consumer's backlog failed");
            }
        }
    }
}

async fn process<H, Fut>(
    bus: &Bus,
    spec: &ConsumerSpec,
    settings: &ConsumerSettings,
    handler: &H,
    message: Message,
    shutdown: &CancellationToken,
) where
    H: Fn(Delivery) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let subject = message.subject.to_string();

    // 1. Anything that is not a CloudEvent can never be processed.
    let envelope = match Envelope::from_json(&message.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            dead_letter(bus, spec, &message, None, error.to_string(), delivered).await;
            return;
        }
    };

    // 2. Handle it inside a span that continues the producer's trace.
    let span = tracing::info_span!(
        "consume",
        service = %spec.service,
        consumer = %spec.durable,
        event.id = %envelope.id(),
        event.r#type = %envelope.event_type(),
        delivered,
    );
    stepup_telemetry::set_parent_from_headers(&span, &trace_headers_of(message.headers.as_ref()));
    let event_id = envelope.id().to_owned();
    let handled = handler(Delivery {
        envelope,
        subject,
        delivered,
    })
    .instrument(span.clone());
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let outcome = tokio::select! {
        outcome = handled => outcome,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            // Dropping the handler rolls back whatever it had not committed.
            tracing::warn!(consumer = %spec.durable, "handling outlasted the shutdown grace period; the event goes back to the stream");
            ack(&message, AckKind::Nak(None), spec).await;
            return;
        }
    };

    // 3. Settle the message.
    let _entered = span.enter();
    match outcome {
        Outcome::Done => ack(&message, AckKind::Ack, spec).await,
        Outcome::Poison { error } => {
            dead_letter(bus, spec, &message, Some(event_id), error, delivered).await;
        }
        Outcome::Retry { error } if delivered >= settings.max_deliver => {
            let error = format!("gave up after {delivered} deliveries: {error}");
            dead_letter(bus, spec, &message, Some(event_id), error, delivered).await;
        }
        Outcome::Retry { error } => {
            let delay = retry_delay(settings, delivered);
            tracing::warn!(consumer = %spec.durable, %error, delivered, retry_in_ms = delay.as_millis(), "handling failed; the event will be redelivered");
            ack(&message, AckKind::Nak(Some(delay)), spec).await;
        }
    }
}

/// Returns how long JetStream waits before delivering a failed message again: the
/// `backoff_ms` entry for this delivery, the last entry once they run out, and one second
/// when the list is empty. A nak without a delay would be redelivered at once, so a
/// transient failure (a database restarting) would use up every delivery in milliseconds.
pub fn retry_delay(settings: &ConsumerSettings, delivered: i64) -> Duration {
    let index = usize::try_from(delivered.max(1) - 1).unwrap_or(usize::MAX);
    let millis = settings
        .backoff_ms
        .get(index)
        .or(settings.backoff_ms.last())
        .copied()
        .unwrap_or(1_000);
    Duration::from_millis(millis)
}

/// Republishes `message` on the service's dead-letter subject, then acks it. When the
/// dead-letter publish fails the message is left unacknowledged, so JetStream redelivers it
/// rather than lose it.
async fn dead_letter(
    bus: &Bus,
    spec: &ConsumerSpec,
    message: &Message,
    original_event_id: Option<String>,
    error: String,
    delivered: i64,
) {
    // A dead letter that cannot be processed is not wrapped again: it is already kept in the
    // stream, and re-wrapping would grow it on every round.
    if message.subject.starts_with(subject::DEADLETTER_PREFIX) {
        tracing::error!(consumer = %spec.durable, subject = %message.subject, %error, "a dead letter could not be processed; it stays in the stream");
        ack(message, AckKind::Term, spec).await;
        return;
    }

    let letter = DeadLetter {
        service: spec.service.clone(),
        original_subject: message.subject.to_string(),
        original_payload_base64: base64::engine::general_purpose::STANDARD.encode(&message.payload),
        original_event_id: original_event_id.clone(),
        error: error.clone(),
        delivered,
    };
    let published = match subject::deadletter(&spec.service) {
        Ok(target) => bus.publish_on(&target, &letter).await.map(|_| target),
        Err(invalid) => {
            tracing::error!(consumer = %spec.durable, %invalid, "service name cannot form a dead-letter subject");
            return;
        }
    };
    match published {
        Ok(target) => {
            tracing::warn!(
                consumer = %spec.durable,
                subject = %message.subject,
                event.id = original_event_id.as_deref().unwrap_or("unknown"),
                dead_letter = %target,
                %error,
                "event dead-lettered"
            );
            ack(message, AckKind::Term, spec).await;
        }
        Err(publish_error) => {
            tracing::error!(consumer = %spec.durable, error = %publish_error, "dead-letter publish failed; leaving the event for redelivery");
        }
    }
}

async fn ack(message: &Message, kind: AckKind, spec: &ConsumerSpec) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(consumer = %spec.durable, %error, "acknowledging an event failed; it will be redelivered");
    }
}

/// Returns the trace-context headers of a message, for handlers that publish from a task
/// outside the consume span.
pub fn message_trace_headers(message: &Message) -> HashMap<String, String> {
    trace_headers_of(message.headers.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_follows_backoff_then_repeats_last() {
        let settings = ConsumerSettings {
            backoff_ms: vec![100, 400],
            ..ConsumerSettings::default()
        };
        assert_eq!(retry_delay(&settings, 1), Duration::from_millis(100));
        assert_eq!(retry_delay(&settings, 2), Duration::from_millis(400));
        assert_eq!(retry_delay(&settings, 7), Duration::from_millis(400));
    }

    #[test]
    fn retry_delay_without_backoff_is_one_second() {
        let settings = ConsumerSettings {
            backoff_ms: Vec::new(),
            ..ConsumerSettings::default()
        };
        assert_eq!(retry_delay(&settings, 1), Duration::from_secs(1));
    }
}
