//! What the admin API returns. A provider's client secret shows only where it is kept,
//! never its value or ciphertext.

use chrono::{DateTime, Utc};
use serde::Serialize;
use stepup_events::ReasonCode;
use stepup_events::data::{Approver, EntraMode, Evidence, Requirement, Resource};
use stepup_events::rpc::ChallengeStatus;
use stepup_oidc::provider::{ApproverBinding, FieldProblem, ProviderKind, TokenAuthMethod};
use stepup_registry::{Origin, PolicyRecord, ProviderRecord, StoredSecret};

use crate::store::Challenge;

/// Where a provider's client secret is kept.
#[derive(Debug, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SecretView {
    /// Encrypted in the store with the key of this id.
    Encrypted { key_id: String },
    /// The verifier's environment variable.
    Env { name: String },
    /// A file the verifier reads.
    File { path: String },
    /// The verifier's configuration file entry of the same name.
    Config,
}

impl From<&StoredSecret> for SecretView {
    fn from(stored: &StoredSecret) -> Self {
        match stored {
            StoredSecret::Encrypted { key_id, .. } => Self::Encrypted {
                key_id: key_id.clone(),
            },
            StoredSecret::Env { name } => Self::Env { name: name.clone() },
            StoredSecret::File { path } => Self::File { path: path.clone() },
            StoredSecret::Config => Self::Config,
        }
    }
}

/// A provider as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProviderView {
    pub name: String,
    pub kind: ProviderKind,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretView,
    pub acr_values: Vec<String>,
    pub max_age: Option<u64>,
    pub prompt_login: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entra_mode: Option<EntraMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_context: Option<String>,
    pub token_auth_method: TokenAuthMethod,
    pub binding: ApproverBinding,
    pub id_token_signing_algs: Vec<String>,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub origin: Origin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_tested_at: Option<DateTime<Utc>>,
    /// What the authorization request asks for when no policy overrides it.
    pub requirement: Requirement,
}

impl From<&ProviderRecord> for ProviderView {
    fn from(record: &ProviderRecord) -> Self {
        Self {
            name: record.name.clone(),
            kind: record.kind,
            issuer: record.issuer.clone(),
            client_id: record.client_id.clone(),
            client_secret: SecretView::from(&record.client_secret),
            acr_values: record.acr_values.clone(),
            max_age: record.max_age,
            prompt_login: record.prompt_login,
            entra_mode: record.entra_mode,
            auth_context: record.auth_context.clone(),
            token_auth_method: record.token_auth_method,
            binding: record.binding,
            id_token_signing_algs: record.id_token_signing_algs.clone(),
            scopes: record.scopes.clone(),
            enabled: record.enabled,
            origin: record.origin,
            created_at: record.created_at,
            updated_at: record.updated_at,
            last_tested_at: record.last_tested_at,
            requirement: record.requirement(None, None),
        }
    }
}

/// A saved provider with the discovery checks' warnings.
#[derive(Debug, Serialize)]
pub struct SavedProvider {
    pub provider: ProviderView,
    pub warnings: Vec<FieldProblem>,
}

/// A policy as the API shows it.
pub type PolicyView = PolicyRecord;

/// A challenge as the API shows it: no state, nonce, PKCE verifier or code.
#[derive(Debug, Serialize)]
pub struct ChallengeView {
    pub id: String,
    pub approval_id: String,
    pub step_id: String,
    pub provider: String,
    pub requirement: Requirement,
    pub approver: Approver,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    pub status: ChallengeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<&Challenge> for ChallengeView {
    fn from(challenge: &Challenge) -> Self {
        Self {
            id: challenge.id.clone(),
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            provider: challenge.provider.clone(),
            requirement: challenge.requirement.clone(),
            approver: challenge.approver.clone(),
            resource: challenge.resource.clone(),
            status: challenge.status,
            reason_code: challenge.reason_code,
            message: challenge.message.clone(),
            evidence: challenge.evidence.clone(),
            created_at: challenge.created_at,
            expires_at: challenge.expires_at,
        }
    }
}

/// One `acr` value Okta defines, with what it requires.
#[derive(Debug, Serialize)]
pub struct KnownAcrValue {
    pub provider: &'static str,
    pub value: &'static str,
    pub meaning: &'static str,
}

/// Okta's `acr` values (Okta's step-up authentication documentation, 2024).
pub const OKTA_ACR_VALUES: [KnownAcrValue; 6] = [
    KnownAcrValue {
        provider: "okta",
        value: "urn:okta:loa:1fa:any",
        meaning: "any one factor, such as a password or a passkey",
    },
    KnownAcrValue {
        provider: "okta",
        value: "urn:okta:loa:1fa:pwd",
        meaning: "a password only",
    },
    KnownAcrValue {
        provider: "okta",
        value: "urn:okta:loa:2fa:any",
        meaning: "any two factors",
    },
    KnownAcrValue {
        provider: "okta",
        value: "urn:okta:loa:2fa:any:ifpossible",
        meaning: "two factors when the user has a second one enrolled, else one; weaker than it looks for step-up",
    },
    KnownAcrValue {
        provider: "okta",
        value: "phr",
        meaning: "a phishing-resistant factor, such as FIDO2/WebAuthn or Okta FastPass",
    },
    KnownAcrValue {
        provider: "okta",
        value: "phrh",
        meaning: "a phishing-resistant, hardware-protected factor, such as a security key",
    },
];
