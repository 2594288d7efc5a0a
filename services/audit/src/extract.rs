//! Turns any event into the columns of an audit record.
//!
//! Fields are read from the event's JSON `data` by name, not through the typed payloads,
//! because the log must record every event type, including dead letters and types added
//! after this service was built. A missing or mistyped field leaves its column empty.
//! The stored event is the whole CloudEvent with secret-bearing members redacted (see
//! [`crate::redact`]).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;
use stepup_events::{Envelope, subject};
use thiserror::Error;

use crate::record::Entry;
use crate::redact::redact_secrets;

/// The CloudEvents `type` of dead letters; they are published on `stepup.deadletter.<service>`.
const DEADLETTER_TYPE: &str = subject::DEADLETTER_PREFIX;

/// An event that cannot be recorded.
#[derive(Debug, Error)]
#[error("event {event_id} cannot be serialized for the audit log: {source}")]
pub struct ExtractError {
    event_id: String,
    #[source]
    source: serde_json::Error,
}

/// Builds the record columns of `envelope`. `trace_id` is the trace the event belongs to.
pub fn entry_of(envelope: &Envelope, trace_id: Option<String>) -> Result<Entry, ExtractError> {
    let event_json = redacted_event_json(envelope)?;

    let event_type = envelope.event_type();
    let is_dead_letter = is_dead_letter(event_type);
    let null = Value::Null;
    let data = envelope.data_json().unwrap_or(&null);

    // A dead letter is about the event inside it, so its ids come from that event.
    let original = is_dead_letter.then(|| original_data(data)).flatten();
    let about = original.as_ref().unwrap_or(data);
    let evidence = data.get("evidence").unwrap_or(&null);

    let approval_id = text(about, "approval_id").or_else(|| {
        (!is_dead_letter)
            .then(|| envelope.subject().map(str::to_owned))
            .flatten()
    });

    Ok(Entry {
        event_id: envelope.id().to_owned(),
        event_type: event_type.to_owned(),
        event_time: envelope.time().map(|time| time.timestamp_millis()),
        approval_id,
        step_id: text(about, "step_id"),
        challenge_id: text(about, "challenge_id"),
        approver: approver_of(about),
        provider: text(data, "provider").or_else(|| text(evidence, "provider")),
        outcome: outcome_of(event_type),
        reason_code: text(data, "reason_code"),
        acr: text(evidence, "acr"),
        amr: json_text(evidence, "amr"),
        acrs: json_text(evidence, "acrs"),
        auth_time: evidence.get("auth_time").and_then(unix_millis),
        idp_subject: text(evidence, "subject"),
        id_token_sha256: text(evidence, "id_token_sha256"),
        trace_id,
        event_json,
    })
}

/// Serializes the whole CloudEvent with the values of secret-bearing members redacted.
fn redacted_event_json(envelope: &Envelope) -> Result<String, ExtractError> {
    let serialize_error = |source| ExtractError {
        event_id: envelope.id().to_owned(),
        source,
    };
    let bytes = envelope.to_json().map_err(serialize_error)?;
    let mut event: Value = serde_json::from_slice(&bytes).map_err(serialize_error)?;

    let redacted = redact_secrets(&mut event);
    if !redacted.is_empty() {
        // The pointers name members, never their values.
        tracing::warn!(
            event.id = %envelope.id(),
            event.r#type = %envelope.event_type(),
            redacted = ?redacted,
            "event contained secret-bearing members; their values were redacted before recording"
        );
    }
    serde_json::to_string(&event).map_err(serialize_error)
}

/// Names what an event type means for its approval. Unknown types get the last token of
/// their type, so a new event still gets a readable outcome.
pub fn outcome_of(event_type: &str) -> String {
    let known = match event_type {
        subject::APPROVAL_REQUESTED => "requested",
        subject::STEPUP_REQUIRED => "step_up_required",
        subject::APPROVAL_COMPLETED => "completed",
        subject::APPROVAL_REJECTED => "rejected",
        subject::CHALLENGE_STARTED => "started",
        subject::CHALLENGE_FAILED => "failed",
        subject::CHALLENGE_EXPIRED => "expired",
        subject::AUTH_CODE_RECEIVED => "code_received",
        subject::AUTH_VERIFIED => "verified",
        subject::AUTH_REJECTED => "auth_rejected",
        subject::PROVIDER_TESTED => "tested",
        other if is_dead_letter(other) => "dead_letter",
        other => other.rsplit('.').next().unwrap_or(other),
    };
    known.to_owned()
}

fn is_dead_letter(event_type: &str) -> bool {
    event_type == DEADLETTER_TYPE
        || event_type
            .strip_prefix(DEADLETTER_TYPE)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Returns the `data` of the CloudEvent inside a dead letter, when its payload is one.
fn original_data(data: &Value) -> Option<Value> {
    let encoded = data.get("original_payload_base64")?.as_str()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let mut event: Value = serde_json::from_slice(&payload).ok()?;
    Some(event.get_mut("data")?.take())
}

/// Returns the approver's id, or their email when the event names no id.
fn approver_of(data: &Value) -> Option<String> {
    match data.get("approver")? {
        Value::String(approver) => Some(approver.clone()),
        approver => text(approver, "id").or_else(|| text(approver, "email")),
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key)?.as_str().map(str::to_owned)
}

fn json_text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .filter(|found| !found.is_null())
        .map(Value::to_string)
}

/// Reads a time given as RFC 3339 text (as the events carry it) or as Unix seconds (as
/// JWT claims carry it).
fn unix_millis(value: &Value) -> Option<i64> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| time.with_timezone(&Utc).timestamp_millis()),
        Value::Number(number) => number.as_i64()?.checked_mul(1_000),
        _ => None,
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
