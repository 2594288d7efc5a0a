//! Request and reply bodies of the `stepup.rpc.>` subjects.
//!
//! These travel over core NATS request/reply only, never through the stream: some carry
//! single-use secrets (the authorization code, the PKCE verifier).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::data::{Approver, Requirement, Resource};
use crate::reason::ReasonCode;

/// Where a challenge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeStatus {
    Issued,
    Started,
    Verifying,
    Satisfied,
    Failed,
    Expired,
}

impl ChallengeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Started => "started",
            Self::Verifying => "verifying",
            Self::Satisfied => "satisfied",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Issued,
            Self::Started,
            Self::Verifying,
            Self::Satisfied,
            Self::Failed,
            Self::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// Whether the challenge can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Satisfied | Self::Failed | Self::Expired)
    }
}

/// `stepup.rpc.challenge.start`: the approver opened the step-up URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRequest {
    pub challenge_id: String,
    /// Hex SHA-256 of the browser-binding cookie the callback is about to set.
    pub browser_binding_sha256: String,
}

/// The authorization request parameters the callback redirects the browser with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationParams {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub nonce: String,
    /// `BASE64URL(SHA-256(code_verifier))`, sent with `code_challenge_method=S256`.
    pub code_challenge: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub prompt_login: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    /// The OpenID Connect `claims` request, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
}

/// Reply to [`StartRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartReply {
    pub challenge_id: String,
    pub approval_id: String,
    pub provider: String,
    pub status: ChallengeStatus,
    /// Present while the challenge can still be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ChallengeOutcome>,
    pub expires_at: DateTime<Utc>,
    /// W3C `traceparent` of the approval's trace, so the callback's events join it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// `stepup.rpc.challenge.callback`: the IdP sent the browser back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackRequest {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// The RFC 9207 `iss` parameter of the authorization response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Hex SHA-256 of the browser-binding cookie, when the browser sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_binding_sha256: Option<String>,
}

/// How a finished challenge ended, as shown to the approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeOutcome {
    /// `None` when the challenge was satisfied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    pub message: String,
}

/// Reply to [`CallbackRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackReply {
    pub challenge_id: String,
    pub approval_id: String,
    pub provider: String,
    pub status: ChallengeStatus,
    /// True only for the callback that moved the challenge to `verifying`; that caller
    /// publishes `stepup.auth.code_received`.
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ChallengeOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// W3C `traceparent` of the approval's trace, so the callback's events join it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// `stepup.rpc.challenge.redemption`: the verifier asks for what it needs to redeem the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedemptionRequest {
    pub challenge_id: String,
}

/// Reply to [`RedemptionRequest`]. Carries secrets: never log it.
#[derive(Clone, Serialize, Deserialize)]
pub struct RedemptionReply {
    pub challenge_id: String,
    pub approval_id: String,
    pub provider: String,
    pub code: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub redirect_uri: String,
    pub requirement: Requirement,
    pub approver: Approver,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for RedemptionReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedemptionReply")
            .field("challenge_id", &self.challenge_id)
            .field("approval_id", &self.approval_id)
            .field("provider", &self.provider)
            .field("code", &"[redacted]")
            .field("pkce_verifier", &"[redacted]")
            .field("nonce", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Fault codes of the challenge service's request/reply subjects.
pub mod fault {
    pub const NOT_FOUND: &str = "not_found";
    pub const NOT_REDEEMABLE: &str = "not_redeemable";
    pub const INTERNAL: &str = "internal";
    /// The request is incomplete, such as an authorization response with neither `code`
    /// nor `error`.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// An identity provider that the check needs could not be reached; try again later.
    pub const IDP_UNAVAILABLE: &str = "idp_unavailable";
}
