//! Payloads (`data`) of every event.
//!
//! The first group is the public contract with other systems; the second group is
//! internal to the step-up services.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::EventData;
use crate::reason::ReasonCode;
use crate::subject;

/// The approver, identified as the other system records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// The approver's id in the other system.
    pub id: String,
    pub email: String,
    /// The approver's subject at the IdP, when the other system has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_subject: Option<String>,
}

/// The person who asked for the access or change being approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// What the approval grants access to, shown to the approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Where the approver acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Mobile,
    Slack,
    Teams,
    Cli,
    Api,
    Automation,
}

impl Channel {
    /// Whether the approver can follow a browser redirect from this channel.
    pub fn can_redirect_browser(self) -> bool {
        matches!(self, Self::Web | Self::Mobile | Self::Api)
    }
}

/// `stepup.approval.requested`: published by other systems when an approver approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub approval_id: String,
    pub policy_id: String,
    pub step_id: String,
    pub approver: Approver,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    pub channel: Channel,
    #[serde(default)]
    pub automated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
}

/// Microsoft Entra ID's two ways of asking for a stronger authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntraMode {
    /// Require re-authentication: `max_age=0` and `prompt=login`.
    Oidc,
    /// Require an authentication context through the `claims` request (`acrs`).
    Acrs,
}

/// The authentication strength a step requires, as sent to the IdP and checked after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Allowed `acr` values, most preferred first; sent as `acr_values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    /// Maximum authentication age in seconds; sent as `max_age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// Whether `prompt=login` is sent.
    #[serde(default)]
    pub prompt_login: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra_mode: Option<EntraMode>,
    /// Entra authentication context id (`c1` … `c99`) for [`EntraMode::Acrs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_context: Option<String>,
}

/// `stepup.required`: the approval waits for the approver's step-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpRequired {
    pub challenge_id: String,
    pub approval_id: String,
    pub step_id: String,
    /// The link behind the "Approve with step-up" button.
    pub step_up_url: String,
    pub provider: String,
    pub requirement: Requirement,
    pub expires_at: DateTime<Utc>,
}

/// What the IdP proved about the approver's authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub provider: String,
    pub issuer: String,
    /// The ID token's `sub`.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub acrs: Vec<String>,
    /// Hex SHA-256 of the compact ID token, so the token can be matched without keeping it.
    pub id_token_sha256: String,
    pub verified_at: DateTime<Utc>,
}

/// `stepup.approval.completed`: the approval may proceed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCompleted {
    pub approval_id: String,
    pub step_id: String,
    /// Absent when the step needs no step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    pub approver: Approver,
    /// Absent when the step needs no step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// `stepup.approval.rejected`: the approval was refused before any challenge ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRejected {
    pub approval_id: String,
    pub step_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    pub reason_code: ReasonCode,
    pub message: String,
}

/// `stepup.challenge.failed`: the approver's step-up did not satisfy the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeFailed {
    pub approval_id: String,
    pub step_id: String,
    pub challenge_id: String,
    pub reason_code: ReasonCode,
    pub message: String,
}

/// `stepup.challenge.expired`: the challenge was not completed before its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeExpired {
    pub approval_id: String,
    pub step_id: String,
    pub challenge_id: String,
    pub expired_at: DateTime<Utc>,
}

/// `stepup.challenge.started`: the approver opened the step-up URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeStarted {
    pub approval_id: String,
    pub challenge_id: String,
    pub provider: String,
    pub started_at: DateTime<Utc>,
}

/// `stepup.auth.code_received`: the IdP sent the approver back with an authorization code.
///
/// The code itself is not in the event: events are persisted, codes must not be. The
/// verifier fetches it from the challenge service over request/reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCodeReceived {
    pub approval_id: String,
    pub challenge_id: String,
    pub provider: String,
    pub received_at: DateTime<Utc>,
}

/// The claims the challenge service needs to bind the IdP user to the approver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectClaims {
    pub issuer: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Entra's object id of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Entra's tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
}

/// `stepup.auth.verified`: the verifier validated the ID token and its strength.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthVerified {
    pub approval_id: String,
    pub challenge_id: String,
    pub provider: String,
    /// Hex SHA-256 of the token's `nonce`; the challenge service compares it with its own.
    pub nonce_sha256: String,
    pub claims: SubjectClaims,
    pub evidence: Evidence,
}

/// `stepup.auth.rejected`: the verifier refused the authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRejected {
    pub approval_id: String,
    pub challenge_id: String,
    pub provider: String,
    pub reason_code: ReasonCode,
    pub message: String,
    /// Details for administrators (the IdP's error code, the claim that failed); never a
    /// token or secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

macro_rules! event_data {
    ($($ty:ty => $subject:path, $id:ident;)*) => {
        $(
            impl EventData for $ty {
                const TYPE: &'static str = $subject;

                fn subject_id(&self) -> &str {
                    &self.$id
                }
            }
        )*
    };
}

event_data! {
    ApprovalRequested => subject::APPROVAL_REQUESTED, approval_id;
    StepUpRequired => subject::STEPUP_REQUIRED, approval_id;
    ApprovalCompleted => subject::APPROVAL_COMPLETED, approval_id;
    ApprovalRejected => subject::APPROVAL_REJECTED, approval_id;
    ChallengeFailed => subject::CHALLENGE_FAILED, approval_id;
    ChallengeExpired => subject::CHALLENGE_EXPIRED, approval_id;
    ChallengeStarted => subject::CHALLENGE_STARTED, approval_id;
    AuthCodeReceived => subject::AUTH_CODE_RECEIVED, approval_id;
    AuthVerified => subject::AUTH_VERIFIED, approval_id;
    AuthRejected => subject::AUTH_REJECTED, approval_id;
}

/// A message a service could not process, published on `stepup.deadletter.<service>` so
/// that nothing is lost and the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The service that gave up on the message.
    pub service: String,
    pub original_subject: String,
    /// The original payload, base64-encoded because it may not be valid UTF-8 or JSON.
    pub original_payload_base64: String,
    /// The id of the original event, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_event_id: Option<String>,
    pub error: String,
    /// How many times the message had been delivered.
    pub delivered: i64,
}

impl EventData for DeadLetter {
    const TYPE: &'static str = subject::DEADLETTER_PREFIX;

    fn subject_id(&self) -> &str {
        &self.original_subject
    }
}

/// `stepup.audit.recorded`: one record of the audit log, published on the audit stream
/// after it is committed. The JSON Lines export of the audit API has one of these per line.
///
/// The fields are the record's columns as stored, so a consumer can recompute the hash:
/// times are Unix milliseconds, `amr`, `acrs` and `event_json` are the stored JSON text,
/// and a column that is NULL is left out (a verifier reads a missing field as `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecorded {
    /// Position in the chain, starting at 1 and without gaps.
    pub seq: i64,
    /// When the audit service appended the record, in Unix milliseconds.
    pub recorded_at: i64,
    /// The recorded event's CloudEvents `id`.
    pub event_id: String,
    /// The recorded event's CloudEvents `type`.
    pub event_type: String,
    /// The recorded event's CloudEvents `time`, in Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    /// The approver's id in the other system, or their email when the event has no id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The event's meaning for the approval, such as `requested` or `completed`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The `amr` values as JSON text, such as `["pwd","otp"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<String>,
    /// Entra's `acrs` values as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acrs: Option<String>,
    /// The IdP's `auth_time`, in Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The approver's subject (`sub`) at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_subject: Option<String>,
    /// Hex SHA-256 of the compact ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_sha256: Option<String>,
    /// The W3C trace id of the approval's trace, as 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The recorded CloudEvent as JSON text, with secret-bearing members redacted.
    pub event_json: String,
    /// The hash of the record at `seq - 1`, or 64 zeros for the first record.
    pub prev_hash: String,
    /// Lowercase hex SHA-256 over the record's canonical JSON followed by `prev_hash`.
    pub hash: String,
}

impl EventData for AuditRecorded {
    const TYPE: &'static str = subject::AUDIT_RECORDED;

    /// The approval the record is about, or the recorded event's id when it names none.
    fn subject_id(&self) -> &str {
        self.approval_id.as_deref().unwrap_or(&self.event_id)
    }
}
