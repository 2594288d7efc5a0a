//! Handlers of the events the challenge service consumes: approvals, and the verifier's
//! verdicts.

use chrono::TimeDelta;
use stepup_bus::consumer::{Delivery, Outcome};
use stepup_events::data::{
    ApprovalCompleted, ApprovalRejected, ApprovalRequested, AuthRejected, AuthVerified,
};
use stepup_events::envelope::derived_event_id;
use stepup_events::rpc::ChallengeStatus;
use stepup_events::{ReasonCode, subject};

use crate::binding::is_approver;
use crate::policy::{Decision, decide};
use crate::secrets::{constant_time_eq, random_token, sha256_hex};
use crate::service::Service;
use crate::store::NewChallenge;

/// Routes one delivery to its handler by event type.
pub async fn handle(service: &Service, delivery: Delivery) -> Outcome {
    let envelope = &delivery.envelope;
    let result = match envelope.event_type() {
        subject::APPROVAL_REQUESTED => match envelope.data::<ApprovalRequested>() {
            Ok(approval) => on_approval_requested(service, envelope.id(), approval).await,
            Err(error) => {
                return Outcome::Poison {
                    error: error.to_string(),
                };
            }
        },
        subject::AUTH_VERIFIED => match envelope.data::<AuthVerified>() {
            Ok(verified) => on_auth_verified(service, verified).await,
            Err(error) => {
                return Outcome::Poison {
                    error: error.to_string(),
                };
            }
        },
        subject::AUTH_REJECTED => match envelope.data::<AuthRejected>() {
            Ok(rejected) => on_auth_rejected(service, rejected).await,
            Err(error) => {
                return Outcome::Poison {
                    error: error.to_string(),
                };
            }
        },
        other => {
            return Outcome::Poison {
                error: format!("the challenge service does not handle events of type {other}"),
            };
        }
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(error) => Outcome::Retry {
            error: error.to_string(),
        },
    }
}

/// Decides the policy for an approval and either completes it, rejects it, or issues a
/// challenge and publishes `stepup.required`.
async fn on_approval_requested(
    service: &Service,
    event_id: &str,
    approval: ApprovalRequested,
) -> Result<(), crate::Error> {
    let decision = decide(
        &approval,
        &service.config.policies,
        &service.config.providers,
    );
    match decision {
        Decision::NoStepUp => {
            tracing::info!(
                approval.id = %approval.approval_id,
                policy = %approval.policy_id,
                step = %approval.step_id,
                approver = %approval.approver.id,
                decision = "completed",
                rule = "policy_requires_no_step_up",
                "approval completed without step-up"
            );
            let data = ApprovalCompleted {
                approval_id: approval.approval_id.clone(),
                step_id: approval.step_id.clone(),
                challenge_id: None,
                approver: approval.approver.clone(),
                evidence: None,
            };
            let id = derived_event_id(&["stepup.approval.completed", event_id]);
            service.bus.publish_with_id(id, &data).await?;
        }
        Decision::Reject(reason) => {
            tracing::info!(
                approval.id = %approval.approval_id,
                policy = %approval.policy_id,
                step = %approval.step_id,
                approver = %approval.approver.id,
                channel = ?approval.channel,
                automated = approval.automated,
                decision = "rejected",
                reason = %reason,
                "approval rejected by policy"
            );
            let data = ApprovalRejected {
                approval_id: approval.approval_id.clone(),
                step_id: approval.step_id.clone(),
                challenge_id: None,
                reason_code: reason,
                message: reason.message().to_owned(),
            };
            let id = derived_event_id(&["stepup.approval.rejected", event_id]);
            service.bus.publish_with_id(id, &data).await?;
        }
        Decision::StepUp {
            provider,
            requirement,
        } => issue_challenge(service, event_id, approval, provider, requirement).await?,
    }
    Ok(())
}

async fn issue_challenge(
    service: &Service,
    event_id: &str,
    approval: ApprovalRequested,
    provider: String,
    requirement: stepup_events::data::Requirement,
) -> Result<(), crate::Error> {
    // 1. Fresh, independent random values for this challenge alone.
    let state = random_token();
    let created_at = service.now();
    let ttl = TimeDelta::seconds(i64::try_from(service.config.challenge_ttl_secs).unwrap_or(600));
    let new = NewChallenge {
        id: uuid::Uuid::now_v7().to_string(),
        request_event_id: event_id.to_owned(),
        approval_id: approval.approval_id.clone(),
        policy_id: approval.policy_id.clone(),
        step_id: approval.step_id.clone(),
        provider,
        requirement,
        approver: approval.approver.clone(),
        requester_id: approval.requester.as_ref().map(|r| r.id.clone()),
        resource: approval.resource.clone(),
        return_url: approval.return_url.clone(),
        state_sha256: sha256_hex(&state),
        state,
        nonce: random_token(),
        pkce_verifier: random_token(),
        traceparent: stepup_telemetry::current_trace_headers().remove("traceparent"),
        created_at,
        expires_at: created_at + ttl,
    };

    // 2. Store it; a redelivered approval event finds the challenge it created before.
    let inserted = service.store.insert(&new).await?;
    let challenge_id = if inserted {
        new.id.clone()
    } else {
        service
            .store
            .get_by_request_event(event_id)
            .await?
            .map(|existing| existing.id)
            .unwrap_or_else(|| new.id.clone())
    };
    let Some(challenge) = service.store.get(&challenge_id).await? else {
        return Err(crate::Error::Inconsistent(format!(
            "challenge {challenge_id} vanished after it was stored"
        )));
    };

    // 3. Tell the other system where to send the approver.
    if inserted {
        tracing::info!(
            challenge.id = %challenge.id,
            approval.id = %challenge.approval_id,
            step = %challenge.step_id,
            approver = %challenge.approver.id,
            provider = %challenge.provider,
            decision = "step_up_required",
            "challenge issued"
        );
    }
    service.publish_required(&challenge).await?;
    Ok(())
}

/// Completes a challenge when the verified authentication belongs to it: the challenge is
/// verifying, not expired, the nonce is its own and the user is its approver.
async fn on_auth_verified(service: &Service, verified: AuthVerified) -> Result<(), crate::Error> {
    let Some(challenge) = service.store.get(&verified.challenge_id).await? else {
        tracing::warn!(challenge.id = %verified.challenge_id, "verified event for an unknown challenge ignored");
        return Ok(());
    };

    // 1. A final challenge never changes again; a repeated event changes nothing.
    if challenge.status.is_final() {
        if let (ChallengeStatus::Satisfied, Some(evidence)) =
            (challenge.status, &challenge.evidence)
        {
            // Publishing the stored completion again is harmless (same event id) and covers
            // a publish that failed after the state change committed.
            service
                .publish_completed(&challenge, evidence.clone())
                .await?;
        }
        tracing::info!(challenge.id = %challenge.id, status = challenge.status.as_str(), "verified event for a finished challenge ignored");
        return Ok(());
    }

    // 2. Expiry, nonce and approver binding, each failing closed with its own reason.
    let failure = if service.expire_if_overdue(&challenge).await? {
        return Ok(());
    } else if challenge.status != ChallengeStatus::Verifying {
        Some(ReasonCode::StateInvalid)
    } else if !constant_time_eq(&verified.nonce_sha256, &sha256_hex(&challenge.nonce)) {
        Some(ReasonCode::NonceMismatch)
    } else if !binds_to_approver(service, &challenge, &verified) {
        Some(ReasonCode::SubjectMismatch)
    } else {
        None
    };
    if let Some(reason) = failure {
        return fail(service, &challenge, reason, reason.message()).await;
    }

    // 3. Satisfy it, at most once: the conditional update lets one event win.
    if service
        .store
        .satisfy(&challenge.id, &verified.evidence)
        .await?
    {
        tracing::info!(
            challenge.id = %challenge.id,
            approval.id = %challenge.approval_id,
            approver = %challenge.approver.id,
            provider = %challenge.provider,
            acr = verified.evidence.acr.as_deref().unwrap_or(""),
            decision = "completed",
            "challenge satisfied"
        );
        service
            .publish_completed(&challenge, verified.evidence)
            .await?;
    }
    Ok(())
}

fn binds_to_approver(
    service: &Service,
    challenge: &crate::store::Challenge,
    verified: &AuthVerified,
) -> bool {
    let Some(provider) = service.provider(&challenge.provider) else {
        return false;
    };
    verified.claims.issuer == provider.issuer
        && is_approver(provider.binding, &verified.claims, &challenge.approver)
}

/// Fails the challenge with the verifier's reason.
async fn on_auth_rejected(service: &Service, rejected: AuthRejected) -> Result<(), crate::Error> {
    let Some(challenge) = service.store.get(&rejected.challenge_id).await? else {
        tracing::warn!(challenge.id = %rejected.challenge_id, "rejected event for an unknown challenge ignored");
        return Ok(());
    };
    if challenge.status.is_final() {
        return Ok(());
    }
    fail(service, &challenge, rejected.reason_code, &rejected.message).await
}

pub async fn fail(
    service: &Service,
    challenge: &crate::store::Challenge,
    reason: ReasonCode,
    message: &str,
) -> Result<(), crate::Error> {
    if service.store.fail(&challenge.id, reason, message).await? {
        tracing::info!(
            challenge.id = %challenge.id,
            approval.id = %challenge.approval_id,
            approver = %challenge.approver.id,
            provider = %challenge.provider,
            decision = "failed",
            reason = %reason,
            "challenge failed"
        );
        service.publish_failed(challenge, reason, message).await?;
    }
    Ok(())
}
