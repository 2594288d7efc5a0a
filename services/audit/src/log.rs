//! The audit log in SQL: appends that extend the hash chain, and read-only queries.
//!
//! No code path updates or deletes rows, and the migrations add triggers that make the
//! database reject such changes too.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};
use stepup_store::{Backend, Database, Migrations};
use thiserror::Error;
use tokio::sync::{Mutex, Notify};

use crate::chain::{ChainChecker, Verification};
use crate::record::{AuditRecord, Entry, GENESIS_HASH};

/// The audit service's migrations for both backends.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    postgres: &sqlx::migrate!("./migrations/postgres"),
};

/// Records read at once while verifying or exporting the chain.
pub const PAGE_SIZE: i64 = 500;

const COLUMNS: &str = "seq, event_id, event_type, event_time, recorded_at, approval_id, \
    step_id, challenge_id, approver, provider, outcome, reason_code, acr, amr, acrs, \
    auth_time, idp_subject, id_token_sha256, trace_id, event_json, prev_hash, hash";

/// A database operation on the audit log failed.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("appending event {event_id} to the audit log: {source}")]
    Append {
        event_id: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("reading the audit log: {0}")]
    Read(#[source] sqlx::Error),
    #[error("storing the audit stream's published seq: {0}")]
    MarkPublished(#[source] sqlx::Error),
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The event is now the record at `seq`.
    New { seq: i64 },
    /// The event was already the record at `seq`; nothing was added.
    Duplicate { seq: i64 },
}

/// The filters of a record query; `None` matches every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub approval_id: Option<String>,
    pub challenge_id: Option<String>,
    pub approver: Option<String>,
    pub provider: Option<String>,
    pub outcome: Option<String>,
    pub reason_code: Option<String>,
    /// Only records appended at or after this time (`recorded_at`, Unix milliseconds).
    pub from: Option<i64>,
    /// Only records appended before this time (`recorded_at`, Unix milliseconds).
    pub to: Option<i64>,
}

/// A value bound to a query placeholder.
enum Bind {
    Text(String),
    Integer(i64),
}

/// The audit log. Clones share the database pool, the append lock and the append signal.
#[derive(Debug, Clone)]
pub struct AuditLog {
    database: Database,
    append_lock: Arc<Mutex<()>>,
    appended: Arc<Notify>,
}

impl AuditLog {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            append_lock: Arc::new(Mutex::new(())),
            appended: Arc::new(Notify::new()),
        }
    }

    /// The signal raised after each committed append, which wakes the stream publisher.
    /// A signal raised while no task waits is kept for the next wait.
    pub fn appended(&self) -> Arc<Notify> {
        Arc::clone(&self.appended)
    }

    /// Appends `entry` as the next record of the chain, unless its event is already
    /// recorded. The record is committed when this returns `Ok`.
    pub async fn append(&self, entry: Entry) -> Result<Appended, LogError> {
        let event_id = entry.event_id.clone();
        let append_error = |source| LogError::Append {
            event_id: event_id.clone(),
            source,
        };

        // Appends are serialized so each one reads the chain's true end. The mutex covers
        // this process and SQLite, where one process owns the file.
        // The mutex does not reach other instances, so on a shared PostgreSQL database
        // `lock_chain` takes a table lock (tested in tests/tamper.rs). Without the lock the
        // primary key on `seq` still keeps the chain linear, because the losing append
        // fails and is retried.
        let _serialized = self.append_lock.lock().await;
        let mut transaction = self.database.pool.begin().await.map_err(append_error)?;
        self.lock_chain(&mut transaction)
            .await
            .map_err(append_error)?;

        // 1. A redelivered event adds nothing.
        if let Some(seq) = recorded_seq(&mut transaction, &entry.event_id)
            .await
            .map_err(append_error)?
        {
            return Ok(Appended::Duplicate { seq });
        }

        // 2. Link the record to the chain's last one and insert it.
        let (seq, prev_hash) = match chain_end(&mut transaction).await.map_err(append_error)? {
            Some((last_seq, last_hash)) => (last_seq + 1, last_hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let recorded_at = chrono::Utc::now().timestamp_millis();
        let record = AuditRecord::seal(entry, seq, recorded_at, prev_hash);
        insert(&mut transaction, &record)
            .await
            .map_err(append_error)?;

        transaction.commit().await.map_err(append_error)?;
        self.appended.notify_one();
        Ok(Appended::New { seq })
    }

    /// Returns the records of one approval in `seq` order.
    pub async fn records_for_approval(
        &self,
        approval_id: &str,
    ) -> Result<Vec<AuditRecord>, LogError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE approval_id = $1 ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(approval_id)
            .fetch_all(&self.database.pool)
            .await
            .map_err(LogError::Read)?;
        records_of(&rows)
    }

    /// Returns up to `limit` records after `after_seq` that match `filter`, in `seq` order.
    pub async fn query(
        &self,
        filter: &RecordFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, LogError> {
        let mut conditions = vec!["seq > $1".to_owned()];
        let mut binds = vec![Bind::Integer(after_seq)];
        let columns = [
            ("approval_id", &filter.approval_id),
            ("challenge_id", &filter.challenge_id),
            ("approver", &filter.approver),
            ("provider", &filter.provider),
            ("outcome", &filter.outcome),
            ("reason_code", &filter.reason_code),
        ];
        for (column, value) in columns {
            if let Some(value) = value {
                binds.push(Bind::Text(value.clone()));
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        if let Some(from) = filter.from {
            binds.push(Bind::Integer(from));
            conditions.push(format!("recorded_at >= ${}", binds.len()));
        }
        if let Some(to) = filter.to {
            binds.push(Bind::Integer(to));
            conditions.push(format!("recorded_at < ${}", binds.len()));
        }
        binds.push(Bind::Integer(limit));
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT ${}",
            conditions.join(" AND "),
            binds.len()
        );

        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Integer(number) => query.bind(number),
            };
        }
        let rows = query
            .fetch_all(&self.database.pool)
            .await
            .map_err(LogError::Read)?;
        records_of(&rows)
    }

    /// Returns up to `limit` records with `after_seq < seq <= to_seq`, in `seq` order.
    pub async fn page(
        &self,
        after_seq: i64,
        to_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, LogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after_seq)
            .bind(to_seq)
            .bind(limit)
            .fetch_all(&self.database.pool)
            .await
            .map_err(LogError::Read)?;
        records_of(&rows)
    }

    /// Walks the whole chain in `seq` order and reports the first record that breaks it.
    pub async fn verify(&self) -> Result<Verification, LogError> {
        self.verify_range(None, None).await
    }

    /// Verifies the records from `from_seq` (default 1) to `to_seq` (default the end):
    /// each record's hash, each seq without gaps, and each link, the first one to the
    /// stored hash of the record before the range. Also reports records missing at the
    /// end, when the audit stream has published a higher seq than the log holds.
    pub async fn verify_range(
        &self,
        from_seq: Option<i64>,
        to_seq: Option<i64>,
    ) -> Result<Verification, LogError> {
        let from_seq = from_seq.unwrap_or(1).max(1);
        let to_seq = to_seq.unwrap_or(i64::MAX);
        let Some(mut checker) = self.checker_before(from_seq).await? else {
            return Ok(Verification::Broken {
                first_broken_seq: from_seq - 1,
                reason: format!(
                    "record {} is missing, so the link of seq {from_seq} cannot be checked",
                    from_seq - 1
                ),
            });
        };

        let mut after_seq = from_seq - 1;
        loop {
            let records = self.page(after_seq, to_seq, PAGE_SIZE).await?;
            for record in &records {
                if let Err(broken) = checker.check(record) {
                    return Ok(broken);
                }
                after_seq = record.seq;
            }
            if records.len() < usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX) {
                break;
            }
        }

        // A chain cut off at its end still links, so compare with what was published.
        let published = self.published_seq().await?;
        if after_seq < published.min(to_seq) {
            return Ok(Verification::Broken {
                first_broken_seq: after_seq + 1,
                reason: format!(
                    "record {} is missing: the audit stream has published records up to seq {published}",
                    after_seq + 1
                ),
            });
        }
        Ok(checker.finish())
    }

    /// Returns a checker that expects `from_seq` next, or `None` when the record before
    /// it is missing although the log goes on past it.
    async fn checker_before(&self, from_seq: i64) -> Result<Option<ChainChecker>, LogError> {
        if from_seq <= 1 {
            return Ok(Some(ChainChecker::default()));
        }
        let before = from_seq - 1;
        let hash: Option<String> = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(before)
            .fetch_optional(&self.database.pool)
            .await
            .map_err(LogError::Read)?;
        match hash {
            Some(hash) => Ok(Some(ChainChecker::after(before, hash))),
            None if self.last_seq().await? > before => Ok(None),
            // The range starts past the end of the log: there is nothing to check.
            None => Ok(Some(ChainChecker::after(before, String::new()))),
        }
    }

    /// Returns the highest seq in the log, or 0 when it is empty.
    pub async fn last_seq(&self) -> Result<i64, LogError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
            .fetch_one(&self.database.pool)
            .await
            .map_err(LogError::Read)?;
        Ok(last.unwrap_or(0))
    }

    /// Returns the highest seq published on any audit stream, or 0.
    pub async fn published_seq(&self) -> Result<i64, LogError> {
        let published: Option<i64> =
            sqlx::query_scalar("SELECT MAX(last_seq) FROM audit_published")
                .fetch_one(&self.database.pool)
                .await
                .map_err(LogError::Read)?;
        Ok(published.unwrap_or(0))
    }

    /// Returns the highest seq published on `stream`, or 0.
    pub async fn published_seq_of(&self, stream: &str) -> Result<i64, LogError> {
        let published: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM audit_published WHERE stream = $1")
                .bind(stream)
                .fetch_optional(&self.database.pool)
                .await
                .map_err(LogError::Read)?;
        Ok(published.unwrap_or(0))
    }

    /// Records that every seq up to `seq` is on `stream`. The mark never moves back.
    pub async fn mark_published(&self, stream: &str, seq: i64) -> Result<(), LogError> {
        // SQLite in WAL mode fails an append at once ("database is locked") when another
        // write commits between the append's first read and its insert, so every writer of
        // this database takes the append lock.
        let _serialized = self.append_lock.lock().await;
        sqlx::query(
            "INSERT INTO audit_published (stream, last_seq) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq \
             WHERE excluded.last_seq > audit_published.last_seq",
        )
        .bind(stream)
        .bind(seq)
        .execute(&self.database.pool)
        .await
        .map_err(LogError::MarkPublished)?;
        Ok(())
    }

    /// Runs a trivial query, to check that the database is reachable.
    pub async fn ping(&self) -> Result<(), LogError> {
        sqlx::query("SELECT 1")
            .execute(&self.database.pool)
            .await
            .map_err(LogError::Read)?;
        Ok(())
    }

    /// Blocks other writers of the table until the transaction ends, on PostgreSQL.
    /// `EXCLUSIVE` still lets readers query while an append runs.
    async fn lock_chain(&self, transaction: &mut Transaction<'_, Any>) -> Result<(), sqlx::Error> {
        if self.database.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE")
                .execute(&mut **transaction)
                .await?;
        }
        Ok(())
    }
}

async fn recorded_seq(
    transaction: &mut Transaction<'_, Any>,
    event_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM audit_log WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut **transaction)
        .await
}

async fn chain_end(
    transaction: &mut Transaction<'_, Any>,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **transaction)
        .await
}

async fn insert(
    transaction: &mut Transaction<'_, Any>,
    record: &AuditRecord,
) -> Result<(), sqlx::Error> {
    let entry = &record.entry;
    let sql = format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
          $19, $20, $21, $22)"
    );
    sqlx::query(&sql)
        .bind(record.seq)
        .bind(&entry.event_id)
        .bind(&entry.event_type)
        .bind(entry.event_time)
        .bind(record.recorded_at)
        .bind(&entry.approval_id)
        .bind(&entry.step_id)
        .bind(&entry.challenge_id)
        .bind(&entry.approver)
        .bind(&entry.provider)
        .bind(&entry.outcome)
        .bind(&entry.reason_code)
        .bind(&entry.acr)
        .bind(&entry.amr)
        .bind(&entry.acrs)
        .bind(entry.auth_time)
        .bind(&entry.idp_subject)
        .bind(&entry.id_token_sha256)
        .bind(&entry.trace_id)
        .bind(&entry.event_json)
        .bind(&record.prev_hash)
        .bind(&record.hash)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

fn records_of(rows: &[AnyRow]) -> Result<Vec<AuditRecord>, LogError> {
    rows.iter()
        .map(record_of)
        .collect::<Result<_, _>>()
        .map_err(LogError::Read)
}

fn record_of(row: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        recorded_at: row.try_get("recorded_at")?,
        entry: Entry {
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            event_time: row.try_get("event_time")?,
            approval_id: row.try_get("approval_id")?,
            step_id: row.try_get("step_id")?,
            challenge_id: row.try_get("challenge_id")?,
            approver: row.try_get("approver")?,
            provider: row.try_get("provider")?,
            outcome: row.try_get("outcome")?,
            reason_code: row.try_get("reason_code")?,
            acr: row.try_get("acr")?,
            amr: row.try_get("amr")?,
            acrs: row.try_get("acrs")?,
            auth_time: row.try_get("auth_time")?,
            idp_subject: row.try_get("idp_subject")?,
            id_token_sha256: row.try_get("id_token_sha256")?,
            trace_id: row.try_get("trace_id")?,
            event_json: row.try_get("event_json")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
