//! The audit stream: every committed record, published as a `stepup.audit.recorded`
//! CloudEvent on its own JetStream stream, in `seq` order and each record once.
//!
//! Records are published after their row commits, by one task that walks the log from
//! the highest seq already on the stream. That seq is the larger of the stream's last
//! record (read at start) and the `audit_published` mark (updated after each
//! acknowledged publish), so a crash between commit and publish loses nothing, and a
//! restart publishes nothing twice. The event id, which is also the `Nats-Msg-Id`, is
//! derived from the record's seq and hash, so JetStream's duplicate window drops a
//! repeat from a second instance.

use std::time::Duration;

use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType,
};
use stepup_bus::{Bus, PublishError};
use stepup_events::data::AuditRecorded;
use stepup_events::envelope::derived_event_id;
use stepup_events::subject::{AUDIT_RECORDED, AUDIT_STREAM_SUBJECTS};
use stepup_events::{DecodeError, Envelope};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::AuditStreamSettings;
use crate::export::to_recorded;
use crate::log::{AuditLog, LogError, PAGE_SIZE};
use crate::record::AuditRecord;

/// The audit stream could not be set up or read, or a record could not be published.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error(
        "creating or updating the audit stream {name}: {source}; \
         check that no other stream captures stepup.audit.>"
    )]
    Create {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    #[error("opening the audit stream {name}: {source}")]
    Open {
        name: String,
        #[source]
        source: async_nats::jetstream::context::GetStreamError,
    },
    #[error("reading the last record on the audit stream {name}: {source}")]
    ReadLast {
        name: String,
        #[source]
        source: async_nats::jetstream::stream::LastRawMessageError,
    },
    #[error(
        "the last message on the audit stream {name} is not a stepup.audit.recorded event \
         ({source}); only the audit service may publish on stepup.audit.>"
    )]
    ForeignMessage {
        name: String,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Creates the audit stream, or updates it to `settings`.
pub async fn ensure_audit_stream(
    bus: &Bus,
    settings: &AuditStreamSettings,
) -> Result<(), StreamError> {
    let config = StreamConfig {
        name: settings.name.clone(),
        description: Some("stepup audit records (stepup.audit.recorded)".into()),
        subjects: AUDIT_STREAM_SUBJECTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        num_replicas: settings.replicas,
        max_age: Duration::from_secs(settings.max_age_secs),
        duplicate_window: Duration::from_secs(settings.duplicate_window_secs),
        ..StreamConfig::default()
    };
    bus.jetstream()
        .create_or_update_stream(config)
        .await
        .map_err(|source| StreamError::Create {
            name: settings.name.clone(),
            source,
        })?;
    tracing::info!(stream = %settings.name, "audit stream ready");
    Ok(())
}

/// Returns the CloudEvents id (and `Nats-Msg-Id`) of a record's event: the same record
/// always gets the same id.
pub fn event_id_of(record: &AuditRecord) -> String {
    derived_event_id(&[AUDIT_RECORDED, &record.seq.to_string(), &record.hash])
}

/// Publishes committed records on the audit stream.
#[derive(Debug)]
pub struct Publisher {
    bus: Bus,
    log: AuditLog,
    settings: AuditStreamSettings,
    /// The highest seq known to be on the stream; `None` until the stream was read.
    published: Option<i64>,
}

impl Publisher {
    pub fn new(bus: Bus, log: AuditLog, settings: AuditStreamSettings) -> Self {
        Self {
            bus,
            log,
            settings,
            published: None,
        }
    }

    /// Publishes what is pending now, then again after every append and every
    /// `republish_interval_secs`, until `stop` is cancelled. A failed pass is logged and
    /// retried on the next wake-up, because the records stay in the database.
    pub async fn run(mut self, stop: CancellationToken) {
        let appended = self.log.appended();
        let interval = Duration::from_secs(self.settings.republish_interval_secs.max(1));

        loop {
            if let Err(error) = self.publish_pending().await {
                tracing::warn!(%error, stream = %self.settings.name, "publishing audit records failed; retrying later");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = appended.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Publishes every committed record above the published seq, in `seq` order, and
    /// returns how many it published.
    pub async fn publish_pending(&mut self) -> Result<u64, StreamError> {
        let mut published = match self.published {
            Some(seq) => seq,
            None => self.read_published().await?,
        };
        self.published = Some(published);

        let mut count = 0;
        loop {
            let records = self.log.page(published, i64::MAX, PAGE_SIZE).await?;
            for record in &records {
                self.publish(record).await?;
                self.log
                    .mark_published(&self.settings.name, record.seq)
                    .await?;
                published = record.seq;
                self.published = Some(published);
                count += 1;
            }
            if records.len() < usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX) {
                return Ok(count);
            }
        }
    }

    /// Reads the highest published seq from the stream and from the database mark. The
    /// stream covers a crash after the publish but before the mark; the mark covers a
    /// stream whose records have aged out.
    async fn read_published(&self) -> Result<i64, StreamError> {
        let on_stream = self.last_seq_on_stream().await?;
        let marked = self.log.published_seq_of(&self.settings.name).await?;
        let published = on_stream.max(marked);
        tracing::info!(
            stream = %self.settings.name,
            published,
            "audit stream publisher resumes after this seq"
        );
        Ok(published)
    }

    async fn last_seq_on_stream(&self) -> Result<i64, StreamError> {
        let name = &self.settings.name;
        let stream = self
            .bus
            .jetstream()
            .get_stream(name)
            .await
            .map_err(|source| StreamError::Open {
                name: name.clone(),
                source,
            })?;
        let message = match stream.get_last_raw_message_by_subject(AUDIT_RECORDED).await {
            Ok(message) => message,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(0),
            Err(source) => {
                return Err(StreamError::ReadLast {
                    name: name.clone(),
                    source,
                });
            }
        };

        let foreign = |source| StreamError::ForeignMessage {
            name: name.clone(),
            source,
        };
        let envelope = Envelope::from_json(&message.payload).map_err(foreign)?;
        let recorded: AuditRecorded = envelope.data().map_err(foreign)?;
        Ok(recorded.seq)
    }

    async fn publish(&self, record: &AuditRecord) -> Result<(), StreamError> {
        let recorded = to_recorded(record);
        self.bus
            .publish_with_id(event_id_of(record), &recorded)
            .await?;
        tracing::debug!(seq = record.seq, stream = %self.settings.name, "audit record published");
        Ok(())
    }
}
