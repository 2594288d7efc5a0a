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

use crate::binding::check_approver;
use crate::outbox::OutboxEvent;
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
    let decision = decide(&approval, &service.registry.catalog());
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
            service.store.enqueue(&OutboxEvent::new(id, &data)?).await?;
            service.outbox.wake();
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
            service.store.enqueue(&OutboxEvent::new(id, &data)?).await?;
            service.outbox.wake();
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

    // 2. Store it with its stepup.required event, which tells the other system where to
    //    send the approver. A redelivered approval event finds the challenge it created
    //    before and writes nothing: that challenge's event is already in the outbox.
    let required = service.required_event(&new)?;
    if !service.store.insert(&new, &required).await? {
        tracing::debug!(approval.id = %new.approval_id, event.id = %event_id, "approval event already has its challenge");
        return Ok(());
    }
    service.outbox.wake();
    tracing::info!(
        challenge.id = %new.id,
        approval.id = %new.approval_id,
        step = %new.step_id,
        approver = %new.approver.id,
        provider = %new.provider,
        decision = "step_up_required",
        "challenge issued"
    );
    stepup_telemetry::metrics::challenge_issued(&new.provider);
    Ok(())
}

/// Completes a challenge when the verified authentication belongs to it: the challenge is
/// verifying, not expired, the nonce is its own and the user is its approver.
async fn on_auth_verified(service: &Service, verified: AuthVerified) -> Result<(), crate::Error> {
    let Some(challenge) = service.store.get(&verified.challenge_id).await? else {
        tracing::warn!(challenge.id = %verified.challenge_id, "verified event for an unknown challenge ignored");
        return Ok(());
    };

    // 1. A final challenge never changes again; a repeated event changes nothing. Its
    //    outcome event was written with the change and is published by the outbox.
    if challenge.status == ChallengeStatus::Expired {
        reject_after_expiry(&challenge);
        return Ok(());
    }
    if challenge.status.is_final() {
        tracing::info!(challenge.id = %challenge.id, status = challenge.status.as_str(), "verified event for a finished challenge ignored");
        return Ok(());
    }

    // 2. Expiry, nonce and approver binding, each failing closed with its own reason. A
    //    verification that arrives after expiry expires the challenge, which publishes
    //    stepup.challenge.expired, and never completes it.
    let failure = if service.expire_if_overdue(&challenge).await? {
        reject_after_expiry(&challenge);
        return Ok(());
    } else if challenge.status != ChallengeStatus::Verifying {
        Some(ReasonCode::StateInvalid)
    } else if !constant_time_eq(&verified.nonce_sha256, &sha256_hex(&challenge.nonce)) {
        Some(ReasonCode::NonceMismatch)
    } else {
        binds_to_approver(service, &challenge, &verified).err()
    };
    if let Some(reason) = failure {
        return fail(service, &challenge, reason, reason.message()).await;
    }

    // 3. Satisfy it, at most once: the conditional update lets one event win, and only
    //    the winner writes stepup.approval.completed.
    let completed = service.completed_event(&challenge, verified.evidence.clone())?;
    if service
        .store
        .satisfy(&challenge.id, &verified.evidence, &completed)
        .await?
    {
        service.outbox.wake();
        tracing::info!(
            challenge.id = %challenge.id,
            approval.id = %challenge.approval_id,
            step = %challenge.step_id,
            approver = %challenge.approver.id,
            provider = %challenge.provider,
            acr = verified.evidence.acr.as_deref().unwrap_or(""),
            decision = "completed",
            "challenge satisfied"
        );
        stepup_telemetry::metrics::challenge_completed(&challenge.provider);
        let elapsed = (service.now() - challenge.created_at)
            .to_std()
            .unwrap_or_default();
        stepup_telemetry::metrics::record_time_to_completion(&challenge.provider, elapsed);
        let passed = crate::admin::provider_test::TestOutcome::Passed(&verified.evidence);
        crate::admin::provider_test::finished(service, &challenge, passed).await?;
    }
    Ok(())
}

fn reject_after_expiry(challenge: &crate::store::Challenge) {
    tracing::info!(
        challenge.id = %challenge.id,
        approval.id = %challenge.approval_id,
        approver = %challenge.approver.id,
        provider = %challenge.provider,
        decision = "rejected",
        reason = %ReasonCode::Expired,
        "verification arrived after the challenge expired"
    );
}

fn binds_to_approver(
    service: &Service,
    challenge: &crate::store::Challenge,
    verified: &AuthVerified,
) -> Result<(), ReasonCode> {
    let Some(provider) = service.provider(&challenge.provider) else {
        return Err(ReasonCode::SubjectMismatch);
    };
    if verified.claims.issuer != provider.issuer {
        return Err(ReasonCode::SubjectMismatch);
    }
    check_approver(provider.binding, &verified.claims, &challenge.approver)
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
    let failed = service.failed_event(challenge, reason, message)?;
    if service
        .store
        .fail(&challenge.id, reason, message, &failed)
        .await?
    {
        service.outbox.wake();
        tracing::info!(
            challenge.id = %challenge.id,
            approval.id = %challenge.approval_id,
            step = %challenge.step_id,
            approver = %challenge.approver.id,
            provider = %challenge.provider,
            decision = "failed",
            reason = %reason,
            "challenge failed"
        );
        stepup_telemetry::metrics::challenge_failed(&challenge.provider, reason.as_str());
        let failed = crate::admin::provider_test::TestOutcome::Failed { reason, message };
        crate::admin::provider_test::finished(service, challenge, failed).await?;
    }
    Ok(())
}
