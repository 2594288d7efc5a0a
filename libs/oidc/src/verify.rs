//! Redeeming an authorization code and checking the ID token against a step's requirement.
//!
//! [`TokenVerifier::redeem`] follows OpenID Connect Core §3.1.3.7 as numbered steps, and
//! fails closed at each with its own reason code. The code does its own HTTP (discovery,
//! JWKS, token request) so that each way an IdP can answer wrong gets a precise reason,
//! reads the token strictly before any library parser sees it, and uses `openidconnect`
//! for what it does well: the signature check with the key we selected, and a final
//! verification of the whole token with the algorithm pinned.
//!
//! What `openidconnect` 4.x leaves to this module: it accepts any `acr` and `auth_time`,
//! never checks `azp` or `nbf`, applies no check to `iat`, takes the allowed algorithms
//! from discovery unless they are pinned, never fetches the JWKS again, and reports a
//! missing `id_token` or a claim of the wrong type without saying which.

use std::str::FromStr as _;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, IssuerUrl, JsonWebKey as _, Nonce, SignatureVerificationError};
use sha2::{Digest, Sha256};
use stepup_events::ReasonCode;
use stepup_events::data::{EntraMode, Evidence, Requirement, SubjectClaims};
use url::Url;

use crate::claims::{self, Claims, CompactJws, Header};
use crate::discovery::DiscoveryCache;
use crate::http::quote_untrusted;
use crate::jwks::{KeyCache, KeyCacheSettings, KeySet, PublishedKey, Selection, signing_algorithm};
use crate::provider::{ProviderKind, ProviderSettings};
use crate::token::{TokenRequest, request_id_token};

/// Tolerated clock difference between us and the IdP.
pub const DEFAULT_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);

/// Why an authentication was refused: a stable reason code and a detail for administrators
/// that never contains a token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: ReasonCode,
    pub detail: String,
    /// The IdP could not be reached, or said it was unavailable, before it could use the
    /// code, so the same redemption may succeed later.
    pub transient: bool,
}

impl Rejection {
    pub fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            transient: false,
        }
    }

    /// A rejection that may not recur when the same redemption is tried again.
    pub fn transient(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            transient: true,
        }
    }

    /// Marks an unreachable IdP as transient; used for the steps before the token request.
    fn before_code_sent(mut self) -> Self {
        self.transient = self.reason == ReasonCode::IdpUnavailable;
        self
    }
}

/// Size limits and cache lifetimes of the verifier's requests to IdPs.
#[derive(Debug, Clone, Copy)]
pub struct VerifierLimits {
    /// Largest token response accepted, in bytes. ID tokens with many group claims reach
    /// tens of kilobytes.
    pub max_token_response_bytes: usize,
    /// Largest discovery document or JWKS accepted, in bytes.
    pub max_document_bytes: usize,
    /// How long discovery results and key sets are reused.
    pub metadata_ttl: TimeDelta,
    /// Minimum time between two JWKS fetches caused by unknown `kid`s.
    pub jwks_min_refresh_interval: TimeDelta,
}

impl Default for VerifierLimits {
    fn default() -> Self {
        Self {
            max_token_response_bytes: 128 * 1024,
            max_document_bytes: 256 * 1024,
            metadata_ttl: TimeDelta::minutes(10),
            jwks_min_refresh_interval: TimeDelta::seconds(30),
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

/// Redeems codes and validates ID tokens, caching each issuer's endpoints and keys.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    http: reqwest::Client,
    discovery: Arc<DiscoveryCache>,
    keys: Arc<KeyCache>,
    clock_skew: TimeDelta,
    limits: VerifierLimits,
}

impl TokenVerifier {
    pub fn new(http: reqwest::Client, clock_skew: TimeDelta) -> Self {
        Self::with_limits(http, clock_skew, VerifierLimits::default())
    }

    pub fn with_limits(
        http: reqwest::Client,
        clock_skew: TimeDelta,
        limits: VerifierLimits,
    ) -> Self {
        let key_settings = KeyCacheSettings {
            max_bytes: limits.max_document_bytes,
            ttl: limits.metadata_ttl,
            min_refresh_interval: limits.jwks_min_refresh_interval,
        };
        Self {
            discovery: Arc::new(DiscoveryCache::new(
                http.clone(),
                limits.max_document_bytes,
                limits.metadata_ttl,
            )),
            keys: Arc::new(KeyCache::new(http.clone(), key_settings)),
            http,
            clock_skew,
            limits,
        }
    }

    /// Redeems the code and checks the ID token against the requirement, at time `now`.
    pub async fn redeem(
        &self,
        redemption: &Redemption<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified, Rejection> {
        let provider = redemption.provider;

        // 1. The accepted algorithms come from configuration, never from discovery.
        let allowed = allowed_algorithms(&provider.id_token_signing_algs)?;

        // 2. Discovery and the signing keys, before the code is spent: a failure here can
        //    be retried with the same code.
        let endpoints = self
            .discovery
            .endpoints(&provider.issuer, now)
            .await
            .map_err(Rejection::before_code_sent)?;
        let keys = self
            .keys
            .current(&endpoints.jwks_uri, now)
            .await
            .map_err(Rejection::before_code_sent)?;

        // 3. Token request: the code with its PKCE verifier, authenticated as the client.
        let request = TokenRequest {
            endpoint: &endpoints.token_endpoint,
            client_id: &provider.client_id,
            client_secret: redemption.client_secret,
            auth_method: provider.token_auth_method,
            code: redemption.code,
            redirect_uri: redemption.redirect_uri,
            pkce_verifier: redemption.pkce_verifier,
        };
        let id_token =
            request_id_token(&self.http, &request, self.limits.max_token_response_bytes).await?;

        // 4. A signed compact JWS, with an algorithm that is configured (RFC 8725 §3.1).
        let jws = claims::split(&id_token)?;
        let alg = allowed
            .iter()
            .find(|(name, _)| *name == jws.header.alg)
            .map(|(_, alg)| alg.clone())
            .ok_or_else(|| {
                Rejection::new(
                    ReasonCode::AlgorithmNotAllowed,
                    format!(
                        "the ID token is signed with {:?}; provider {} accepts {:?} (id_token_signing_algs)",
                        quote_untrusted(&jws.header.alg, 20),
                        provider.name,
                        provider.id_token_signing_algs
                    ),
                )
            })?;

        // 5. The key: by kid, fetching the JWKS again once when the kid is unknown.
        let key = self
            .select_key(&endpoints.jwks_uri, keys, &jws.header, now)
            .await?;

        // 6. The signature, checked by openidconnect with that key.
        verify_signature(&key, &alg, &jws)?;

        // 7. Only now are the claims read, each with its exact type.
        let claims = claims::parse_claims(jws.payload)?;

        // 8. iss, aud and azp, exp, nbf and iat, nonce.
        claims::check_issuer(&claims, &provider.issuer)?;
        claims::check_audience(&claims, &provider.client_id)?;
        claims::check_validity(&claims, now, self.clock_skew)?;
        claims::check_nonce(&claims, redemption.nonce)?;

        // 9. openidconnect verifies the whole token again with the algorithm pinned. It
        //    should agree with the steps above; if it does not, the token is refused.
        library_check(&id_token, provider, &key, alg, redemption.nonce, now)?;

        // 10. Strength: acr for RFC 9470 providers, acrs for Entra authentication contexts.
        check_strength(
            provider.kind,
            redemption.requirement,
            claims.acr.as_deref(),
            &claims.acrs,
        )?;

        // 11. Freshness: the approver authenticated during this challenge.
        check_auth_time(
            claims.auth_time,
            redemption.challenge_created_at,
            now,
            self.clock_skew,
        )?;

        // 12. Evidence for the audit log, and the claims that bind the user to the approver.
        Ok(verified(provider, claims, &id_token, redemption.nonce, now))
    }

    async fn select_key(
        &self,
        jwks_uri: &Url,
        mut keys: Arc<KeySet>,
        header: &Header,
        now: DateTime<Utc>,
    ) -> Result<PublishedKey, Rejection> {
        let kid = header.kid.as_deref();
        let quoted_kid = kid.map(|kid| quote_untrusted(kid, 64));
        let mut refreshed = false;
        loop {
            match keys.select(kid, &header.alg) {
                Selection::Found(key) => return Ok(key.clone()),
                Selection::UnknownKid if !refreshed => {
                    // Key rotation: the provider may publish a key we have not seen yet.
                    keys = self.keys.refresh(jwks_uri, now, &keys).await?;
                    refreshed = true;
                }
                Selection::UnknownKid => {
                    return Err(Rejection::new(
                        ReasonCode::KeyNotFound,
                        format!(
                            "no key with kid {quoted_kid:?} in the JWKS at {jwks_uri}, also after fetching it again (refreshes are at most one per {}s)",
                            self.limits.jwks_min_refresh_interval.num_seconds()
                        ),
                    ));
                }
                Selection::KidRequired { keys } => {
                    return Err(Rejection::new(
                        ReasonCode::KeyIdMissing,
                        format!(
                            "the ID token has no kid and the JWKS at {jwks_uri} has {keys} keys"
                        ),
                    ));
                }
                Selection::NoUsableKey { detail } => {
                    return Err(Rejection::new(
                        ReasonCode::KeyNotFound,
                        format!("{detail} (JWKS at {jwks_uri})"),
                    ));
                }
            }
        }
    }
}

/// Maps the configured algorithm names; an unknown or symmetric name is a configuration
/// error, never a reason to accept anything.
fn allowed_algorithms(names: &[String]) -> Result<Vec<(&str, CoreJwsSigningAlgorithm)>, Rejection> {
    if names.is_empty() {
        return Err(Rejection::new(
            ReasonCode::AlgorithmNotAllowed,
            "id_token_signing_algs is empty: configure RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
        ));
    }
    names
        .iter()
        .map(|name| {
            signing_algorithm(name)
                .map(|alg| (name.as_str(), alg))
                .ok_or_else(|| {
                    Rejection::new(
                        ReasonCode::AlgorithmNotAllowed,
                        format!("configured ID token signing algorithm {name:?} is not supported: use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA (symmetric algorithms are never accepted)"),
                    )
                })
        })
        .collect()
}

fn verify_signature(
    key: &PublishedKey,
    alg: &CoreJwsSigningAlgorithm,
    jws: &CompactJws<'_>,
) -> Result<(), Rejection> {
    key.jwk()
        .verify_signature(alg, jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|error| {
            let reason = match error {
                SignatureVerificationError::InvalidKey(_) => ReasonCode::KeyNotFound,
                _ => ReasonCode::SignatureInvalid,
            };
            Rejection::new(
                reason,
                format!(
                    "the ID token's signature does not verify with key {:?}: {error}",
                    key.kid
                ),
            )
        })
}

/// Runs `openidconnect`'s ID token verifier with the selected key alone, the pinned
/// algorithm, the configured issuer and client id, and the challenge's nonce.
fn library_check(
    id_token: &str,
    provider: &ProviderSettings,
    key: &PublishedKey,
    alg: CoreJwsSigningAlgorithm,
    nonce: &str,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let disagree = |error: String| {
        Rejection::new(
            ReasonCode::IdTokenInvalid,
            format!(
                "openidconnect rejected an ID token that passed the verifier's own checks: {error}"
            ),
        )
    };
    let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|e| disagree(e.to_string()))?;
    let token = CoreIdToken::from_str(id_token).map_err(|error| {
        Rejection::new(
            ReasonCode::MalformedClaim,
            format!("the ID token's claims do not parse as OpenID Connect claims: {error}"),
        )
    })?;

    // Extra audiences were accepted in step 8 only with azp naming this client.
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(provider.client_id.clone()),
        issuer,
        CoreJsonWebKeySet::new(vec![key.jwk().clone()]),
    )
    .set_allowed_algs([alg])
    .set_other_audience_verifier_fn(|_| true)
    .set_time_fn(move || now);
    token
        .claims(&verifier, &Nonce::new(nonce.to_owned()))
        .map(|_| ())
        .map_err(|error| disagree(error.to_string()))
}

fn verified(
    provider: &ProviderSettings,
    claims: Claims,
    id_token: &str,
    nonce: &str,
    now: DateTime<Utc>,
) -> Verified {
    let issuer = claims.iss.unwrap_or_default();
    let evidence = Evidence {
        provider: provider.name.clone(),
        issuer: issuer.clone(),
        subject: claims.sub.clone(),
        acr: claims.acr,
        amr: claims.amr,
        auth_time: claims.auth_time,
        acrs: claims.acrs,
        id_token_sha256: hex_sha256(id_token.as_bytes()),
        verified_at: now,
    };
    let subject = SubjectClaims {
        issuer,
        subject: claims.sub,
        email: claims.email,
        email_verified: claims.email_verified,
        preferred_username: claims.preferred_username,
        oid: claims.oid,
        tid: claims.tid,
    };
    Verified {
        claims: subject,
        evidence,
        nonce_sha256: hex_sha256(nonce.as_bytes()),
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
            ReasonCode::IssuedInFuture,
            format!("auth_time {auth_time} is in the future (now {now}, skew {skew})"),
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
mod hostile;
#[cfg(test)]
mod tests;
