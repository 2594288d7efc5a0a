//! The transactional outbox: events are written to the `outbox` table in the same database
//! transaction as the state change they report, and a relay publishes them afterwards.
//!
//! A process that dies between the commit and the publish leaves the row unpublished, and
//! the relay publishes it when the service starts again. Every row is published with
//! `Nats-Msg-Id` set to the event id, so a row published twice (the relay died after the
//! publish but before marking the row) is dropped by the stream's duplicate window.
//!
//! Several instances on one PostgreSQL database take turns: a relay publishes only while it
//! holds a transaction-scoped advisory lock, so rows go out in `seq` order and two relays
//! never publish the same batch. On SQLite one process owns the file and one relay runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::{Any, AnyPool, Transaction};
use stepup_bus::{Bus, PublishError, StoredEvent};
use stepup_events::EventData;
use stepup_events::envelope::{EncodeError, Envelope};
use stepup_store::Backend;
use thiserror::Error;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The CloudEvents `source` of the challenge service's events.
pub const SOURCE: &str = "/stepup/challenge";

/// Rows published per relay pass.
const BATCH: i64 = 100;

/// Interval at which the relay looks for rows without being woken: rows another instance
/// wrote, or rows whose publish failed.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Delay before the relay tries again when another instance has the relay lock.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Maximum wait between relay attempts after publishing failed.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long published rows are kept, for inspection, before the relay deletes them.
const KEEP_PUBLISHED_MILLIS: i64 = 60 * 60 * 1000;

/// The advisory lock key that PostgreSQL relays share ("stepup_o" in ASCII).
const RELAY_LOCK_KEY: i64 = 0x7374_6570_7570_5f6f;

/// An event could not be prepared for the outbox.
#[derive(Debug, Error)]
pub enum OutboxError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("serializing event {id}: {source}")]
    Serialize {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One relay pass failed.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error("reading or marking outbox rows: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// An event ready to be written to the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub event_id: String,
    pub subject: String,
    pub payload: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl OutboxEvent {
    /// Builds the event for `data` with id `id`, keeping the current span's trace context
    /// so the published event continues the approval's trace.
    pub fn new<T: EventData>(id: String, data: &T) -> Result<Self, OutboxError> {
        let envelope = Envelope::with_id(id, SOURCE, data)?;
        let payload = envelope
            .to_json()
            .map_err(|source| OutboxError::Serialize {
                id: envelope.id().to_owned(),
                source,
            })?;
        let mut trace = stepup_telemetry::current_trace_headers();
        Ok(Self {
            event_id: envelope.id().to_owned(),
            subject: envelope.event_type().to_owned(),
            payload: String::from_utf8_lossy(&payload).into_owned(),
            traceparent: trace.remove("traceparent"),
            tracestate: trace.remove("tracestate"),
        })
    }
}

/// Writes `event` in `transaction`. A row with the same event id is left as it is, so
/// repeating a state change's events adds nothing.
pub async fn insert(
    transaction: &mut Transaction<'_, Any>,
    event: &OutboxEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, payload, traceparent, tracestate, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.event_id)
    .bind(&event.subject)
    .bind(&event.payload)
    .bind(&event.traceparent)
    .bind(&event.tracestate)
    .bind(Utc::now().timestamp_millis())
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct PendingRow {
    seq: i64,
    event_id: String,
    subject: String,
    payload: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// Result of one relay pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// This many rows were published; a full batch means more may be waiting.
    Published(usize),
    /// Another instance is publishing.
    Busy,
}

/// The outbox table and the relay that empties it.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: AnyPool,
    backend: Backend,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Self {
            pool,
            backend,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Tells the relay that rows were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Returns the number of rows not yet published.
    pub async fn pending(&self) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(count)
    }

    /// Publishes rows until none is left, another instance holds the relay lock, or a
    /// publish fails. Returns how many rows this call published, or [`Pass::Busy`] when it
    /// stopped because of the lock.
    pub async fn drain(&self, bus: &Bus) -> Result<Pass, RelayError> {
        let mut total = 0;
        loop {
            match self.publish_batch(bus).await? {
                Pass::Published(count) => {
                    total += count;
                    if i64::try_from(count).unwrap_or(BATCH) < BATCH {
                        return Ok(Pass::Published(total));
                    }
                }
                Pass::Busy => return Ok(Pass::Busy),
            }
        }
    }

    /// Publishes the oldest unpublished rows, up to one batch.
    pub async fn publish_batch(&self, bus: &Bus) -> Result<Pass, RelayError> {
        match self.backend {
            Backend::Postgres => self.publish_batch_locked(bus).await,
            Backend::Sqlite => self.publish_batch_unlocked(bus).await,
        }
    }

    /// PostgreSQL: one transaction holds the advisory lock while its batch is published and
    /// marked, so relays of other instances skip instead of publishing the same rows.
    async fn publish_batch_locked(&self, bus: &Bus) -> Result<Pass, RelayError> {
        let mut transaction = self.pool.begin().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *transaction)
            .await?;
        if !locked {
            transaction.rollback().await?;
            return Ok(Pass::Busy);
        }

        let rows = fetch_pending(&mut transaction).await?;
        let mut published = 0;
        let mut failure = None;
        for row in &rows {
            if let Err(error) = bus.publish_stored(&stored(row)).await {
                failure = Some(error);
                break;
            }
            mark_published(&mut transaction, row.seq).await?;
            published += 1;
        }

        // Rows published before a failure stay marked.
        transaction.commit().await?;
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(Pass::Published(published)),
        }
    }

    /// SQLite: no lock is needed because one relay runs per database file. Each row is
    /// marked as soon as JetStream acknowledged it.
    async fn publish_batch_unlocked(&self, bus: &Bus) -> Result<Pass, RelayError> {
        let mut connection = self.pool.acquire().await?;
        let rows = fetch_pending(&mut connection).await?;
        drop(connection);

        for row in &rows {
            bus.publish_stored(&stored(row)).await?;
            let mut connection = self.pool.acquire().await?;
            mark_published(&mut connection, row.seq).await?;
        }
        Ok(Pass::Published(rows.len()))
    }

    /// Deletes published rows older than an hour; the stream keeps the events themselves.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let cutoff = Utc::now().timestamp_millis() - KEEP_PUBLISHED_MILLIS;
        let result =
            sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }

    /// Runs the relay until `shutdown` is cancelled: at start (publishing what a previous
    /// process left), whenever [`wake`](Self::wake) is called, and every second. After
    /// failures it waits with exponential backoff. It makes one last pass on shutdown, so
    /// events committed just before are not left for the next start.
    pub async fn run(self, bus: Bus, shutdown: CancellationToken) {
        let mut backoff = POLL_INTERVAL;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            let wait = match self.drain(&bus).await {
                Ok(Pass::Busy) => BUSY_RETRY,
                Ok(Pass::Published(_)) => {
                    backoff = POLL_INTERVAL;
                    POLL_INTERVAL
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "publishing outbox events failed; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };

            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = tokio::time::Instant::now();
                if let Err(error) = self.prune().await {
                    tracing::warn!(%error, "deleting old published outbox rows failed");
                }
            }

            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }

        if let Err(error) = self.drain(&bus).await {
            tracing::warn!(%error, "final outbox pass failed; the next start publishes the rest");
        }
    }
}

async fn fetch_pending(executor: &mut sqlx::AnyConnection) -> Result<Vec<PendingRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, event_id, subject, payload, traceparent, tracestate FROM outbox \
         WHERE published_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(executor)
    .await
}

async fn mark_published(executor: &mut sqlx::AnyConnection, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET published_at = $1 WHERE seq = $2")
        .bind(Utc::now().timestamp_millis())
        .bind(seq)
        .execute(executor)
        .await?;
    Ok(())
}

fn stored(row: &PendingRow) -> StoredEvent<'_> {
    StoredEvent {
        id: &row.event_id,
        subject: &row.subject,
        payload: row.payload.as_bytes(),
        traceparent: row.traceparent.as_deref(),
        tracestate: row.tracestate.as_deref(),
    }
}
