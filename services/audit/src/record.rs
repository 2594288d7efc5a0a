//! One audit record and the canonical hash that chains it to the record before it.
//!
//! The hash covers every column except `hash` itself, so changing any stored value, the
//! order of records or the link to the previous record breaks the chain at that record.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record: 64 hex zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The columns of a record that come from the event, before it is placed in the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub event_id: String,
    pub event_type: String,
    /// The event's CloudEvents `time`, in Unix milliseconds.
    pub event_time: Option<i64>,
    pub approval_id: Option<String>,
    pub step_id: Option<String>,
    pub challenge_id: Option<String>,
    /// The approver's id in the other system, or their email when the event has no id.
    pub approver: Option<String>,
    pub provider: Option<String>,
    /// The event's meaning for the approval, such as `requested` or `completed`.
    pub outcome: String,
    pub reason_code: Option<String>,
    pub acr: Option<String>,
    /// The `amr` values as JSON text.
    pub amr: Option<String>,
    /// Entra's `acrs` values as JSON text.
    pub acrs: Option<String>,
    /// The IdP's `auth_time`, in Unix milliseconds.
    pub auth_time: Option<i64>,
    pub idp_subject: Option<String>,
    pub id_token_sha256: Option<String>,
    /// The W3C trace id of the approval's trace, as 32 hex digits.
    pub trace_id: Option<String>,
    /// The full CloudEvent as JSON text.
    pub event_json: String,
}

/// A record as stored: the entry, its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, starting at 1 and without gaps.
    pub seq: i64,
    /// When the audit service appended the record, in Unix milliseconds.
    pub recorded_at: i64,
    pub entry: Entry,
    /// The hash of the record at `seq - 1`, or [`GENESIS_HASH`] for the first record.
    pub prev_hash: String,
    /// See [`record_hash`].
    pub hash: String,
}

impl AuditRecord {
    /// Places `entry` in the chain after the record whose hash is `prev_hash`.
    pub fn seal(entry: Entry, seq: i64, recorded_at: i64, prev_hash: String) -> Self {
        let mut record = Self {
            seq,
            recorded_at,
            entry,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record_hash(&record);
        record
    }
}

/// Computes a record's hash: the lowercase hex SHA-256 of `canonical_json(record)`
/// followed directly by the ASCII of `record.prev_hash`. The stored `hash` is ignored.
pub fn record_hash(record: &AuditRecord) -> String {
    let mut digest = Sha256::new();
    digest.update(canonical_json(record).as_bytes());
    digest.update(record.prev_hash.as_bytes());
    hex::encode(digest.finalize())
}

/// Serializes a record canonically, as a JSON object of every column except `hash` and
/// `prev_hash`. Keys are sorted by their bytes and there is no whitespace. Absent values
/// are `null`, integers are JSON numbers and all other values are JSON strings, so
/// `event_json`, `amr` and `acrs` appear as their stored text, not parsed.
///
/// The keys are the column names: `acr`, `acrs`, `amr`, `approval_id`, `approver`,
/// `auth_time`, `challenge_id`, `event_id`, `event_json`, `event_time`, `event_type`,
/// `id_token_sha256`, `idp_subject`, `outcome`, `provider`, `reason_code`, `recorded_at`,
/// `seq`, `step_id`, `trace_id`. Changing this set or the encoding changes every hash, so
/// it needs a new chain format.
pub fn canonical_json(record: &AuditRecord) -> String {
    let entry = &record.entry;
    let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::String);
    let number = |value: Option<i64>| value.map_or(Value::Null, Value::from);

    // A BTreeMap of scalars serializes with sorted keys whatever serde_json's features are.
    let fields: BTreeMap<&str, Value> = BTreeMap::from([
        ("seq", Value::from(record.seq)),
        ("recorded_at", Value::from(record.recorded_at)),
        ("event_id", Value::String(entry.event_id.clone())),
        ("event_type", Value::String(entry.event_type.clone())),
        ("event_time", number(entry.event_time)),
        ("approval_id", text(&entry.approval_id)),
        ("step_id", text(&entry.step_id)),
        ("challenge_id", text(&entry.challenge_id)),
        ("approver", text(&entry.approver)),
        ("provider", text(&entry.provider)),
        ("outcome", Value::String(entry.outcome.clone())),
        ("reason_code", text(&entry.reason_code)),
        ("acr", text(&entry.acr)),
        ("amr", text(&entry.amr)),
        ("acrs", text(&entry.acrs)),
        ("auth_time", number(entry.auth_time)),
        ("idp_subject", text(&entry.idp_subject)),
        ("id_token_sha256", text(&entry.id_token_sha256)),
        ("trace_id", text(&entry.trace_id)),
        ("event_json", Value::String(entry.event_json.clone())),
    ]);

    // serde_json fails only on non-string map keys or a failing `Serialize` impl, and
    // neither occurs in a map of strings to scalar values.
    serde_json::to_string(&fields).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            event_id: "evt-1".into(),
            event_type: "stepup.approval.requested".into(),
            event_time: Some(1_700_000_000_000),
            approval_id: Some("apr-1".into()),
            outcome: "requested".into(),
            amr: Some(r#"["pwd","otp"]"#.into()),
            event_json: r#"{"id":"evt-1"}"#.into(),
            ..Entry::default()
        }
    }

    #[test]
    fn canonical_json_sorts_keys_without_whitespace() {
        let record = AuditRecord::seal(entry(), 1, 1_700_000_000_500, GENESIS_HASH.into());
        let json = canonical_json(&record);

        assert!(json.starts_with(r#"{"acr":null,"acrs":null,"amr":"[\"pwd\",\"otp\"]","#));
        assert!(json.contains(r#""seq":1,"#));
        assert!(!json.contains(": "));
        assert!(!json.contains("prev_hash"));
        assert!(!json.contains(r#""hash""#));
    }

    #[test]
    fn hash_covers_canonical_json_and_prev_hash() {
        let record = AuditRecord::seal(entry(), 1, 5, GENESIS_HASH.into());
        let expected = hex::encode(Sha256::digest(
            format!("{}{GENESIS_HASH}", canonical_json(&record)).as_bytes(),
        ));

        assert_eq!(record.hash, expected);
        assert_eq!(record.hash.len(), 64);
    }

    #[test]
    fn hash_changes_with_any_field() {
        let base = AuditRecord::seal(entry(), 1, 5, GENESIS_HASH.into());

        let mut changed_outcome = entry();
        changed_outcome.outcome = "completed".into();
        let mut changed_trace = entry();
        changed_trace.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());

        for other in [
            AuditRecord::seal(changed_outcome, 1, 5, GENESIS_HASH.into()),
            AuditRecord::seal(changed_trace, 1, 5, GENESIS_HASH.into()),
            AuditRecord::seal(entry(), 2, 5, GENESIS_HASH.into()),
            AuditRecord::seal(entry(), 1, 6, GENESIS_HASH.into()),
            AuditRecord::seal(entry(), 1, 5, "1".repeat(64)),
        ] {
            assert_ne!(other.hash, base.hash, "{other:?} hashed like the original");
        }
    }

    #[test]
    fn absent_and_empty_values_hash_differently() {
        let mut empty = entry();
        empty.step_id = Some(String::new());

        let absent = AuditRecord::seal(entry(), 1, 5, GENESIS_HASH.into());
        let present = AuditRecord::seal(empty, 1, 5, GENESIS_HASH.into());

        assert_ne!(absent.hash, present.hash);
    }
}
