//! The challenge service's shared state and the events it publishes, which go out through
//! the outbox.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use stepup_bus::Bus;
use stepup_events::ReasonCode;
use stepup_events::data::{
    ApprovalCompleted, ChallengeExpired, ChallengeFailed, Evidence, StepUpRequired,
};
use stepup_events::envelope::derived_event_id;
use stepup_oidc::provider::ProviderSettings;

use crate::config::Config;
use crate::outbox::{Outbox, OutboxError, OutboxEvent};
use crate::store::{Challenge, ChallengeStore, NewChallenge};

/// Everything the handlers share.
#[derive(Debug)]
pub struct Service {
    pub bus: Bus,
    pub store: ChallengeStore,
    /// Publishes the events that the store writes with each state change.
    pub outbox: Outbox,
    pub config: Config,
    /// The live view of the provider and policy store.
    pub registry: stepup_registry::Registry,
    /// The current time; tests replace it to move past expiry without sleeping.
    pub clock: fn() -> DateTime<Utc>,
}

pub type SharedService = Arc<Service>;

impl Service {
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The provider named `name` from the store, enabled or not, without its client secret
    /// (only the verifier resolves secrets).
    pub fn provider(&self, name: &str) -> Option<ProviderSettings> {
        self.registry
            .provider(name)
            .map(|record| record.settings(stepup_oidc::provider::ClientSecret::withheld()))
    }

    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/auth/callback",
            self.config.public_url.trim_end_matches('/')
        )
    }

    pub fn step_up_url(&self, challenge_id: &str) -> String {
        format!(
            "{}/stepup/{challenge_id}",
            self.config.public_url.trim_end_matches('/')
        )
    }

    /// Builds `stepup.required` for a new challenge. The id is derived from the challenge,
    /// so the event is the same however often it is built.
    pub fn required_event(&self, challenge: &NewChallenge) -> Result<OutboxEvent, OutboxError> {
        let data = StepUpRequired {
            challenge_id: challenge.id.clone(),
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            step_up_url: self.step_up_url(&challenge.id),
            provider: challenge.provider.clone(),
            requirement: challenge.requirement.clone(),
            expires_at: challenge.expires_at,
        };
        let id = derived_event_id(&["stepup.required", &challenge.id]);
        OutboxEvent::new(id, &data)
    }

    pub fn completed_event(
        &self,
        challenge: &Challenge,
        evidence: Evidence,
    ) -> Result<OutboxEvent, OutboxError> {
        let data = ApprovalCompleted {
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            challenge_id: Some(challenge.id.clone()),
            approver: challenge.approver.clone(),
            evidence: Some(evidence),
        };
        let id = derived_event_id(&["stepup.approval.completed", &challenge.id]);
        OutboxEvent::new(id, &data)
    }

    pub fn failed_event(
        &self,
        challenge: &Challenge,
        reason: ReasonCode,
        message: &str,
    ) -> Result<OutboxEvent, OutboxError> {
        let data = ChallengeFailed {
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            challenge_id: challenge.id.clone(),
            reason_code: reason,
            message: message.to_owned(),
        };
        let id = derived_event_id(&["stepup.challenge.failed", &challenge.id]);
        OutboxEvent::new(id, &data)
    }

    pub fn expired_event(&self, challenge: &Challenge) -> Result<OutboxEvent, OutboxError> {
        let data = ChallengeExpired {
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            challenge_id: challenge.id.clone(),
            expired_at: challenge.expires_at,
        };
        let id = derived_event_id(&["stepup.challenge.expired", &challenge.id]);
        OutboxEvent::new(id, &data)
    }

    /// Expires `challenge` if its time has passed and it is still open, publishing
    /// `stepup.challenge.expired` through the outbox. Returns whether the challenge is
    /// (now) expired.
    pub async fn expire_if_overdue(&self, challenge: &Challenge) -> Result<bool, crate::Error> {
        if challenge.status.is_final() || challenge.expires_at > self.now() {
            return Ok(challenge.status == stepup_events::rpc::ChallengeStatus::Expired);
        }
        let expired = self.expired_event(challenge)?;
        if self.store.expire(&challenge.id, &expired).await? {
            self.outbox.wake();
            tracing::info!(
                challenge.id = %challenge.id,
                approval.id = %challenge.approval_id,
                step = %challenge.step_id,
                approver = %challenge.approver.id,
                provider = %challenge.provider,
                decision = "expired",
                reason = %stepup_events::ReasonCode::Expired,
                "challenge expired"
            );
            stepup_telemetry::metrics::challenge_expired(&challenge.provider);
        }
        Ok(true)
    }
}
