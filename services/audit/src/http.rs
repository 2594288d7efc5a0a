//! The internal HTTP API: audit records by approval, chain verification, health.
//!
//! Routes:
//! - `GET /audit/approvals/{approval_id}`: `{"approval_id": ..., "records": [...]}` in `seq`
//!   order, an empty list when the approval has no records.
//! - `GET /audit/verify`: `{"ok": true, "records": N}` or
//!   `{"ok": false, "first_broken_seq": S, "reason": "..."}`, both with status 200.
//! - `GET /healthz`: 200 while the process runs. `GET /readyz`: 200 when NATS is connected
//!   and the database is reachable, else 503.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

use crate::chain::Verification;
use crate::log::{AuditLog, LogError};
use crate::record::AuditRecord;

/// The maximum length of an approval id in a query, in bytes.
const MAX_APPROVAL_ID_LEN: usize = 256;

/// Reports whether the NATS connection is up.
pub type NatsProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// The state shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    pub log: AuditLog,
    pub nats_connected: NatsProbe,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// A request that failed. Client faults get a fixed 4xx body; internal faults a generic
/// 500, logged once here.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error(
        "approval id is empty, longer than {MAX_APPROVAL_ID_LEN} bytes or has control characters"
    )]
    InvalidApprovalId,
    #[error(transparent)]
    Log(#[from] LogError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidApprovalId => {
                let body = json!({
                    "error": "invalid_approval_id",
                    "message": "the approval id must be 1 to 256 bytes without control characters",
                });
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            Self::Log(error) => {
                tracing::error!(%error, "audit query failed");
                let body = json!({ "error": "internal", "message": "internal error" });
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
        }
    }
}

/// Builds the router of the audit API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/audit/approvals/{approval_id}", get(approval_records))
        .route("/audit/verify", get(verify))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// One record in API responses: every column, with `event`, `amr` and `acrs` parsed from
/// their stored JSON text.
#[derive(Debug, Serialize)]
struct RecordBody<'a> {
    seq: i64,
    event_id: &'a str,
    event_type: &'a str,
    event_time: Option<i64>,
    recorded_at: i64,
    approval_id: Option<&'a str>,
    step_id: Option<&'a str>,
    challenge_id: Option<&'a str>,
    approver: Option<&'a str>,
    provider: Option<&'a str>,
    outcome: &'a str,
    reason_code: Option<&'a str>,
    acr: Option<&'a str>,
    amr: Option<Value>,
    acrs: Option<Value>,
    auth_time: Option<i64>,
    idp_subject: Option<&'a str>,
    id_token_sha256: Option<&'a str>,
    trace_id: Option<&'a str>,
    event: Value,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> From<&'a AuditRecord> for RecordBody<'a> {
    fn from(record: &'a AuditRecord) -> Self {
        let entry = &record.entry;
        Self {
            seq: record.seq,
            event_id: &entry.event_id,
            event_type: &entry.event_type,
            event_time: entry.event_time,
            recorded_at: record.recorded_at,
            approval_id: entry.approval_id.as_deref(),
            step_id: entry.step_id.as_deref(),
            challenge_id: entry.challenge_id.as_deref(),
            approver: entry.approver.as_deref(),
            provider: entry.provider.as_deref(),
            outcome: &entry.outcome,
            reason_code: entry.reason_code.as_deref(),
            acr: entry.acr.as_deref(),
            amr: entry.amr.as_deref().map(parse_json),
            acrs: entry.acrs.as_deref().map(parse_json),
            auth_time: entry.auth_time,
            idp_subject: entry.idp_subject.as_deref(),
            id_token_sha256: entry.id_token_sha256.as_deref(),
            trace_id: entry.trace_id.as_deref(),
            event: parse_json(&entry.event_json),
            prev_hash: &record.prev_hash,
            hash: &record.hash,
        }
    }
}

/// Parses stored JSON text, or returns it as a JSON string when it is not valid JSON, so
/// that a damaged row is still shown.
fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[tracing::instrument(skip_all, fields(approval.id = tracing::field::Empty))]
async fn approval_records(
    State(state): State<AppState>,
    Path(approval_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let valid = !approval_id.is_empty()
        && approval_id.len() <= MAX_APPROVAL_ID_LEN
        && !approval_id.chars().any(char::is_control);
    if !valid {
        return Err(ApiError::InvalidApprovalId);
    }
    tracing::Span::current().record("approval.id", approval_id.as_str());

    let records = state.log.records_for_approval(&approval_id).await?;
    let bodies: Vec<RecordBody<'_>> = records.iter().map(RecordBody::from).collect();
    Ok(Json(
        json!({ "approval_id": approval_id, "records": bodies }),
    ))
}

#[tracing::instrument(skip_all)]
async fn verify(State(state): State<AppState>) -> Result<Json<Verification>, ApiError> {
    let verification = state.log.verify().await?;
    if let Verification::Broken {
        first_broken_seq,
        reason,
    } = &verification
    {
        tracing::error!(first_broken_seq, %reason, "audit chain verification failed");
    }
    Ok(Json(verification))
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

async fn readyz(State(state): State<AppState>) -> StatusCode {
    if !(state.nats_connected)() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match state.log.ping().await {
        Ok(()) => StatusCode::OK,
        Err(error) => {
            tracing::warn!(%error, "readiness check: the database query failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
