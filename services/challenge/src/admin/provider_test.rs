//! Provider tests: a real step-up flow whose target is a test instead of an approval.
//!
//! `POST /admin/providers/{name}/test` issues an ordinary challenge under the reserved
//! policy id [`PROVIDER_TEST_POLICY`] and an approval id with the prefix
//! [`PROVIDER_TEST_APPROVAL_PREFIX`], and returns its step-up link. The tester opens it and
//! signs in; the callback, the verifier and the challenge checks run exactly as for an
//! approval. When the challenge ends, [`finished`] publishes `stepup.provider.tested` with
//! what was requested and what came back, and a pass records the provider's last tested
//! time. Because the flow is the normal one, the test challenge's `stepup.required` and
//! outcome events are published too; other systems ignore approval ids they never sent.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use stepup_events::ReasonCode;
use stepup_events::data::{Approver, Evidence, Requirement};
use stepup_events::envelope::derived_event_id;
use stepup_oidc::provider::{ApproverBinding, FieldProblem};
use stepup_registry::record::{PROVIDER_TEST_APPROVAL_PREFIX, PROVIDER_TEST_POLICY};
use stepup_registry::tested::ProviderTested;

use super::AdminState;
use super::error::ApiError;
use super::input::{TestInput, parse_body};
use crate::outbox::OutboxEvent;
use crate::secrets::{random_token, sha256_hex};
use crate::service::Service;
use crate::store::{Challenge, NewChallenge};

/// The reply to a test request: where the tester goes, and until when.
#[derive(Debug, Serialize)]
pub struct TestStarted {
    pub test_id: String,
    pub provider: String,
    pub approval_id: String,
    /// The step-up link; open it in a browser and sign in as the tester.
    pub url: String,
    pub requested: Requirement,
    pub expires_at: DateTime<Utc>,
}

/// How a test challenge ended.
#[derive(Debug)]
pub enum TestOutcome<'a> {
    Passed(&'a Evidence),
    Failed {
        reason: ReasonCode,
        message: &'a str,
    },
}

/// Issues a test challenge for provider `name` and returns its link.
pub async fn start(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<TestStarted>), ApiError> {
    let service = &state.service;
    let record = service.registry.provider(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "provider {name} not found: list the providers with GET /admin/providers"
        ))
    })?;
    let input: TestInput = parse_body(&body, true)?;
    let approver = tester(&input, record.binding).map_err(ApiError::Invalid)?;

    let new = test_challenge(service, &name, record.requirement(None, None), approver);
    let required = service.required_event(&new).map_err(ApiError::internal)?;
    service
        .store
        .insert(&new, &required)
        .await
        .map_err(ApiError::internal)?;
    service.outbox.wake();
    tracing::info!(challenge.id = %new.id, approval.id = %new.approval_id, provider = %name, decision = "test_started", "provider test issued");

    Ok((
        StatusCode::CREATED,
        Json(TestStarted {
            test_id: new.id.clone(),
            provider: name,
            url: service.step_up_url(&new.id),
            approval_id: new.approval_id,
            requested: new.requirement,
            expires_at: new.expires_at,
        }),
    ))
}

/// Returns the tester as the challenge's approver. The binding decides which identifier the
/// request must carry, because the test checks it like any approval.
fn tester(input: &TestInput, binding: ApproverBinding) -> Result<Approver, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let email = input.approver_email.clone().unwrap_or_default();
    if email.trim().is_empty() {
        problems.push(FieldProblem::new(
            "approver_email",
            "missing_field",
            "approver_email is missing: give the tester's email, which is sent as login_hint and matched by the email binding",
        ));
    }
    let needs_subject = matches!(binding, ApproverBinding::Sub | ApproverBinding::Oid);
    let subject = input
        .approver_idp_subject
        .clone()
        .filter(|s| !s.trim().is_empty());
    if needs_subject && subject.is_none() {
        problems.push(FieldProblem::new(
            "approver_idp_subject",
            "missing_field",
            "the provider binds approvers by sub or oid: give the tester's subject (for Entra, the user's object id) as approver_idp_subject",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Approver {
        id: "provider-tester".into(),
        email,
        idp_subject: subject,
    })
}

fn test_challenge(
    service: &Service,
    provider: &str,
    requirement: Requirement,
    approver: Approver,
) -> NewChallenge {
    let id = uuid::Uuid::now_v7().to_string();
    let state = random_token();
    let created_at = service.now();
    let ttl = TimeDelta::seconds(i64::try_from(service.config.challenge_ttl_secs).unwrap_or(600));
    NewChallenge {
        request_event_id: format!("provider-test:{id}"),
        approval_id: format!("{PROVIDER_TEST_APPROVAL_PREFIX}{id}"),
        policy_id: PROVIDER_TEST_POLICY.to_owned(),
        step_id: provider.to_owned(),
        provider: provider.to_owned(),
        requirement,
        approver,
        requester_id: None,
        resource: None,
        return_url: None,
        state_sha256: sha256_hex(&state),
        state,
        nonce: random_token(),
        pkce_verifier: random_token(),
        traceparent: stepup_telemetry::current_trace_headers().remove("traceparent"),
        created_at,
        expires_at: created_at + ttl,
        id,
    }
}

/// Returns whether `challenge` is a provider test.
pub fn is_test(challenge: &Challenge) -> bool {
    challenge
        .approval_id
        .starts_with(PROVIDER_TEST_APPROVAL_PREFIX)
}

/// Reports a finished test challenge: publishes `stepup.provider.tested` through the outbox
/// and, on a pass, records the provider's last tested time. Does nothing for approvals.
pub async fn finished(
    service: &Service,
    challenge: &Challenge,
    outcome: TestOutcome<'_>,
) -> Result<(), crate::Error> {
    if !is_test(challenge) {
        return Ok(());
    }
    let now = service.now();
    let report = match outcome {
        TestOutcome::Passed(evidence) => ProviderTested::passed(
            &challenge.provider,
            &challenge.id,
            &challenge.requirement,
            evidence,
            now,
        ),
        TestOutcome::Failed { reason, message } => ProviderTested::failed(
            &challenge.provider,
            &challenge.id,
            &challenge.requirement,
            reason,
            message,
            None,
            now,
        ),
    };
    let id = derived_event_id(&["stepup.provider.tested", &challenge.id]);
    service
        .store
        .enqueue(&OutboxEvent::new(id, &report)?)
        .await?;
    service.outbox.wake();

    tracing::info!(
        challenge.id = %challenge.id,
        provider = %challenge.provider,
        decision = if report.passed { "test_passed" } else { "test_failed" },
        reason = report.failure.as_ref().map_or("", |failure| failure.reason_code.as_str()),
        "provider test finished"
    );
    if report.passed
        && let Err(error) = service
            .registry
            .record_tested(&challenge.provider, now)
            .await
    {
        // The report is out; a missing last tested time is visible and harmless.
        tracing::warn!(provider = %challenge.provider, %error, "recording the provider's last tested time failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_binding_needs_tester_subject() {
        let input = TestInput {
            approver_email: Some("alice@example.com".into()),
            approver_idp_subject: None,
        };
        let problems = tester(&input, ApproverBinding::Oid)
            .err()
            .unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "approver_idp_subject");
        assert!(tester(&input, ApproverBinding::Email).is_ok());
    }

    #[test]
    fn tester_needs_email() {
        let problems = tester(&TestInput::default(), ApproverBinding::Email)
            .err()
            .unwrap_or_default();
        assert_eq!(problems[0].field, "approver_email");
    }
}
