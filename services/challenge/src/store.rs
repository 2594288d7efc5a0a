//! The challenge table: creation, lookups and conditional status changes.
//!
//! Every status change is a conditional `UPDATE … WHERE status IN (…)`, so when two
//! events or two instances race, exactly one of them moves the challenge and the other
//! sees zero rows affected. That is what makes completion happen at most once.
//!
//! A change that other systems must hear about writes its event to the outbox in the same
//! transaction (see [`crate::outbox`]), so the event is published if and only if the change
//! committed.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Any, AnyPool, Transaction};
use stepup_events::ReasonCode;
use stepup_events::data::{Approver, Evidence, Requirement, Resource};
use stepup_events::rpc::ChallengeStatus;
use thiserror::Error;

use crate::outbox::{self, OutboxEvent};

/// A database operation on challenges failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("challenge database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("challenge {id} has a corrupt {column} column: {detail}")]
    Corrupt {
        id: String,
        column: &'static str,
        detail: String,
    },
}

/// A new challenge, before it is stored.
#[derive(Debug)]
pub struct NewChallenge {
    pub id: String,
    pub request_event_id: String,
    pub approval_id: String,
    pub policy_id: String,
    pub step_id: String,
    pub provider: String,
    pub requirement: Requirement,
    pub approver: Approver,
    pub requester_id: Option<String>,
    pub resource: Option<Resource>,
    pub return_url: Option<String>,
    pub state: String,
    pub state_sha256: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
struct ChallengeRow {
    id: String,
    approval_id: String,
    step_id: String,
    provider: String,
    requirement_json: String,
    approver_json: String,
    requester_id: Option<String>,
    resource_json: Option<String>,
    return_url: Option<String>,
    status: String,
    state: String,
    nonce: String,
    pkce_verifier: Option<String>,
    authorization_code: Option<String>,
    browser_binding_sha256: Option<String>,
    reason_code: Option<String>,
    message: Option<String>,
    evidence_json: Option<String>,
    traceparent: Option<String>,
    created_at: i64,
    expires_at: i64,
}

/// A stored challenge. Holds secrets: its `Debug` omits them.
pub struct Challenge {
    pub id: String,
    pub approval_id: String,
    pub step_id: String,
    pub provider: String,
    pub requirement: Requirement,
    pub approver: Approver,
    pub requester_id: Option<String>,
    pub resource: Option<Resource>,
    pub return_url: Option<String>,
    pub status: ChallengeStatus,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: Option<String>,
    pub authorization_code: Option<String>,
    pub browser_binding_sha256: Option<String>,
    pub reason_code: Option<ReasonCode>,
    pub message: Option<String>,
    pub evidence: Option<Evidence>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("id", &self.id)
            .field("approval_id", &self.approval_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, approval_id, step_id, provider, requirement_json, approver_json, \
    requester_id, resource_json, return_url, status, state, nonce, pkce_verifier, \
    authorization_code, browser_binding_sha256, reason_code, message, evidence_json, traceparent, \
    created_at, expires_at";

/// Access to the challenge table.
#[derive(Debug, Clone)]
pub struct ChallengeStore {
    pool: AnyPool,
}

impl ChallengeStore {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Stores `challenge` and its `stepup.required` event unless a challenge was already
    /// created for the same approval event. Returns false for such a duplicate, which
    /// writes nothing.
    pub async fn insert(
        &self,
        challenge: &NewChallenge,
        required: &OutboxEvent,
    ) -> Result<bool, StoreError> {
        let now = millis(Utc::now());
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "INSERT INTO challenges (id, request_event_id, approval_id, policy_id, step_id, \
             provider, requirement_json, approver_json, requester_id, resource_json, return_url, \
             status, state_sha256, state, nonce, pkce_verifier, traceparent, created_at, expires_at, \
             updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
             ON CONFLICT (request_event_id) DO NOTHING",
        )
        .bind(&challenge.id)
        .bind(&challenge.request_event_id)
        .bind(&challenge.approval_id)
        .bind(&challenge.policy_id)
        .bind(&challenge.step_id)
        .bind(&challenge.provider)
        .bind(to_json(&challenge.requirement))
        .bind(to_json(&challenge.approver))
        .bind(&challenge.requester_id)
        .bind(challenge.resource.as_ref().map(to_json))
        .bind(&challenge.return_url)
        .bind(ChallengeStatus::Issued.as_str())
        .bind(&challenge.state_sha256)
        .bind(&challenge.state)
        .bind(&challenge.nonce)
        .bind(&challenge.pkce_verifier)
        .bind(&challenge.traceparent)
        .bind(millis(challenge.created_at))
        .bind(millis(challenge.expires_at))
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        let inserted = result.rows_affected() == 1;
        if inserted {
            outbox::insert(&mut transaction, required).await?;
        }
        transaction.commit().await?;
        Ok(inserted)
    }

    /// Writes `event` to the outbox on its own, for decisions that change no challenge
    /// (a step without step-up, a policy rejection). Writing the same event id again adds
    /// nothing.
    pub async fn enqueue(&self, event: &OutboxEvent) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        outbox::insert(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Challenge>, StoreError> {
        let row: Option<ChallengeRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM challenges WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(Challenge::try_from).transpose()
    }

    pub async fn get_by_request_event(
        &self,
        event_id: &str,
    ) -> Result<Option<Challenge>, StoreError> {
        let row: Option<ChallengeRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM challenges WHERE request_event_id = $1"
        ))
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Challenge::try_from).transpose()
    }

    pub async fn get_by_state_hash(
        &self,
        state_sha256: &str,
    ) -> Result<Option<Challenge>, StoreError> {
        let row: Option<ChallengeRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM challenges WHERE state_sha256 = $1"
        ))
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Challenge::try_from).transpose()
    }

    /// Returns the challenges of `approval_id`, oldest first, for the admin API.
    pub async fn list_by_approval(&self, approval_id: &str) -> Result<Vec<Challenge>, StoreError> {
        let rows: Vec<ChallengeRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM challenges WHERE approval_id = $1 ORDER BY created_at"
        ))
        .bind(approval_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Challenge::try_from).collect()
    }

    /// Marks the challenge started by a browser. Allowed while it is issued or started, so
    /// the approver may open the link again; the last browser's binding wins.
    pub async fn start(&self, id: &str, browser_binding_sha256: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE challenges SET status = $1, browser_binding_sha256 = $2, updated_at = $3 \
             WHERE id = $4 AND status IN ('issued', 'started')",
        )
        .bind(ChallengeStatus::Started.as_str())
        .bind(browser_binding_sha256)
        .bind(millis(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Stores the authorization code and moves the challenge to verifying. Only the first
    /// callback of a started challenge succeeds.
    pub async fn accept_code(&self, id: &str, code: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE challenges SET status = $1, authorization_code = $2, updated_at = $3 \
             WHERE id = $4 AND status = 'started'",
        )
        .bind(ChallengeStatus::Verifying.as_str())
        .bind(code)
        .bind(millis(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Marks the challenge satisfied with its evidence and writes `completed` to the
    /// outbox, if the challenge is still verifying. Returns false, writing nothing, when
    /// another event or instance moved it first.
    pub async fn satisfy(
        &self,
        id: &str,
        evidence: &Evidence,
        completed: &OutboxEvent,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE challenges SET status = $1, evidence_json = $2, pkce_verifier = NULL, \
             authorization_code = NULL, updated_at = $3 WHERE id = $4 AND status = 'verifying'",
        )
        .bind(ChallengeStatus::Satisfied.as_str())
        .bind(to_json(evidence))
        .bind(millis(Utc::now()))
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        commit_with_event(transaction, result.rows_affected() == 1, completed).await
    }

    /// Marks the challenge failed and writes `failed` to the outbox, if it is not final yet.
    pub async fn fail(
        &self,
        id: &str,
        reason: ReasonCode,
        message: &str,
        failed: &OutboxEvent,
    ) -> Result<bool, StoreError> {
        self.finish(id, ChallengeStatus::Failed, reason, message, failed)
            .await
    }

    /// Marks the challenge expired and writes `expired` to the outbox, if it is not final
    /// yet.
    pub async fn expire(&self, id: &str, expired: &OutboxEvent) -> Result<bool, StoreError> {
        let reason = ReasonCode::Expired;
        self.finish(
            id,
            ChallengeStatus::Expired,
            reason,
            reason.message(),
            expired,
        )
        .await
    }

    async fn finish(
        &self,
        id: &str,
        status: ChallengeStatus,
        reason: ReasonCode,
        message: &str,
        event: &OutboxEvent,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE challenges SET status = $1, reason_code = $2, message = $3, \
             pkce_verifier = NULL, authorization_code = NULL, updated_at = $4 \
             WHERE id = $5 AND status IN ('issued', 'started', 'verifying')",
        )
        .bind(status.as_str())
        .bind(reason.as_str())
        .bind(message)
        .bind(millis(Utc::now()))
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        commit_with_event(transaction, result.rows_affected() == 1, event).await
    }

    /// Returns the ids of open challenges whose expiry has passed, oldest first.
    pub async fn overdue(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>, StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM challenges WHERE status IN ('issued', 'started', 'verifying') \
             AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(millis(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}

/// Writes `event` when the conditional update `changed` a row, then commits. Returns
/// `changed`.
async fn commit_with_event(
    mut transaction: Transaction<'_, Any>,
    changed: bool,
    event: &OutboxEvent,
) -> Result<bool, StoreError> {
    if changed {
        outbox::insert(&mut transaction, event).await?;
    }
    transaction.commit().await?;
    Ok(changed)
}

impl TryFrom<ChallengeRow> for Challenge {
    type Error = StoreError;

    fn try_from(row: ChallengeRow) -> Result<Self, StoreError> {
        let corrupt = |column: &'static str, detail: String| StoreError::Corrupt {
            id: row.id.clone(),
            column,
            detail,
        };
        let status = ChallengeStatus::parse(&row.status)
            .ok_or_else(|| corrupt("status", format!("unknown status {:?}", row.status)))?;
        let requirement = serde_json::from_str(&row.requirement_json)
            .map_err(|e| corrupt("requirement_json", e.to_string()))?;
        let approver = serde_json::from_str(&row.approver_json)
            .map_err(|e| corrupt("approver_json", e.to_string()))?;
        let resource = row
            .resource_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("resource_json", e.to_string()))?;
        let evidence = row
            .evidence_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("evidence_json", e.to_string()))?;
        let reason_code = row
            .reason_code
            .as_deref()
            .map(|code| serde_json::from_value(serde_json::Value::String(code.to_owned())))
            .transpose()
            .map_err(|e| corrupt("reason_code", e.to_string()))?;

        Ok(Self {
            requirement,
            approver,
            resource,
            status,
            reason_code,
            evidence,
            traceparent: row.traceparent,
            created_at: from_millis(row.created_at),
            expires_at: from_millis(row.expires_at),
            id: row.id,
            approval_id: row.approval_id,
            step_id: row.step_id,
            provider: row.provider,
            requester_id: row.requester_id,
            return_url: row.return_url,
            state: row.state,
            nonce: row.nonce,
            pkce_verifier: row.pkce_verifier,
            authorization_code: row.authorization_code,
            browser_binding_sha256: row.browser_binding_sha256,
            message: row.message,
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // The types stored here are plain data whose serialization cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(value: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(value)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
