//! The challenge service's shared state and the publishing of its outcome events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use stepup_bus::{Bus, PublishError};
use stepup_events::ReasonCode;
use stepup_events::data::{
    ApprovalCompleted, ChallengeExpired, ChallengeFailed, Evidence, StepUpRequired,
};
use stepup_events::envelope::derived_event_id;
use stepup_oidc::provider::ProviderSettings;

use crate::config::Config;
use crate::store::{Challenge, ChallengeStore};

/// Everything the handlers share.
#[derive(Debug)]
pub struct Service {
    pub bus: Bus,
    pub store: ChallengeStore,
    pub config: Config,
    /// The current time; tests replace it to move past expiry without sleeping.
    pub clock: fn() -> DateTime<Utc>,
}

pub type SharedService = Arc<Service>;

impl Service {
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        self.config.providers.iter().find(|p| p.name == name)
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

    /// Publishes `stepup.required` for `challenge`. The id is derived from the challenge,
    /// so publishing again after a redelivery is dropped as a duplicate.
    pub async fn publish_required(&self, challenge: &Challenge) -> Result<(), PublishError> {
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
        self.bus.publish_with_id(id, &data).await.map(|_| ())
    }

    pub async fn publish_completed(
        &self,
        challenge: &Challenge,
        evidence: Evidence,
    ) -> Result<(), PublishError> {
        let data = ApprovalCompleted {
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            challenge_id: Some(challenge.id.clone()),
            approver: challenge.approver.clone(),
            evidence: Some(evidence),
        };
        let id = derived_event_id(&["stepup.approval.completed", &challenge.id]);
        self.bus.publish_with_id(id, &data).await.map(|_| ())
    }

    pub async fn publish_failed(
        &self,
        challenge: &Challenge,
        reason: ReasonCode,
        message: &str,
    ) -> Result<(), PublishError> {
        let data = ChallengeFailed {
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            challenge_id: challenge.id.clone(),
            reason_code: reason,
            message: message.to_owned(),
        };
        let id = derived_event_id(&["stepup.challenge.failed", &challenge.id]);
        self.bus.publish_with_id(id, &data).await.map(|_| ())
    }

    pub async fn publish_expired(&self, challenge: &Challenge) -> Result<(), PublishError> {
        let data = ChallengeExpired {
            approval_id: challenge.approval_id.clone(),
            step_id: challenge.step_id.clone(),
            challenge_id: challenge.id.clone(),
            expired_at: challenge.expires_at,
        };
        let id = derived_event_id(&["stepup.challenge.expired", &challenge.id]);
        self.bus.publish_with_id(id, &data).await.map(|_| ())
    }

    /// Expires `challenge` if its time has passed and it is still open, publishing
    /// `stepup.challenge.expired`. Returns whether the challenge is (now) expired.
    pub async fn expire_if_overdue(&self, challenge: &Challenge) -> Result<bool, crate::Error> {
        if challenge.status.is_final() || challenge.expires_at > self.now() {
            return Ok(challenge.status == stepup_events::rpc::ChallengeStatus::Expired);
        }
        if self.store.expire(&challenge.id).await? {
            tracing::info!(
                challenge.id = %challenge.id,
                approval.id = %challenge.approval_id,
                decision = "expired",
                "challenge expired"
            );
            self.publish_expired(challenge).await?;
        }
        Ok(true)
    }
}
