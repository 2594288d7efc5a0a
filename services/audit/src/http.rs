//! The internal HTTP API: record queries, one approval's story, chain verification, the
//! JSON Lines export and health. `services/audit/openapi.yaml` describes every route.
//!
//! Routes:
//! - `GET /audit/records?approval_id=&challenge_id=&approver=&provider=&outcome=&reason_code=&from=&to=&after_seq=&limit=`:
//!   `{"records": [...], "next_after_seq": N | null}` in `seq` order.
//! - `GET /audit/approvals/{approval_id}`: `{"approval_id": ..., "records": [...]}` in `seq`
//!   order, an empty list when the approval has no records.
//! - `GET /audit/verify?from_seq=&to_seq=`: `{"ok": true, "records": N, ...}` or
//!   `{"ok": false, "first_broken_seq": S, "reason": "..."}`, both with status 200.
//! - `GET /audit/export?from_seq=&to_seq=`: JSON Lines, one record per line.
//! - `GET /healthz`: 200 while the process runs. `GET /readyz`: 200 when NATS is connected
//!   and the database completes a query within two seconds, else 503. It is also 503 from
//!   the start of shutdown.
//!
//! A bad parameter gets a 400 with `{"error": CODE, "parameter": NAME, "message": ...}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::chain::Verification;
use crate::export::{CONTENT_TYPE, export_line};
use crate::log::{AuditLog, LogError, PAGE_SIZE, RecordFilter};
use crate::params::{MAX_TEXT_LEN, ParamError, Params, check_range};
use crate::record::AuditRecord;

/// The maximum length of an approval id in a query, in bytes.
const MAX_APPROVAL_ID_LEN: usize = MAX_TEXT_LEN;

/// Records returned by `GET /audit/records` when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;

/// The largest `limit` of `GET /audit/records`.
pub const MAX_LIMIT: i64 = 1_000;

/// Every route, as `services/audit/openapi.yaml` must list it.
pub const ROUTES: [&str; 6] = [
    "/audit/records",
    "/audit/approvals/{approval_id}",
    "/audit/verify",
    "/audit/export",
    "/healthz",
    "/readyz",
];

const RECORD_PARAMS: &[&str] = &[
    "approval_id",
    "challenge_id",
    "approver",
    "provider",
    "outcome",
    "reason_code",
    "from",
    "to",
    "after_seq",
    "limit",
];

const RANGE_PARAMS: &[&str] = &["from_seq", "to_seq"];

/// How long `/readyz` waits for the database to complete a query.
const DATABASE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reports whether the NATS connection is up.
pub type NatsProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// The state shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    pub log: AuditLog,
    pub nats_connected: NatsProbe,
    /// Cancelled when shutdown begins; `/readyz` reports 503 from then on.
    pub shutdown: CancellationToken,
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
    Param(#[from] ParamError),
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
            Self::Param(error) => {
                let body = json!({
                    "error": error.code(),
                    "parameter": error.parameter(),
                    "message": error.to_string(),
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
        .route("/audit/records", get(records))
        .route("/audit/approvals/{approval_id}", get(approval_records))
        .route("/audit/verify", get(verify))
        .route("/audit/export", get(export))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async { stepup_telemetry::metrics::http_response() }),
        )
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
async fn records(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), RECORD_PARAMS)?;
    let filter = RecordFilter {
        approval_id: params.text("approval_id")?,
        challenge_id: params.text("challenge_id")?,
        approver: params.text("approver")?,
        provider: params.text("provider")?,
        outcome: params.text("outcome")?,
        reason_code: params.text("reason_code")?,
        from: params.time("from")?,
        to: params.time("to")?,
    };
    check_range(("from", filter.from), ("to", filter.to), false)?;
    let after_seq = params.integer("after_seq", 0, i64::MAX)?.unwrap_or(0);
    let limit = params
        .integer("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT);

    // Fetching one record more than the limit shows whether another page follows.
    let mut records = state.log.query(&filter, after_seq, limit + 1).await?;
    let more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_after_seq = more
        .then(|| records.last().map(|record| record.seq))
        .flatten();

    let bodies: Vec<RecordBody<'_>> = records.iter().map(RecordBody::from).collect();
    Ok(Json(
        json!({ "records": bodies, "next_after_seq": next_after_seq }),
    ))
}

/// Reads `from_seq` and `to_seq`, both optional and at least 1.
fn seq_range(query: Option<&str>) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let params = Params::parse(query, RANGE_PARAMS)?;
    let from_seq = params.integer("from_seq", 1, i64::MAX)?;
    let to_seq = params.integer("to_seq", 1, i64::MAX)?;
    check_range(("from_seq", from_seq), ("to_seq", to_seq), true)?;
    Ok((from_seq, to_seq))
}

#[tracing::instrument(skip_all)]
async fn verify(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Verification>, ApiError> {
    let (from_seq, to_seq) = seq_range(query.as_deref())?;

    let verification = state.log.verify_range(from_seq, to_seq).await?;
    if let Verification::Broken {
        first_broken_seq,
        reason,
    } = &verification
    {
        tracing::error!(first_broken_seq, %reason, "audit chain verification failed");
    }
    Ok(Json(verification))
}

/// Streams the records of the range as JSON Lines. Without `to_seq` the export ends at
/// the last record committed when the request arrived, so it covers a definite range.
#[tracing::instrument(skip_all)]
async fn export(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (from_seq, to_seq) = seq_range(query.as_deref())?;
    let from_seq = from_seq.unwrap_or(1);
    let to_seq = match to_seq {
        Some(to_seq) => to_seq,
        None => state.log.last_seq().await?,
    };

    let pages = futures::stream::unfold(
        (state.log, from_seq - 1, false),
        move |(log, after_seq, done)| async move {
            if done {
                return None;
            }
            match log.page(after_seq, to_seq, PAGE_SIZE).await {
                Ok(records) if records.is_empty() => None,
                Ok(records) => {
                    let last = records.last().map_or(after_seq, |record| record.seq);
                    let full = records.len() == usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
                    let text: String = records.iter().map(export_line).collect();
                    Some((Ok(text), (log, last, !full)))
                }
                Err(error) => {
                    // The status is sent already, so the client sees a cut-off body.
                    tracing::error!(%error, after_seq, "audit export failed");
                    let failure = std::io::Error::other("reading the audit log failed");
                    Some((Err(failure), (log, after_seq, true)))
                }
            }
        },
    );

    let disposition = format!("attachment; filename=\"audit-{from_seq}-{to_seq}.jsonl\"");
    let headers = [
        (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    Ok((headers, Body::from_stream(pages)).into_response())
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

async fn readyz(State(state): State<AppState>) -> StatusCode {
    // From the start of shutdown no new work should be routed here while the events in
    // flight finish.
    if state.shutdown.is_cancelled() || !(state.nats_connected)() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match tokio::time::timeout(DATABASE_PING_TIMEOUT, state.log.ping()).await {
        Ok(Ok(())) => StatusCode::OK,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: the database query failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = DATABASE_PING_TIMEOUT.as_millis(),
                "readiness check: the database did not answer in time"
            );
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
