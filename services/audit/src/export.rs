//! The JSON Lines export of the audit log and its offline verification.
//!
//! Each line is one record as a `stepup.audit.recorded` payload ([`AuditRecorded`]): every
//! stored column, so that a verifier recomputes each hash from the line alone. The same
//! object is the `data` of the events on the audit stream, so a dump of the stream
//! verifies the same way. `stepup audit verify` calls [`verify_export`].

use std::io::BufRead;

use stepup_events::data::AuditRecorded;
use thiserror::Error;

use crate::chain::{ChainChecker, Verification};
use crate::record::{AuditRecord, Entry};

/// The media type of the export.
pub const CONTENT_TYPE: &str = "application/jsonl";

/// An export that could not be read. A readable export whose chain does not hold is not
/// an error: [`verify_export`] returns it as [`Verification::Broken`].
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("reading line {line} of the export: {source}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "line {line} of the export is not an audit record ({source}); \
         each line must be one JSON object as GET /audit/export writes it"
    )]
    InvalidLine {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// Converts a stored record into its export line and stream payload.
pub fn to_recorded(record: &AuditRecord) -> AuditRecorded {
    let entry = record.entry.clone();
    AuditRecorded {
        seq: record.seq,
        recorded_at: record.recorded_at,
        event_id: entry.event_id,
        event_type: entry.event_type,
        event_time: entry.event_time,
        approval_id: entry.approval_id,
        step_id: entry.step_id,
        challenge_id: entry.challenge_id,
        approver: entry.approver,
        provider: entry.provider,
        outcome: entry.outcome,
        reason_code: entry.reason_code,
        acr: entry.acr,
        amr: entry.amr,
        acrs: entry.acrs,
        auth_time: entry.auth_time,
        idp_subject: entry.idp_subject,
        id_token_sha256: entry.id_token_sha256,
        trace_id: entry.trace_id,
        event_json: entry.event_json,
        prev_hash: record.prev_hash.clone(),
        hash: record.hash.clone(),
    }
}

/// Converts an export line or stream payload back into a record, keeping its stored hash.
pub fn from_recorded(recorded: AuditRecorded) -> AuditRecord {
    AuditRecord {
        seq: recorded.seq,
        recorded_at: recorded.recorded_at,
        entry: Entry {
            event_id: recorded.event_id,
            event_type: recorded.event_type,
            event_time: recorded.event_time,
            approval_id: recorded.approval_id,
            step_id: recorded.step_id,
            challenge_id: recorded.challenge_id,
            approver: recorded.approver,
            provider: recorded.provider,
            outcome: recorded.outcome,
            reason_code: recorded.reason_code,
            acr: recorded.acr,
            amr: recorded.amr,
            acrs: recorded.acrs,
            auth_time: recorded.auth_time,
            idp_subject: recorded.idp_subject,
            id_token_sha256: recorded.id_token_sha256,
            trace_id: recorded.trace_id,
            event_json: recorded.event_json,
        },
        prev_hash: recorded.prev_hash,
        hash: recorded.hash,
    }
}

/// Serializes a record as one export line, with its trailing newline.
pub fn export_line(record: &AuditRecord) -> String {
    // Serializing a struct of strings, integers and options cannot fail.
    let mut line = serde_json::to_string(&to_recorded(record)).unwrap_or_default();
    line.push('\n');
    line
}

/// Verifies an export read line by line. The first record's `prev_hash` is taken as given
/// unless its seq is 1, because a range export does not contain the record before it:
/// compare the result's `first_seq` and the first line's `prev_hash` with the live log to
/// anchor it. Blank lines are skipped.
pub fn verify_export(reader: impl BufRead) -> Result<Verification, ExportError> {
    let mut checker = ChainChecker::from_first_record();

    for (index, line) in (1_u64..).zip(reader.lines()) {
        let line = line.map_err(|source| ExportError::Read {
            line: index,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let recorded: AuditRecorded =
            serde_json::from_str(&line).map_err(|source| ExportError::InvalidLine {
                line: index,
                source,
            })?;
        if let Err(broken) = checker.check(&from_recorded(recorded)) {
            return Ok(broken);
        }
    }
    Ok(checker.finish())
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
