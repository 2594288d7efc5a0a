//! The step-up flow end to end: a real nats-server, the development IdP (oidc-provider)
//! and every service, driven by a cookie-keeping browser that follows the real redirects.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use stepup_events::data::{ApprovalCompleted, ApprovalRejected, ChallengeFailed};
use stepup_events::{ReasonCode, subject};
use support::{
    PLAIN_STEP, STEP_UP_STEP, System, TWO_FACTOR, TestResult, alice, approval, bob, step_up_url,
};
use tracing::Instrument as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_factor_step_up_completes_once() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);

    // The other system publishes inside a trace of its own.
    let span = tracing::info_span!("access-request");
    let trace_id = async {
        system
            .request(&approval)
            .await
            .map(|_| stepup_telemetry::current_trace_id())
    }
    .instrument(span)
    .await?
    .expect("the requesting span has a trace id");

    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;
    let page = system
        .step_up(&step_up_url(&required), &alice(), true)
        .await?;
    assert!(
        page.url.path().ends_with("/auth/callback"),
        "ended at {}",
        page.url
    );
    assert!(
        page.body.contains("Approval complete"),
        "callback page: {}",
        page.body
    );

    let completed = system
        .wait_for(subject::APPROVAL_COMPLETED, &approval.approval_id)
        .await;
    let data: ApprovalCompleted = completed.envelope.data()?;
    let evidence = data
        .evidence
        .expect("a step-up completion carries evidence");
    assert_eq!(evidence.acr.as_deref(), Some(TWO_FACTOR));
    assert_eq!(evidence.amr, vec!["pwd", "otp"]);
    assert_eq!(evidence.subject, "00u1alice");
    assert!(evidence.auth_time.is_some());
    assert_eq!(evidence.id_token_sha256.len(), 64);
    assert_eq!(
        data.challenge_id.as_deref(),
        Some(
            required.envelope.data_json().unwrap()["challenge_id"]
                .as_str()
                .unwrap()
        )
    );

    // One trace from the approval to the completion.
    for event in system.events_for(&approval.approval_id) {
        eprintln!("{} {:?}", event.envelope.event_type(), event.traceparent);
    }
    let traceparent = completed
        .traceparent
        .expect("completion carries traceparent");
    assert!(
        traceparent.contains(&trace_id),
        "{traceparent} is not in trace {trace_id}"
    );

    // Exactly one completion, also after the flow settles.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &approval.approval_id),
        1
    );

    // The audit log holds every event of the flow, in order.
    let expected = [
        subject::APPROVAL_REQUESTED,
        subject::STEPUP_REQUIRED,
        subject::CHALLENGE_STARTED,
        subject::AUTH_CODE_RECEIVED,
        subject::AUTH_VERIFIED,
        subject::APPROVAL_COMPLETED,
    ];
    let audited = system
        .audit_types(&approval.approval_id, expected.len())
        .await;
    assert_eq!(audited, expected);

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_only_fails_acr_check() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    system.request(&approval).await?;

    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;
    let page = system
        .step_up(&step_up_url(&required), &alice(), false)
        .await?;
    assert!(
        page.body.contains(ReasonCode::AcrNotSatisfied.as_str()),
        "callback page: {}",
        page.body
    );

    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, &approval.approval_id)
        .await;
    let data: ChallengeFailed = failed.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::AcrNotSatisfied);
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &approval.approval_id),
        0
    );

    let audited = system.audit_types(&approval.approval_id, 6).await;
    assert!(
        audited.contains(&subject::AUTH_REJECTED.to_owned()),
        "{audited:?}"
    );
    assert!(
        audited.contains(&subject::CHALLENGE_FAILED.to_owned()),
        "{audited:?}"
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_user_fails_subject_binding() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    system.request(&approval).await?;

    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;
    let page = system
        .step_up(&step_up_url(&required), &bob(), true)
        .await?;
    assert!(
        page.body.contains(ReasonCode::SubjectMismatch.as_str()),
        "callback page: {}",
        page.body
    );

    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, &approval.approval_id)
        .await;
    let data: ChallengeFailed = failed.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::SubjectMismatch);
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &approval.approval_id),
        0
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn step_without_step_up_completes_at_once() -> TestResult {
    let system = System::start().await?;
    let approval = approval(PLAIN_STEP);
    system.request(&approval).await?;

    let completed = system
        .wait_for(subject::APPROVAL_COMPLETED, &approval.approval_id)
        .await;
    let data: ApprovalCompleted = completed.envelope.data()?;
    assert_eq!(data.challenge_id, None);
    assert_eq!(data.evidence, None);
    assert_eq!(
        system.count(subject::STEPUP_REQUIRED, &approval.approval_id),
        0
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automated_step_up_approval_is_rejected() -> TestResult {
    let system = System::start().await?;
    let mut approval = approval(STEP_UP_STEP);
    approval.automated = true;
    approval.channel = stepup_events::data::Channel::Automation;
    system.request(&approval).await?;

    let rejected = system
        .wait_for(subject::APPROVAL_REJECTED, &approval.approval_id)
        .await;
    let data: ApprovalRejected = rejected.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::AutomatedApprovalNotAllowed);
    assert!(data.message.contains("cannot be approved automatically"));
    assert_eq!(
        system.count(subject::STEPUP_REQUIRED, &approval.approval_id),
        0
    );
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &approval.approval_id),
        0
    );

    system.stop().await;
    Ok(())
}
