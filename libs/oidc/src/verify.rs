//! Redeeming an authorization code and checking the ID token against a step's requirement.
//!
//! The `openidconnect` crate checks the signature (with the algorithms we pin, never the
//! ones discovery lists), `iss`, `aud`, `exp` and `nonce`. It accepts any `acr` and any
//! `auth_time`, including none, so the strength and freshness checks are our own numbered
//! steps below.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::{
    CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, IssuerUrl, Nonce, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, TokenResponse as _,
};
use sha2::{Digest, Sha256};
use stepup_events::ReasonCode;
use stepup_events::data::{EntraMode, Evidence, Requirement, SubjectClaims};
use tokio::sync::Mutex;

use crate::provider::{ProviderKind, ProviderSettings, TokenAuthMethod};

/// How long discovery documents (with their JWKS) are kept.
const METADATA_TTL: Duration = Duration::from_secs(600);

/// Tolerated clock difference between us and the IdP.
pub const DEFAULT_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);

/// Why an authentication was refused: a stable reason code and a detail for administrators
/// that never contains a token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: ReasonCode,
    pub detail: String,
}

impl Rejection {
    fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What the verifier needs to redeem one challenge's code.
#[derive(Debug)]
pub struct Redemption<'a> {
    pub provider: &'a ProviderSettings,
    /// The resolved client secret.
    pub client_secret: &'a str,
    pub code: &'a str,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub redirect_uri: &'a str,
    pub requirement: &'a Requirement,
    /// When the challenge was created; `auth_time` must not be earlier (minus the skew).
    pub challenge_created_at: DateTime<Utc>,
}

/// A verified authentication.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: SubjectClaims,
    pub evidence: Evidence,
    /// Hex SHA-256 of the token's nonce.
    pub nonce_sha256: String,
}

/// Redeems codes and validates ID tokens, caching each issuer's discovery document.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    http: reqwest::Client,
    metadata: Arc<Mutex<HashMap<String, (CoreProviderMetadata, Instant)>>>,
    clock_skew: TimeDelta,
}

impl TokenVerifier {
    pub fn new(http: reqwest::Client, clock_skew: TimeDelta) -> Self {
        Self {
            http,
            metadata: Arc::default(),
            clock_skew,
        }
    }

    /// Redeems the code and checks the ID token against the requirement, at time `now`.
    pub async fn redeem(
        &self,
        redemption: &Redemption<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, Rejection> {
        let provider = redemption.provider;

        // 1. Discovery: endpoints and signing keys of the configured issuer.
        let metadata = self.metadata(&provider.issuer).await?;

        // 2. Token request: the code with its PKCE verifier, authenticated as the client.
        let redirect_uri = RedirectUrl::new(redemption.redirect_uri.to_owned()).map_err(|e| {
            Rejection::new(
                ReasonCode::TokenExchangeFailed,
                format!("invalid redirect_uri: {e}"),
            )
        })?;
        let auth_type = match provider.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost => AuthType::RequestBody,
        };
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(redemption.client_secret.to_owned())),
        )
        .set_redirect_uri(redirect_uri)
        .set_auth_type(auth_type);
        let request = client
            .exchange_code(AuthorizationCode::new(redemption.code.to_owned()))
            .map_err(|e| {
                Rejection::new(
                    ReasonCode::TokenExchangeFailed,
                    format!(
                        "discovery of {} names no token endpoint: {e}",
                        provider.issuer
                    ),
                )
            })?;
        let response: CoreTokenResponse = request
            .set_pkce_verifier(PkceCodeVerifier::new(redemption.pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|error| token_error(&provider.issuer, error))?;

        // 3. The ID token must be there: without the openid scope an IdP returns none.
        let Some(id_token) = response.id_token() else {
            return Err(Rejection::new(
                ReasonCode::IdTokenMissing,
                "the token response has no ID token: request the openid scope; for Entra, enable ID tokens in the app registration",
            ));
        };

        // 4. Signature with a pinned algorithm, iss, aud, exp and nonce.
        let algorithms = signing_algorithms(&provider.id_token_signing_algs)?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(algorithms)
            .set_time_fn(move || now);
        let expected_nonce = Nonce::new(redemption.nonce.to_owned());
        let claims = id_token
            .claims(&verifier, &expected_nonce)
            .map_err(claims_error)?;

        // 5. The claims openidconnect does not model (acrs, oid, tid), read from the same
        //    verified payload, with strict types.
        let token_text = id_token.to_string();
        let extra = ExtraClaims::from_compact_jwt(&token_text)?;

        // 6. Strength: acr for RFC 9470 providers, acrs for Entra authentication contexts.
        let acr = claims.auth_context_ref().map(|acr| acr.to_string());
        check_strength(
            provider.kind,
            redemption.requirement,
            acr.as_deref(),
            &extra.acrs,
        )?;

        // 7. Freshness: the approver authenticated during this challenge.
        let auth_time = claims.auth_time();
        check_auth_time(
            auth_time,
            redemption.challenge_created_at,
            now,
            self.clock_skew,
        )?;

        // 8. Evidence for the audit log, and the claims that bind the user to the approver.
        let amr = claims
            .auth_method_refs()
            .map(|refs| refs.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default();
        let issuer = claims.issuer().to_string();
        let subject = claims.subject().to_string();
        let evidence = Evidence {
            provider: provider.name.clone(),
            issuer: issuer.clone(),
            subject: subject.clone(),
            acr,
            amr,
            auth_time,
            acrs: extra.acrs.clone(),
            id_token_sha256: hex_sha256(token_text.as_bytes()),
            verified_at: now,
        };
        let subject_claims = SubjectClaims {
            issuer,
            subject,
            email: claims.email().map(|email| email.to_string()),
            email_verified: claims.email_verified(),
            preferred_username: claims.preferred_username().map(|name| name.to_string()),
            oid: extra.oid,
            tid: extra.tid,
        };
        Ok(Verified {
            claims: subject_claims,
            evidence,
            nonce_sha256: hex_sha256(redemption.nonce.as_bytes()),
        })
    }

    async fn metadata(&self, issuer: &str) -> Result<CoreProviderMetadata, Rejection> {
        let mut cache = self.metadata.lock().await;
        if let Some((metadata, fetched)) = cache.get(issuer)
            && fetched.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| {
            Rejection::new(
                ReasonCode::IdpUnavailable,
                format!("issuer {issuer:?} is not a URL: {e}"),
            )
        })?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| {
                Rejection::new(
                    ReasonCode::IdpUnavailable,
                    format!("discovery or JWKS of {issuer} failed: {e}"),
                )
            })?;
        cache.insert(issuer.to_owned(), (metadata.clone(), Instant::now()));
        Ok(metadata)
    }
}

fn token_error<RE, T>(issuer: &str, error: RequestTokenError<RE, T>) -> Rejection
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    match error {
        RequestTokenError::ServerResponse(response) => Rejection::new(
            ReasonCode::TokenExchangeFailed,
            format!("the token endpoint of {issuer} returned an error: {response}"),
        ),
        RequestTokenError::Request(error) => Rejection::new(
            ReasonCode::IdpUnavailable,
            format!("the token endpoint of {issuer} could not be reached: {error}"),
        ),
        RequestTokenError::Parse(error, _body) => Rejection::new(
            ReasonCode::TokenExchangeFailed,
            format!("the token response of {issuer} is not valid: {error}"),
        ),
        RequestTokenError::Other(message) => Rejection::new(
            ReasonCode::TokenExchangeFailed,
            format!("the token request to {issuer} failed: {message}"),
        ),
    }
}

fn claims_error(error: openidconnect::ClaimsVerificationError) -> Rejection {
    use openidconnect::ClaimsVerificationError as E;
    let reason = match &error {
        E::InvalidNonce(_) => ReasonCode::NonceMismatch,
        _ => ReasonCode::IdTokenInvalid,
    };
    Rejection::new(reason, format!("ID token rejected: {error}"))
}

/// Maps configured algorithm names to the verifier's; an unknown name is a configuration
/// error, not a reason to accept anything.
fn signing_algorithms(names: &[String]) -> Result<Vec<CoreJwsSigningAlgorithm>, Rejection> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "RS256" => Ok(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
            "RS384" => Ok(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384),
            "RS512" => Ok(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512),
            "PS256" => Ok(CoreJwsSigningAlgorithm::RsaSsaPssSha256),
            "ES256" => Ok(CoreJwsSigningAlgorithm::EcdsaP256Sha256),
            "ES384" => Ok(CoreJwsSigningAlgorithm::EcdsaP384Sha384),
            "EdDSA" => Ok(CoreJwsSigningAlgorithm::EdDsa),
            other => Err(Rejection::new(
                ReasonCode::IdTokenInvalid,
                format!("configured ID token signing algorithm {other:?} is not supported: use RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA"),
            )),
        })
        .collect()
}

/// Claims read from the verified payload that `openidconnect`'s core types do not carry.
#[derive(Debug, Default, PartialEq, Eq)]
struct ExtraClaims {
    acrs: Vec<String>,
    oid: Option<String>,
    tid: Option<String>,
}

impl ExtraClaims {
    fn from_compact_jwt(token: &str) -> Result<Self, Rejection> {
        let malformed = |detail: String| Rejection::new(ReasonCode::MalformedClaim, detail);
        let payload = token
            .split('.')
            .nth(1)
            .ok_or_else(|| malformed("ID token is not a compact JWT".into()))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| malformed(format!("ID token payload is not base64url: {e}")))?;
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|e| malformed(format!("ID token payload is not a JSON object: {e}")))?;

        Ok(Self {
            acrs: string_array(&object, "acrs")?,
            oid: optional_string(&object, "oid")?,
            tid: optional_string(&object, "tid")?,
        })
    }
}

fn optional_string(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<String>, Rejection> {
    match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(Rejection::new(
            ReasonCode::MalformedClaim,
            format!("claim {name} must be a string, found {}", json_kind(other)),
        )),
    }
}

fn string_array(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Vec<String>, Rejection> {
    let malformed = |found: &serde_json::Value| {
        Rejection::new(
            ReasonCode::MalformedClaim,
            format!(
                "claim {name} must be an array of strings, found {}",
                json_kind(found)
            ),
        )
    };
    match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(item))
            })
            .collect(),
        Some(other) => Err(malformed(other)),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Checks the authentication strength. `acr` values compare as exact strings: a value is
/// allowed or it is not, there is no "at least".
fn check_strength(
    kind: ProviderKind,
    requirement: &Requirement,
    acr: Option<&str>,
    acrs: &[String],
) -> Result<(), Rejection> {
    if requirement.entra_mode == Some(EntraMode::Acrs) {
        let Some(context) = requirement.auth_context.as_deref() else {
            return Err(Rejection::new(
                ReasonCode::AcrsNotSatisfied,
                "the provider is in acrs mode but names no authentication context: configure auth_context (c1 to c99)",
            ));
        };
        if acrs.is_empty() {
            return Err(Rejection::new(
                ReasonCode::AcrsMissing,
                format!("the ID token has no acrs claim; expected it to contain {context}"),
            ));
        }
        if !acrs.iter().any(|value| value == context) {
            return Err(Rejection::new(
                ReasonCode::AcrsNotSatisfied,
                format!("acrs is {acrs:?}, which does not contain {context}"),
            ));
        }
        return Ok(());
    }

    // Entra v2 ID tokens carry no acr, so only RFC 9470 providers are held to one.
    if kind == ProviderKind::Entra || requirement.acr_values.is_empty() {
        return Ok(());
    }
    let Some(acr) = acr else {
        return Err(Rejection::new(
            ReasonCode::AcrMissing,
            format!(
                "the ID token has no acr claim; expected one of {:?}",
                requirement.acr_values
            ),
        ));
    };
    if !requirement.acr_values.iter().any(|allowed| allowed == acr) {
        return Err(Rejection::new(
            ReasonCode::AcrNotSatisfied,
            format!(
                "acr is {acr:?}, expected one of {:?}",
                requirement.acr_values
            ),
        ));
    }
    Ok(())
}

/// Checks that `auth_time` is present, not in the future and no earlier than the
/// challenge's creation, each beyond `skew`.
fn check_auth_time(
    auth_time: Option<DateTime<Utc>>,
    challenge_created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    skew: TimeDelta,
) -> Result<(), Rejection> {
    let Some(auth_time) = auth_time else {
        return Err(Rejection::new(
            ReasonCode::AuthTimeMissing,
            "the ID token has no auth_time claim: configure the IdP to return it (it must when max_age is sent)",
        ));
    };
    if auth_time > now + skew {
        return Err(Rejection::new(
            ReasonCode::IdTokenInvalid,
            format!("auth_time {auth_time} is in the future (now {now})"),
        ));
    }
    if auth_time < challenge_created_at - skew {
        return Err(Rejection::new(
            ReasonCode::AuthTooOld,
            format!("auth_time {auth_time} is earlier than the challenge ({challenge_created_at})"),
        ));
    }
    Ok(())
}

/// Returns the lowercase hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
