//! The audit log in SQL: appends that extend the hash chain, and read-only queries.
//!
//! No code path updates or deletes rows, and the migrations add triggers that make the
//! database reject such changes too.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};
use stepup_store::{Backend, Database, Migrations};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::chain::{ChainChecker, Verification};
use crate::record::{AuditRecord, Entry, GENESIS_HASH};

/// The audit service's migrations for both backends.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    postgres: &sqlx::migrate!("./migrations/postgres"),
};

/// Records read at once while verifying the chain.
const VERIFY_PAGE_SIZE: i64 = 500;

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
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The event is now the record at `seq`.
    New { seq: i64 },
    /// The event was already the record at `seq`; nothing was added.
    Duplicate { seq: i64 },
}

/// The audit log. Clones share the database pool and the append lock.
#[derive(Debug, Clone)]
pub struct AuditLog {
    database: Database,
    append_lock: Arc<Mutex<()>>,
}

impl AuditLog {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            append_lock: Arc::new(Mutex::new(())),
        }
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
        // NOTE: the mutex does not reach other instances, so on a shared PostgreSQL
        // database `lock_chain` takes a table lock. Its test runs only when
        // STEPUP_TEST_POSTGRES_URL is set. Without the lock the primary key on `seq` still
        // keeps the chain linear, because the losing append fails and is retried.
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
        rows.iter()
            .map(record_of)
            .collect::<Result<_, _>>()
            .map_err(LogError::Read)
    }

    /// Walks the whole chain in `seq` order and reports the first record that breaks it.
    pub async fn verify(&self) -> Result<Verification, LogError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let mut checker = ChainChecker::default();
        let mut after_seq = 0_i64;

        loop {
            let rows = sqlx::query(&sql)
                .bind(after_seq)
                .bind(VERIFY_PAGE_SIZE)
                .fetch_all(&self.database.pool)
                .await
                .map_err(LogError::Read)?;
            for row in &rows {
                let record = record_of(row).map_err(LogError::Read)?;
                if let Err(broken) = checker.check(&record) {
                    return Ok(broken);
                }
                after_seq = record.seq;
            }
            if rows.len() < usize::try_from(VERIFY_PAGE_SIZE).unwrap_or(usize::MAX) {
                return Ok(checker.finish());
            }
        }
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
