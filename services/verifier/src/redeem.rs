//! Handling of `stepup.auth.code_received`: fetch the code, redeem it, publish the verdict.

use std::time::Duration;

use stepup_bus::Bus;
use stepup_bus::consumer::{Delivery, Outcome};
use stepup_bus::rpc::{self, RequestError};
use stepup_events::data::{AuthCodeReceived, AuthRejected, AuthVerified};
use stepup_events::envelope::derived_event_id;
use stepup_events::rpc::{RedemptionReply, RedemptionRequest, fault};
use stepup_events::{ReasonCode, subject};
use stepup_oidc::verify::{Redemption, Rejection, TokenVerifier};

use crate::config::Config;

/// The verifier's shared state.
#[derive(Debug)]
pub struct Verifier {
    pub bus: Bus,
    pub tokens: TokenVerifier,
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

        // 3. An unreachable IdP is retried while deliveries remain; every other verdict is
        //    published once.
        if let Err(rejection) = &verdict
            && rejection.reason == ReasonCode::IdpUnavailable
            && delivery.delivered < self.config.consumer.max_deliver
        {
            tracing::warn!(challenge.id = %redemption.challenge_id, provider = %redemption.provider, detail = %rejection.detail, "identity provider unavailable; retrying");
            return Outcome::Retry {
                error: rejection.detail.clone(),
            };
        }
        match self.publish(&redemption, verdict).await {
            Ok(()) => Outcome::Done,
            Err(error) => Outcome::Retry {
                error: error.to_string(),
            },
        }
    }

    async fn verify(
        &self,
        redemption: &RedemptionReply,
    ) -> Result<stepup_oidc::verify::Verified, Rejection> {
        let Some(provider) = self
            .config
            .providers
            .iter()
            .find(|p| p.name == redemption.provider)
        else {
            return Err(Rejection {
                reason: ReasonCode::ProviderUnknown,
                detail: format!(
                    "provider {} is not configured in the verifier",
                    redemption.provider
                ),
            });
        };
        let client_secret = provider
            .client_secret
            .resolve(&provider.name)
            .map_err(|error| Rejection {
                reason: ReasonCode::TokenExchangeFailed,
                detail: error.to_string(),
            })?;
        let input = Redemption {
            provider,
            client_secret: &client_secret,
            code: &redemption.code,
            pkce_verifier: &redemption.pkce_verifier,
            nonce: &redemption.nonce,
            redirect_uri: &redemption.redirect_uri,
            requirement: &redemption.requirement,
            challenge_created_at: redemption.created_at,
        };
        self.tokens.redeem(&input, chrono::Utc::now()).await
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
