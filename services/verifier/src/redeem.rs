//! Handling of `stepup.auth.code_received`: fetch the code, redeem it, publish the verdict.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use stepup_bus::Bus;
use stepup_bus::consumer::{Delivery, Outcome, retry_delay};
use stepup_bus::rpc::{self, RequestError};
use stepup_events::data::SubjectClaims;
use stepup_events::data::{AuthCodeReceived, AuthRejected, AuthVerified};
use stepup_events::envelope::derived_event_id;
use stepup_events::rpc::{RedemptionReply, RedemptionRequest, fault};
use stepup_events::{ReasonCode, subject};
use stepup_oidc::provider::{ClientSecret, ProviderKind, ProviderSettings};
use stepup_oidc::verify::{Redemption, Rejection, TokenVerifier};
use stepup_registry::record::PROVIDER_TEST_APPROVAL_PREFIX;
use stepup_registry::{ProviderRecord, Registry};

use crate::config::Config;

/// The verifier's shared state.
#[derive(Debug)]
pub struct Verifier {
    pub bus: Bus,
    pub tokens: TokenVerifier,
    /// The live view of the provider store.
    pub registry: Registry,
    pub config: Config,
}

impl Verifier {
    pub async fn handle(&self, delivery: Delivery) -> Outcome {
        let received = match delivery.envelope.data::<AuthCodeReceived>() {
            Ok(received) => received,
            Err(error) => {
                return Outcome::Poison {
                    error: error.to_string(),
                };
            }
        };

        // 1. Fetch the code and PKCE verifier; only a verifying challenge hands them out.
        let request = RedemptionRequest {
            challenge_id: received.challenge_id.clone(),
        };
        let timeout = Duration::from_millis(self.config.rpc_timeout_ms);
        let redemption: RedemptionReply = match rpc::request(
            &self.bus,
            subject::RPC_CHALLENGE_REDEMPTION,
            &request,
            timeout,
        )
        .await
        {
            Ok(reply) => reply,
            Err(RequestError::Fault(fault))
                if fault.code == fault::NOT_REDEEMABLE || fault.code == fault::NOT_FOUND =>
            {
                tracing::info!(challenge.id = %received.challenge_id, reason = %fault.code, "nothing to redeem; the challenge has moved on");
                return Outcome::Done;
            }
            Err(error) => {
                return Outcome::Retry {
                    error: error.to_string(),
                };
            }
        };

        // 2. Redeem and validate.
        let verdict = self.verify(&redemption).await;

        // 3. An IdP that could not be reached before the code was sent is retried while a
        //    delivery remains and the next attempt can finish before the challenge
        //    expires. After that the rejection is published, so the approval fails with
        //    idp_unavailable instead of expiring without a reason. Once the code is spent
        //    a retry could only fail with invalid_grant, so every other verdict is
        //    published once.
        let verdict = match verdict {
            Err(rejection) if rejection.transient => {
                let retry = self.retry_window(delivery.delivered, redemption.expires_at);
                if retry.fits(chrono::Utc::now()) {
                    tracing::warn!(challenge.id = %redemption.challenge_id, provider = %redemption.provider, delivered = delivery.delivered, retry_in_ms = retry.delay.as_millis(), detail = %rejection.detail, "identity provider unavailable; retrying");
                    return Outcome::Retry {
                        error: rejection.detail,
                    };
                }
                Err(give_up(rejection, &retry, delivery.delivered))
            }
            other => other,
        };
        match self.publish(&redemption, verdict).await {
            Ok(()) => Outcome::Done,
            Err(error) => Outcome::Retry {
                error: error.to_string(),
            },
        }
    }

    /// Returns when the next delivery of a failed redemption would be attempted and how
    /// long that attempt may take.
    fn retry_window(&self, delivered: i64, expires_at: DateTime<Utc>) -> RetryWindow {
        let settings = &self.config.consumer;
        // One attempt is the redemption request to the challenge service, then discovery,
        // JWKS and token request at the IdP, each bounded by its own timeout.
        let attempt_ms = self
            .config
            .rpc_timeout_ms
            .saturating_add(self.config.idp_timeout_ms.saturating_mul(3));
        RetryWindow {
            deliveries_left: delivered < settings.max_deliver,
            delay: retry_delay(settings, delivered),
            attempt: Duration::from_millis(attempt_ms),
            expires_at,
        }
    }

    async fn verify(
        &self,
        redemption: &RedemptionReply,
    ) -> Result<stepup_oidc::verify::Verified, Rejection> {
        // 1. The provider as the store has it now. Only tests may use a disabled one.
        let record = self.current_provider(redemption)?;

        // 2. The client secret: decrypted, read from its reference, or from this file.
        let client_secret = self
            .registry
            .resolve_secret(&record, &self.config.providers)
            .map_err(|error| Rejection::new(ReasonCode::TokenExchangeFailed, error.to_string()))?;
        let provider = record.settings(ClientSecret::new(client_secret.clone()));

        // 3. Redeem the code and check the ID token against the requirement.
        let input = Redemption {
            provider: &provider,
            client_secret: &client_secret,
            code: &redemption.code,
            pkce_verifier: &redemption.pkce_verifier,
            nonce: &redemption.nonce,
            redirect_uri: &redemption.redirect_uri,
            requirement: &redemption.requirement,
            challenge_created_at: redemption.created_at,
        };
        let verified = self.tokens.redeem(&input, chrono::Utc::now()).await?;

        // 4. Entra: the token must come from the provider's own tenant.
        check_tenant(&provider, &verified.claims)?;
        Ok(verified)
    }

    fn current_provider(&self, redemption: &RedemptionReply) -> Result<ProviderRecord, Rejection> {
        let unknown = |detail: String| Rejection::new(ReasonCode::ProviderUnknown, detail);
        let record = self.registry.provider(&redemption.provider).ok_or_else(|| {
            unknown(format!(
                "provider {} is not in the provider store: it was deleted after the challenge was issued",
                redemption.provider
            ))
        })?;
        let is_test = redemption
            .approval_id
            .starts_with(PROVIDER_TEST_APPROVAL_PREFIX);
        if !record.enabled && !is_test {
            return Err(unknown(format!(
                "provider {} was disabled after the challenge was issued",
                redemption.provider
            )));
        }
        Ok(record)
    }

    async fn publish(
        &self,
        redemption: &RedemptionReply,
        verdict: Result<stepup_oidc::verify::Verified, Rejection>,
    ) -> Result<(), stepup_bus::PublishError> {
        match verdict {
            Ok(verified) => {
                tracing::info!(
                    challenge.id = %redemption.challenge_id,
                    approval.id = %redemption.approval_id,
                    approver = %redemption.approver.id,
                    provider = %redemption.provider,
                    acr = verified.evidence.acr.as_deref().unwrap_or(""),
                    decision = "verified",
                    "authentication verified"
                );
                let data = AuthVerified {
                    approval_id: redemption.approval_id.clone(),
                    challenge_id: redemption.challenge_id.clone(),
                    provider: redemption.provider.clone(),
                    nonce_sha256: verified.nonce_sha256,
                    claims: verified.claims,
                    evidence: verified.evidence,
                };
                let id = derived_event_id(&[subject::AUTH_VERIFIED, &redemption.challenge_id]);
                self.bus.publish_with_id(id, &data).await?;
            }
            Err(rejection) => {
                tracing::info!(
                    challenge.id = %redemption.challenge_id,
                    approval.id = %redemption.approval_id,
                    approver = %redemption.approver.id,
                    provider = %redemption.provider,
                    decision = "rejected",
                    reason = %rejection.reason,
                    detail = %rejection.detail,
                    "authentication rejected"
                );
                let data = AuthRejected {
                    approval_id: redemption.approval_id.clone(),
                    challenge_id: redemption.challenge_id.clone(),
                    provider: redemption.provider.clone(),
                    reason_code: rejection.reason,
                    message: rejection.reason.message().to_owned(),
                    detail: Some(rejection.detail),
                };
                let id = derived_event_id(&[subject::AUTH_REJECTED, &redemption.challenge_id]);
                self.bus.publish_with_id(id, &data).await?;
            }
        }
        Ok(())
    }
}

/// The inputs that decide whether a transient failure gets another delivery.
#[derive(Debug, Clone, Copy)]
struct RetryWindow {
    /// Whether the consumer would deliver the event again.
    deliveries_left: bool,
    /// The consumer's backoff before the next delivery.
    delay: Duration,
    /// The maximum duration of one redemption attempt.
    attempt: Duration,
    expires_at: DateTime<Utc>,
}

impl RetryWindow {
    /// Returns whether a delivery remains and the attempt after the backoff ends before
    /// the challenge expires, seen at `now`.
    fn fits(&self, now: DateTime<Utc>) -> bool {
        let needed =
            TimeDelta::from_std(self.delay.saturating_add(self.attempt)).unwrap_or(TimeDelta::MAX);
        let finished = now.checked_add_signed(needed);
        self.deliveries_left && finished.is_some_and(|finished| finished < self.expires_at)
    }
}

/// Turns the last transient rejection into the final one, saying why retrying stopped.
fn give_up(mut rejection: Rejection, retry: &RetryWindow, delivered: i64) -> Rejection {
    let why = if retry.deliveries_left {
        format!(
            "another attempt after the {} ms backoff could not finish before the challenge expires at {}",
            retry.delay.as_millis(),
            retry.expires_at.to_rfc3339()
        )
    } else {
        "the consumer's max_deliver is reached".to_owned()
    };
    rejection.detail = format!(
        "{}; gave up after {delivered} attempts: {why}",
        rejection.detail
    );
    rejection.transient = false;
    rejection
}

/// Checks that an Entra ID token's `tid` is the tenant in the provider's issuer. The exact
/// issuer match already implies it for single-tenant issuers, and this check also applies
/// when a token's `iss` and `tid` disagree.
fn check_tenant(provider: &ProviderSettings, claims: &SubjectClaims) -> Result<(), Rejection> {
    if provider.kind != ProviderKind::Entra {
        return Ok(());
    }
    let tenant = provider.entra_tenant().unwrap_or_default();
    match claims.tid.as_deref() {
        Some(tid) if !tenant.is_empty() && tid.eq_ignore_ascii_case(&tenant) => Ok(()),
        Some(tid) => Err(Rejection::new(
            ReasonCode::IdTokenInvalid,
            format!(
                "the ID token's tid {tid:?} is not the tenant {tenant:?} of issuer {}: sign in with an account of that tenant",
                provider.issuer
            ),
        )),
        None => Err(Rejection::new(
            ReasonCode::IdTokenInvalid,
            format!(
                "the ID token has no tid claim, which Entra always sends: check that the issuer {} is an Entra v2.0 endpoint",
                provider.issuer
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra() -> ProviderSettings {
        serde_json::from_value(serde_json::json!({
            "name": "entra",
            "kind": "entra",
            "issuer": "https://login.microsoftonline.com/5f1a0c3e-aaaa-4000-8000-000000000001/v2.0",
            "client_id": "c",
            "client_secret": "s"
        }))
        .expect("test settings")
    }

    fn claims(tid: Option<&str>) -> SubjectClaims {
        SubjectClaims {
            tid: tid.map(str::to_owned),
            ..SubjectClaims::default()
        }
    }

    fn window(deliveries_left: bool, expires_in_secs: i64, now: DateTime<Utc>) -> RetryWindow {
        RetryWindow {
            deliveries_left,
            delay: Duration::from_secs(1),
            attempt: Duration::from_secs(4),
            expires_at: now + TimeDelta::seconds(expires_in_secs),
        }
    }

    #[test]
    fn retry_fits_when_attempt_ends_before_expiry() {
        let now = Utc::now();
        assert!(window(true, 6, now).fits(now));
    }

    #[test]
    fn retry_rejected_when_attempt_would_end_after_expiry() {
        let now = Utc::now();
        assert!(!window(true, 5, now).fits(now));
        assert!(!window(true, -1, now).fits(now));
    }

    #[test]
    fn retry_rejected_when_deliveries_run_out() {
        let now = Utc::now();
        assert!(!window(false, 600, now).fits(now));
    }

    #[test]
    fn give_up_is_final_and_says_why() {
        let now = Utc::now();
        let transient = Rejection {
            transient: true,
            ..Rejection::new(ReasonCode::IdpUnavailable, "JWKS: HTTP 503")
        };
        let rejection = give_up(transient, &window(true, 3, now), 4);
        assert_eq!(rejection.reason, ReasonCode::IdpUnavailable);
        assert!(!rejection.transient);
        assert!(
            rejection
                .detail
                .starts_with("JWKS: HTTP 503; gave up after 4 attempts")
        );
        assert!(rejection.detail.contains("before the challenge expires"));
    }

    #[test]
    fn entra_token_of_own_tenant_passes() {
        let tid = Some("5F1A0C3E-AAAA-4000-8000-000000000001");
        assert!(check_tenant(&entra(), &claims(tid)).is_ok());
    }

    #[test]
    fn entra_token_of_other_tenant_is_rejected() {
        let result = check_tenant(
            &entra(),
            &claims(Some("00000000-0000-0000-0000-000000000000")),
        );
        assert_eq!(
            result.map_err(|r| r.reason),
            Err(ReasonCode::IdTokenInvalid)
        );
    }

    #[test]
    fn entra_token_without_tid_is_rejected() {
        let result = check_tenant(&entra(), &claims(None));
        assert_eq!(
            result.map_err(|r| r.reason),
            Err(ReasonCode::IdTokenInvalid)
        );
    }
}
