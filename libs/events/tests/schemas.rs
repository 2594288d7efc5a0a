//! Checks every event payload against its JSON Schema under `schemas/`.
//!
//! Each payload is wrapped and serialized the way the bus publishes it (`Envelope::new`,
//! then `to_json`). The envelope must match `cloudevent.json` and its `data` must match
//! `<type>.json`. The mutation tests remove and retype every field of every sample and
//! require the schema and serde to reach the same verdict, so a schema cannot drift from
//! the Rust types unnoticed.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use jsonschema::Validator;
use serde_json::{Value, json};
use stepup_events::data::{
    ApprovalCompleted, ApprovalRejected, ApprovalRequested, Approver, AuditRecorded,
    AuthCodeReceived, AuthRejected, AuthVerified, ChallengeExpired, ChallengeFailed,
    ChallengeStarted, Channel, DeadLetter, EntraMode, Evidence, Requester, Requirement, Resource,
    StepUpRequired, SubjectClaims,
};
use stepup_events::{Envelope, EventData, ReasonCode};
use stepup_registry::tested::ProviderTested;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// The event type of every payload that implements `EventData`. A type added to the crate
/// must be added here and to `samples`, and gets a schema file of the same name.
const EVENT_TYPES: [&str; 13] = [
    ApprovalRequested::TYPE,
    StepUpRequired::TYPE,
    ApprovalCompleted::TYPE,
    ApprovalRejected::TYPE,
    ChallengeFailed::TYPE,
    ChallengeExpired::TYPE,
    ChallengeStarted::TYPE,
    AuthCodeReceived::TYPE,
    AuthVerified::TYPE,
    AuthRejected::TYPE,
    DeadLetter::TYPE,
    AuditRecorded::TYPE,
    ProviderTested::TYPE,
];

/// Lowercase hex SHA-256 of `test`, standing in for a token or nonce hash.
const SHA256_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// One payload serialized inside its envelope, with serde's decoder for its type.
struct Sample {
    event_type: &'static str,
    label: &'static str,
    envelope: Value,
    decodes: fn(&Value) -> bool,
}

impl Sample {
    fn of<T: EventData>(label: &'static str, data: &T) -> TestResult<Self> {
        let envelope = Envelope::new("/stepup/test", data)?;
        let envelope = serde_json::from_slice(&envelope.to_json()?)?;
        Ok(Self {
            event_type: T::TYPE,
            label,
            envelope,
            decodes: decodes_as::<T>,
        })
    }

    fn name(&self) -> String {
        format!("{} ({})", self.event_type, self.label)
    }

    fn data(&self) -> TestResult<&Value> {
        let data = self.envelope.get("data");
        Ok(data.ok_or_else(|| format!("{} has no data", self.name()))?)
    }
}

fn decodes_as<T: EventData>(data: &Value) -> bool {
    serde_json::from_value::<T>(data.clone()).is_ok()
}

// ---------------------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------------------

fn approver(with_idp_subject: bool) -> Approver {
    Approver {
        id: "u-1842".into(),
        email: "dana.reyes@example.com".into(),
        idp_subject: with_idp_subject.then(|| "00u1a2b3c4D5e6F7g8h9".into()),
    }
}

fn full_evidence(now: DateTime<Utc>) -> Evidence {
    Evidence {
        provider: "okta-prod".into(),
        issuer: "https://example.okta.com".into(),
        subject: "00u1a2b3c4D5e6F7g8h9".into(),
        acr: Some("urn:okta:loa:2fa:any".into()),
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: Some(now - TimeDelta::seconds(20)),
        acrs: vec!["c3".into()],
        id_token_sha256: SHA256_HEX.into(),
        verified_at: now,
    }
}

fn minimal_evidence(now: DateTime<Utc>) -> Evidence {
    Evidence {
        provider: "entra".into(),
        issuer: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
            .into(),
        subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ".into(),
        acr: None,
        amr: Vec::new(),
        auth_time: None,
        acrs: Vec::new(),
        id_token_sha256: SHA256_HEX.into(),
        verified_at: now,
    }
}

fn approval_requested_samples() -> TestResult<Vec<Sample>> {
    let full = ApprovalRequested {
        approval_id: "apr-2025-0042".into(),
        policy_id: "prod-access".into(),
        step_id: "security-review".into(),
        approver: approver(true),
        requester: Some(Requester {
            id: "u-2210".into(),
            email: Some("sam.ortiz@example.com".into()),
            display_name: Some("Sam Ortiz".into()),
        }),
        resource: Some(Resource {
            kind: "aws-role".into(),
            id: "arn:aws:iam::123456789012:role/ProdAdmin".into(),
            display_name: Some("Production administrator".into()),
        }),
        channel: Channel::Web,
        automated: false,
        return_url: Some("https://access.example.com/approvals/apr-2025-0042".into()),
    };
    let minimal = ApprovalRequested {
        approval_id: "apr-2025-0043".into(),
        policy_id: "prod-access".into(),
        step_id: "manager".into(),
        approver: approver(false),
        requester: Some(Requester {
            id: "u-2210".into(),
            email: None,
            display_name: None,
        }),
        resource: None,
        channel: Channel::Slack,
        automated: true,
        return_url: None,
    };
    Ok(vec![
        Sample::of("optional fields filled", &full)?,
        Sample::of("optional fields empty", &minimal)?,
    ])
}

fn stepup_required_samples(now: DateTime<Utc>) -> TestResult<Vec<Sample>> {
    let full = StepUpRequired {
        challenge_id: "ch-01J8Z6".into(),
        approval_id: "apr-2025-0042".into(),
        step_id: "security-review".into(),
        step_up_url: "https://stepup.example.com/stepup/ch-01J8Z6".into(),
        provider: "entra".into(),
        requirement: Requirement {
            acr_values: vec!["urn:okta:loa:2fa:any".into(), "phr".into()],
            max_age: Some(0),
            prompt_login: true,
            entra_mode: Some(EntraMode::Acrs),
            auth_context: Some("c3".into()),
        },
        expires_at: now + TimeDelta::minutes(10),
    };
    let minimal = StepUpRequired {
        requirement: Requirement::default(),
        ..full.clone()
    };
    Ok(vec![
        Sample::of("optional fields filled", &full)?,
        Sample::of("optional fields empty", &minimal)?,
    ])
}

fn outcome_samples(now: DateTime<Utc>) -> TestResult<Vec<Sample>> {
    let completed = ApprovalCompleted {
        approval_id: "apr-2025-0042".into(),
        step_id: "security-review".into(),
        challenge_id: Some("ch-01J8Z6".into()),
        approver: approver(true),
        evidence: Some(full_evidence(now)),
    };
    let completed_without_stepup = ApprovalCompleted {
        approval_id: "apr-2025-0044".into(),
        step_id: "peer-review".into(),
        challenge_id: None,
        approver: approver(false),
        evidence: None,
    };
    let rejected = ApprovalRejected {
        approval_id: "apr-2025-0043".into(),
        step_id: "manager".into(),
        challenge_id: Some("ch-01J8Z7".into()),
        reason_code: ReasonCode::AutomatedApprovalNotAllowed,
        message: ReasonCode::AutomatedApprovalNotAllowed.message().into(),
    };
    let rejected_without_challenge = ApprovalRejected {
        challenge_id: None,
        reason_code: ReasonCode::ChannelNotSupported,
        message: ReasonCode::ChannelNotSupported.message().into(),
        ..rejected.clone()
    };
    let failed = ChallengeFailed {
        approval_id: "apr-2025-0042".into(),
        step_id: "security-review".into(),
        challenge_id: "ch-01J8Z6".into(),
        reason_code: ReasonCode::AcrNotSatisfied,
        message: ReasonCode::AcrNotSatisfied.message().into(),
    };
    let expired = ChallengeExpired {
        approval_id: "apr-2025-0042".into(),
        step_id: "security-review".into(),
        challenge_id: "ch-01J8Z6".into(),
        expired_at: now,
    };
    Ok(vec![
        Sample::of("with step-up", &completed)?,
        Sample::of("without step-up", &completed_without_stepup)?,
        Sample::of("with challenge", &rejected)?,
        Sample::of("without challenge", &rejected_without_challenge)?,
        Sample::of("acr not satisfied", &failed)?,
        Sample::of("expired", &expired)?,
    ])
}

fn auth_samples(now: DateTime<Utc>) -> TestResult<Vec<Sample>> {
    let started = ChallengeStarted {
        approval_id: "apr-2025-0042".into(),
        challenge_id: "ch-01J8Z6".into(),
        provider: "okta-prod".into(),
        started_at: now,
    };
    let code_received = AuthCodeReceived {
        approval_id: "apr-2025-0042".into(),
        challenge_id: "ch-01J8Z6".into(),
        provider: "okta-prod".into(),
        received_at: now,
    };
    let verified = AuthVerified {
        approval_id: "apr-2025-0042".into(),
        challenge_id: "ch-01J8Z6".into(),
        provider: "okta-prod".into(),
        nonce_sha256: SHA256_HEX.into(),
        claims: SubjectClaims {
            issuer: "https://example.okta.com".into(),
            subject: "00u1a2b3c4D5e6F7g8h9".into(),
            email: Some("dana.reyes@example.com".into()),
            email_verified: Some(true),
            preferred_username: Some("dana.reyes@example.com".into()),
            oid: Some("6f2b4c1e-8d3a-4f5b-9c7e-1a2b3c4d5e6f".into()),
            tid: Some("9188040d-6c67-4c5b-b112-36a304b66dad".into()),
        },
        evidence: full_evidence(now),
    };
    let verified_minimal = AuthVerified {
        claims: SubjectClaims {
            issuer: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
                .into(),
            subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ".into(),
            ..SubjectClaims::default()
        },
        evidence: minimal_evidence(now),
        ..verified.clone()
    };
    let rejected = AuthRejected {
        approval_id: "apr-2025-0042".into(),
        challenge_id: "ch-01J8Z6".into(),
        provider: "okta-prod".into(),
        reason_code: ReasonCode::IdpError,
        message: ReasonCode::IdpError.message().into(),
        detail: Some("access_denied: user cancelled the sign-in".into()),
    };
    let rejected_minimal = AuthRejected {
        reason_code: ReasonCode::NonceMismatch,
        message: ReasonCode::NonceMismatch.message().into(),
        detail: None,
        ..rejected.clone()
    };
    Ok(vec![
        Sample::of("started", &started)?,
        Sample::of("code received", &code_received)?,
        Sample::of("optional fields filled", &verified)?,
        Sample::of("optional fields empty", &verified_minimal)?,
        Sample::of("with detail", &rejected)?,
        Sample::of("without detail", &rejected_minimal)?,
    ])
}

fn dead_letter_samples() -> TestResult<Vec<Sample>> {
    let full = DeadLetter {
        service: "verifier".into(),
        original_subject: "stepup.auth.code_received".into(),
        original_payload_base64: "eyJhcHByb3ZhbF9pZCI6ImFwci0yMDI1LTAwNDIifQ==".into(),
        original_event_id: Some("01956a3e-6f1c-7d2a-9b3e-4c5d6e7f8a9b".into()),
        error: "gave up after 5 deliveries: identity provider unavailable".into(),
        delivered: 5,
    };
    let unreadable = DeadLetter {
        original_payload_base64: "/w==".into(),
        original_event_id: None,
        error: "message is not a CloudEvents 1.0 JSON event".into(),
        delivered: 1,
        ..full.clone()
    };
    Ok(vec![
        Sample::of("with event id", &full)?,
        Sample::of("unreadable payload", &unreadable)?,
    ])
}

fn audit_recorded_samples() -> TestResult<Vec<Sample>> {
    let full = AuditRecorded {
        seq: 42,
        recorded_at: 1_741_944_600_456,
        event_id: "01956a3e-6f1c-7d2a-9b3e-4c5d6e7f8a9b".into(),
        event_type: "stepup.approval.completed".into(),
        event_time: Some(1_741_944_600_123),
        approval_id: Some("apr-2025-0042".into()),
        step_id: Some("security-review".into()),
        challenge_id: Some("ch-01J8Z6".into()),
        approver: Some("u-1842".into()),
        provider: Some("okta-prod".into()),
        outcome: "completed".into(),
        reason_code: Some("acr_not_satisfied".into()),
        acr: Some("urn:okta:loa:2fa:any".into()),
        amr: Some(r#"["pwd","otp"]"#.into()),
        acrs: Some(r#"["c3"]"#.into()),
        auth_time: Some(1_741_944_580_000),
        idp_subject: Some("00u1a2b3c4D5e6F7g8h9".into()),
        id_token_sha256: Some(SHA256_HEX.into()),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        event_json: r#"{"id":"01956a3e-6f1c-7d2a-9b3e-4c5d6e7f8a9b"}"#.into(),
        prev_hash: "0".repeat(64),
        hash: SHA256_HEX.into(),
    };
    let minimal = AuditRecorded {
        seq: 43,
        recorded_at: 1_741_944_601_000,
        event_id: "01956a3e-70aa-7d2a-9b3e-4c5d6e7f8a9b".into(),
        event_type: "stepup.deadletter".into(),
        outcome: "dead_letter".into(),
        event_json: "{}".into(),
        prev_hash: SHA256_HEX.into(),
        hash: SHA256_HEX.into(),
        ..AuditRecorded::default()
    };
    Ok(vec![
        Sample::of("optional fields filled", &full)?,
        Sample::of("optional fields empty", &minimal)?,
    ])
}

fn provider_tested_samples(now: DateTime<Utc>) -> TestResult<Vec<Sample>> {
    let requested = Requirement {
        acr_values: vec!["urn:okta:loa:2fa:any".into()],
        max_age: Some(0),
        ..Requirement::default()
    };
    let passed = ProviderTested::passed(
        "okta-prod",
        "ch-01J8Z6",
        &requested,
        &full_evidence(now),
        now,
    );
    let failed = ProviderTested::failed(
        "okta-prod",
        "ch-01J8Z7",
        &requested,
        ReasonCode::AcrNotSatisfied,
        ReasonCode::AcrNotSatisfied.message(),
        Some("acr is \"urn:okta:loa:1fa:pwd\""),
        now,
    );
    Ok(vec![
        Sample::of("test passed", &passed)?,
        Sample::of("test failed", &failed)?,
    ])
}

/// Builds every sample: each payload type at least once, and a second time with its
/// optional fields empty where it has any.
fn samples() -> TestResult<Vec<Sample>> {
    let now: DateTime<Utc> = "2025-03-14T09:30:00.123456789Z".parse()?;
    let mut all = approval_requested_samples()?;
    all.extend(stepup_required_samples(now)?);
    all.extend(outcome_samples(now)?);
    all.extend(auth_samples(now)?);
    all.extend(dead_letter_samples()?);
    all.extend(audit_recorded_samples()?);
    all.extend(provider_tested_samples(now)?);
    Ok(all)
}

fn sample_of_type(event_type: &str) -> TestResult<Sample> {
    let found = samples()?
        .into_iter()
        .find(|sample| sample.event_type == event_type);
    Ok(found.ok_or_else(|| format!("no sample of {event_type}"))?)
}

// ---------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn read_schema(file_name: &str) -> TestResult<Value> {
    let path = schemas_dir().join(file_name);
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let schema = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not valid JSON: {error}", path.display()))?;
    Ok(schema)
}

/// Compiles a schema file with format checks on, because the event times are only
/// checked through `format: date-time`.
fn compile(file_name: &str) -> TestResult<Validator> {
    let schema = read_schema(file_name)?;
    jsonschema::meta::validate(&schema)
        .map_err(|error| format!("{file_name} violates its meta-schema: {error}"))?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|error| format!("{file_name} does not compile: {error}"))?;
    Ok(validator)
}

fn data_validator(event_type: &str) -> TestResult<Validator> {
    compile(&format!("{event_type}.json"))
}

fn violations(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("{error} at '{}'", error.instance_path()))
        .collect()
}

/// Lists the event types that have a `stepup.*.json` file under `schemas/`.
fn schema_file_types() -> TestResult<BTreeSet<String>> {
    let mut types = BTreeSet::new();
    for entry in std::fs::read_dir(schemas_dir())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(event_type) = name.strip_suffix(".json")
            && event_type.starts_with("stepup.")
        {
            types.insert(event_type.to_owned());
        }
    }
    Ok(types)
}

/// Reads the `enum` of a schema property, found by JSON pointer.
fn schema_enum(schema: &Value, pointer: &str) -> TestResult<BTreeSet<String>> {
    let values = schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no enum at {pointer}"))?;
    Ok(values
        .iter()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect())
}

/// Serializes `values` to the names that appear in JSON.
fn serialized_names<T: serde::Serialize>(values: &[T]) -> TestResult<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for value in values {
        match serde_json::to_value(value)? {
            Value::String(name) => names.insert(name),
            other => return Err(format!("{other} does not serialize as a string").into()),
        };
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------
// Every variant of the enums that schemas list. Each match stops compiling when a variant
// is added, and the new variant's index then falls outside the array until it is listed.
// ---------------------------------------------------------------------------------------

const CHANNELS: [Channel; 7] = [
    Channel::Web,
    Channel::Mobile,
    Channel::Slack,
    Channel::Teams,
    Channel::Cli,
    Channel::Api,
    Channel::Automation,
];

fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Web => 0,
        Channel::Mobile => 1,
        Channel::Slack => 2,
        Channel::Teams => 3,
        Channel::Cli => 4,
        Channel::Api => 5,
        Channel::Automation => 6,
    }
}

const ENTRA_MODES: [EntraMode; 2] = [EntraMode::Oidc, EntraMode::Acrs];

fn entra_mode_index(mode: EntraMode) -> usize {
    match mode {
        EntraMode::Oidc => 0,
        EntraMode::Acrs => 1,
    }
}

const REASON_CODES: [ReasonCode; 35] = [
    ReasonCode::AutomatedApprovalNotAllowed,
    ReasonCode::ChannelNotSupported,
    ReasonCode::NoPolicy,
    ReasonCode::ProviderUnknown,
    ReasonCode::AcrNotSatisfied,
    ReasonCode::AcrMissing,
    ReasonCode::AcrsMissing,
    ReasonCode::AcrsNotSatisfied,
    ReasonCode::AuthTimeMissing,
    ReasonCode::AuthTooOld,
    ReasonCode::NonceMismatch,
    ReasonCode::SubjectMismatch,
    ReasonCode::IdTokenMissing,
    ReasonCode::IdTokenInvalid,
    ReasonCode::MalformedClaim,
    ReasonCode::IdpError,
    ReasonCode::IdpUnavailable,
    ReasonCode::TokenExchangeFailed,
    ReasonCode::Expired,
    ReasonCode::StateInvalid,
    ReasonCode::BrowserMismatch,
    ReasonCode::AlreadyUsed,
    ReasonCode::IssuerMismatch,
    ReasonCode::SelfApproval,
    ReasonCode::EmailNotVerified,
    ReasonCode::SignatureInvalid,
    ReasonCode::AlgorithmNotAllowed,
    ReasonCode::KeyNotFound,
    ReasonCode::KeyIdMissing,
    ReasonCode::AudienceMismatch,
    ReasonCode::TokenExpired,
    ReasonCode::TokenNotYetValid,
    ReasonCode::IssuedInFuture,
    ReasonCode::TokenResponseInvalid,
    ReasonCode::ProviderMetadataInvalid,
];

fn reason_code_index(code: ReasonCode) -> usize {
    match code {
        ReasonCode::AutomatedApprovalNotAllowed => 0,
        ReasonCode::ChannelNotSupported => 1,
        ReasonCode::NoPolicy => 2,
        ReasonCode::ProviderUnknown => 3,
        ReasonCode::AcrNotSatisfied => 4,
        ReasonCode::AcrMissing => 5,
        ReasonCode::AcrsMissing => 6,
        ReasonCode::AcrsNotSatisfied => 7,
        ReasonCode::AuthTimeMissing => 8,
        ReasonCode::AuthTooOld => 9,
        ReasonCode::NonceMismatch => 10,
        ReasonCode::SubjectMismatch => 11,
        ReasonCode::IdTokenMissing => 12,
        ReasonCode::IdTokenInvalid => 13,
        ReasonCode::MalformedClaim => 14,
        ReasonCode::IdpError => 15,
        ReasonCode::IdpUnavailable => 16,
        ReasonCode::TokenExchangeFailed => 17,
        ReasonCode::Expired => 18,
        ReasonCode::StateInvalid => 19,
        ReasonCode::BrowserMismatch => 20,
        ReasonCode::AlreadyUsed => 21,
        ReasonCode::IssuerMismatch => 22,
        ReasonCode::SelfApproval => 23,
        ReasonCode::EmailNotVerified => 24,
        ReasonCode::SignatureInvalid => 25,
        ReasonCode::AlgorithmNotAllowed => 26,
        ReasonCode::KeyNotFound => 27,
        ReasonCode::KeyIdMissing => 28,
        ReasonCode::AudienceMismatch => 29,
        ReasonCode::TokenExpired => 30,
        ReasonCode::TokenNotYetValid => 31,
        ReasonCode::IssuedInFuture => 32,
        ReasonCode::TokenResponseInvalid => 33,
        ReasonCode::ProviderMetadataInvalid => 34,
    }
}

// ---------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------

/// JSON pointers of every object member in `value`, at any depth.
fn member_pointers(value: &Value, prefix: &str, pointers: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let pointer = format!("{prefix}/{key}");
                member_pointers(member, &pointer, pointers);
                pointers.push(pointer);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                member_pointers(item, &format!("{prefix}/{index}"), pointers);
            }
        }
        _ => {}
    }
}

/// Copies `data` without the member at `pointer`.
fn without(data: &Value, pointer: &str) -> TestResult<Value> {
    let (parent, key) = pointer
        .rsplit_once('/')
        .ok_or_else(|| format!("{pointer} is not a member pointer"))?;
    let mut copy = data.clone();
    let removed = copy
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|members| members.remove(key));
    removed.ok_or_else(|| format!("nothing to remove at {pointer}"))?;
    Ok(copy)
}

/// Copies `data` with the member at `pointer` replaced by `replacement`.
fn with(data: &Value, pointer: &str, replacement: Value) -> TestResult<Value> {
    let mut copy = data.clone();
    let slot = copy
        .pointer_mut(pointer)
        .ok_or_else(|| format!("nothing to replace at {pointer}"))?;
    *slot = replacement;
    Ok(copy)
}

/// Returns a non-null value of another JSON type than `value`, which serde must reject.
fn of_other_type(value: &Value) -> Value {
    match value {
        Value::String(_) => json!(42),
        Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_) => json!("x"),
        Value::Null => json!(42),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn every_schema_file_compiles() -> TestResult {
    for entry in std::fs::read_dir(schemas_dir())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            compile(&name)?;
        }
    }
    Ok(())
}

#[test]
fn schema_files_match_event_types() -> TestResult {
    let listed: BTreeSet<String> = EVENT_TYPES.iter().map(|t| t.to_string()).collect();
    let sampled: BTreeSet<String> = samples()?
        .iter()
        .map(|sample| sample.event_type.to_owned())
        .collect();
    let files = schema_file_types()?;

    assert_eq!(
        listed.len(),
        EVENT_TYPES.len(),
        "EVENT_TYPES repeats a type"
    );
    assert_eq!(sampled, listed, "every event type needs a sample");
    assert_eq!(
        files, listed,
        "schema files without a type, or types without a file"
    );
    Ok(())
}

#[test]
fn every_envelope_matches_cloudevent_schema() -> TestResult {
    let validator = compile("cloudevent.json")?;
    for sample in samples()? {
        let errors = violations(&validator, &sample.envelope);
        assert!(errors.is_empty(), "{}: {errors:#?}", sample.name());
        assert_eq!(sample.envelope["type"], json!(sample.event_type));
    }
    Ok(())
}

#[test]
fn every_data_matches_its_schema() -> TestResult {
    for sample in samples()? {
        let validator = data_validator(sample.event_type)?;
        let errors = violations(&validator, sample.data()?);
        assert!(errors.is_empty(), "{}: {errors:#?}", sample.name());
    }
    Ok(())
}

/// Removing a member must be accepted by the schema exactly when serde accepts it, so
/// `required` lists the fields without a serde default and no others.
#[test]
fn removed_fields_agree_with_serde() -> TestResult {
    let mut disagreements = Vec::new();
    for sample in samples()? {
        let validator = data_validator(sample.event_type)?;
        let data = sample.data()?;
        let mut pointers = Vec::new();
        member_pointers(data, "", &mut pointers);

        for pointer in pointers {
            let changed = without(data, &pointer)?;
            let schema_accepts = validator.is_valid(&changed);
            let serde_accepts = (sample.decodes)(&changed);
            if schema_accepts != serde_accepts {
                disagreements.push(format!(
                    "{} without {pointer}: schema accepts {schema_accepts}, serde accepts {serde_accepts}",
                    sample.name()
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    Ok(())
}

/// A member of the wrong JSON type must be rejected by serde and by the schema, so every
/// property of every schema states its type.
#[test]
fn retyped_fields_are_rejected() -> TestResult {
    let mut accepted = Vec::new();
    for sample in samples()? {
        let validator = data_validator(sample.event_type)?;
        let data = sample.data()?;
        let mut pointers = Vec::new();
        member_pointers(data, "", &mut pointers);

        for pointer in pointers {
            let current = data.pointer(&pointer).cloned().unwrap_or(Value::Null);
            let changed = with(data, &pointer, of_other_type(&current))?;
            if (sample.decodes)(&changed) {
                accepted.push(format!("{} {pointer}: serde accepts", sample.name()));
            }
            if validator.is_valid(&changed) {
                accepted.push(format!("{} {pointer}: schema accepts", sample.name()));
            }
        }
    }
    assert!(accepted.is_empty(), "{accepted:#?}");
    Ok(())
}

/// Fields may grow within a major version, so unknown properties must pass both checks.
#[test]
fn unknown_properties_are_accepted() -> TestResult {
    for sample in samples()? {
        let validator = data_validator(sample.event_type)?;
        let mut data = sample.data()?.clone();
        if let Some(members) = data.as_object_mut() {
            members.insert("added_in_a_later_version".into(), json!({"any": "value"}));
        }
        let errors = violations(&validator, &data);
        assert!(errors.is_empty(), "{}: {errors:#?}", sample.name());
        assert!((sample.decodes)(&data), "{}: serde rejects", sample.name());
    }
    Ok(())
}

#[test]
fn approval_without_approval_id_is_rejected() -> TestResult {
    let sample = sample_of_type(ApprovalRequested::TYPE)?;
    let validator = data_validator(sample.event_type)?;
    let changed = without(sample.data()?, "/approval_id")?;

    assert!(!validator.is_valid(&changed));
    assert!(!(sample.decodes)(&changed));
    Ok(())
}

#[test]
fn approval_on_fax_channel_is_rejected() -> TestResult {
    let sample = sample_of_type(ApprovalRequested::TYPE)?;
    let validator = data_validator(sample.event_type)?;
    let changed = with(sample.data()?, "/channel", json!("fax"))?;

    assert!(!validator.is_valid(&changed));
    assert!(!(sample.decodes)(&changed));
    Ok(())
}

#[test]
fn unknown_reason_code_is_rejected() -> TestResult {
    for event_type in [
        ApprovalRejected::TYPE,
        ChallengeFailed::TYPE,
        AuthRejected::TYPE,
    ] {
        let sample = sample_of_type(event_type)?;
        let validator = data_validator(event_type)?;
        let changed = with(sample.data()?, "/reason_code", json!("looked_suspicious"))?;

        assert!(
            !validator.is_valid(&changed),
            "{event_type}: schema accepts"
        );
        assert!(!(sample.decodes)(&changed), "{event_type}: serde accepts");
    }
    Ok(())
}

#[test]
fn malformed_date_time_is_rejected() -> TestResult {
    let sample = sample_of_type(StepUpRequired::TYPE)?;
    let validator = data_validator(sample.event_type)?;
    let changed = with(sample.data()?, "/expires_at", json!("next tuesday"))?;

    assert!(!validator.is_valid(&changed));
    assert!(!(sample.decodes)(&changed));
    Ok(())
}

#[test]
fn schema_enums_list_every_rust_variant() -> TestResult {
    for (index, channel) in CHANNELS.iter().enumerate() {
        assert_eq!(channel_index(*channel), index, "CHANNELS is out of order");
    }
    for (index, mode) in ENTRA_MODES.iter().enumerate() {
        assert_eq!(
            entra_mode_index(*mode),
            index,
            "ENTRA_MODES is out of order"
        );
    }
    for (index, code) in REASON_CODES.iter().enumerate() {
        assert_eq!(
            reason_code_index(*code),
            index,
            "REASON_CODES is out of order"
        );
    }

    let requested = read_schema("stepup.approval.requested.json")?;
    let channels = schema_enum(&requested, "/properties/channel/enum")?;
    assert_eq!(channels, serialized_names(&CHANNELS)?);

    let required = read_schema("stepup.required.json")?;
    let modes = schema_enum(&required, "/$defs/requirement/properties/entra_mode/enum")?;
    assert_eq!(modes, serialized_names(&ENTRA_MODES)?);

    let codes = serialized_names(&REASON_CODES)?;
    for file in [
        "stepup.approval.rejected.json",
        "stepup.challenge.failed.json",
        "stepup.auth.rejected.json",
    ] {
        let schema = read_schema(file)?;
        let listed = schema_enum(&schema, "/properties/reason_code/enum")?;
        assert_eq!(listed, codes, "{file}");
    }
    Ok(())
}

/// docs/reason-codes.md is the one table of reason codes: each code has a row, and the row
/// quotes the sentence that `ReasonCode::message` returns.
#[test]
fn every_reason_code_is_documented() -> TestResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reason-codes.md");
    let doc = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;

    for code in REASON_CODES {
        let row = doc
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", code.as_str())));
        let Some(row) = row else {
            return Err(format!("docs/reason-codes.md has no row for {}", code.as_str()).into());
        };
        assert!(
            row.contains(code.message()),
            "the row of {} does not quote its sentence: {row}",
            code.as_str()
        );
    }
    Ok(())
}

#[test]
fn envelope_violations_are_rejected() -> TestResult {
    let validator = compile("cloudevent.json")?;
    let sample = sample_of_type(StepUpRequired::TYPE)?;
    let envelope = &sample.envelope;

    let cases = [
        (
            "old specversion",
            with(envelope, "/specversion", json!("0.3"))?,
        ),
        ("no data", without(envelope, "/data")?),
        ("no subject", without(envelope, "/subject")?),
        ("text data", with(envelope, "/data", json!("text"))?),
        ("bad time", with(envelope, "/time", json!("yesterday"))?),
        (
            "other content type",
            with(envelope, "/datacontenttype", json!("text/plain"))?,
        ),
        (
            "foreign type",
            with(envelope, "/type", json!("com.example.order"))?,
        ),
    ];
    for (case, changed) in cases {
        assert!(!validator.is_valid(&changed), "{case}: schema accepts");
    }

    let mut base64_data = without(envelope, "/data")?;
    if let Some(members) = base64_data.as_object_mut() {
        members.insert("data_base64".into(), json!("e30="));
    }
    assert!(
        !validator.is_valid(&base64_data),
        "data_base64: schema accepts"
    );
    Ok(())
}
