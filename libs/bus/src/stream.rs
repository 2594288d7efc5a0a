//! The `STEPUP` JetStream stream, created or updated at start.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use serde::Deserialize;
use stepup_events::subject::STREAM_SUBJECTS;
use thiserror::Error;

use crate::Bus;

/// Settings of the event stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    pub name: String,
    /// Copies kept in a NATS cluster (1 for a single server).
    pub replicas: usize,
    /// How long events are kept, in seconds.
    pub max_age_secs: u64,
    /// The window in which a repeated `Nats-Msg-Id` is dropped, in seconds.
    pub duplicate_window_secs: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: "STEPUP".into(),
            replicas: 1,
            max_age_secs: 30 * 24 * 3600,
            duplicate_window_secs: 2 * 60,
        }
    }
}

/// The stream could not be created or updated.
#[derive(Debug, Error)]
#[error("creating or updating JetStream stream {name}: {source}")]
pub struct StreamError {
    name: String,
    #[source]
    source: async_nats::jetstream::context::CreateStreamError,
}

/// Creates the stream over every event subject, or updates it to `settings`.
pub async fn ensure_stream(bus: &Bus, settings: &StreamSettings) -> Result<(), StreamError> {
    let config = Config {
        name: settings.name.clone(),
        subjects: STREAM_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        num_replicas: settings.replicas,
        max_age: Duration::from_secs(settings.max_age_secs),
        duplicate_window: Duration::from_secs(settings.duplicate_window_secs),
        ..Default::default()
    };
    bus.jetstream()
        .create_or_update_stream(config)
        .await
        .map_err(|source| StreamError {
            name: settings.name.clone(),
            source,
        })?;
    tracing::info!(stream = %settings.name, "event stream ready");
    Ok(())
}
