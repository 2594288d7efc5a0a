//! Verified events that must not complete an approval: one that arrives twice, one that
//! arrives after the challenge expired, and one carrying another challenge's nonce.
//!
//! The forged events are published straight on the bus, as a compromised or replaying
//! publisher would; the challenge service alone has to refuse them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod hostile_support;
mod support;

use std::time::Duration;

use hostile_idp::{Defect, Script};
use hostile_support::{HostileSystem, Settings, open_link, wait_for_count};
use stepup_events::data::{AuthVerified, ChallengeFailed};
use stepup_events::{ReasonCode, subject};
use support::TestResult;

/// Time given to the challenge service to handle an event whose only effect is to change
/// nothing, which no event announces.
const SETTLE: Duration = Duration::from_millis(1_500);

/// Runs a valid step-up to completion and returns the verifier's genuine event.
async fn completed_step_up(
    hostile: &HostileSystem,
) -> Result<(String, AuthVerified), hostile_support::BoxError> {
    let (approval, link) = hostile.request_step_up().await?;
    let page = open_link(&link).await?;
    assert!(page.body.contains("Approval complete"), "{}", page.body);
    let system = &hostile.system;
    system
        .wait_for(subject::APPROVAL_COMPLETED, &approval.approval_id)
        .await;
    let verified = system
        .wait_for(subject::AUTH_VERIFIED, &approval.approval_id)
        .await;
    Ok((approval.approval_id, verified.envelope.data()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_event_twice_completes_once() -> TestResult {
    let hostile = HostileSystem::start(Settings::default()).await?;
    let (approval_id, verified) = completed_step_up(&hostile).await?;

    // The same verdict again, twice, each with a new event id so the stream keeps it.
    hostile.system.bus.publish(&verified).await?;
    hostile.system.bus.publish(&verified).await?;
    tokio::time::sleep(SETTLE).await;

    assert_eq!(
        hostile.system.count(subject::AUTH_VERIFIED, &approval_id),
        3,
        "the repeated events reached the bus"
    );
    assert_eq!(
        hostile
            .system
            .count(subject::APPROVAL_COMPLETED, &approval_id),
        1
    );
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_event_after_expiry_completes_nothing() -> TestResult {
    // The provider responds to the token request after the challenge has expired; the
    // verifier waits for it and publishes a genuine verified event, too late.
    let hostile = HostileSystem::start(Settings {
        script: Script::defect(Defect::Slow { seconds: 5 }),
        idp_timeout_ms: 10_000,
        challenge_ttl_secs: Some(3),
    })
    .await?;
    let (approval, link) = hostile.request_step_up().await?;
    let browser = tokio::spawn(async move { open_link(&link).await.map(|page| page.body) });

    let system = &hostile.system;
    let approval_id = approval.approval_id.as_str();
    system
        .wait_for(subject::CHALLENGE_EXPIRED, approval_id)
        .await;
    let late = system.wait_for(subject::AUTH_VERIFIED, approval_id).await;

    // A replay of the late event changes nothing either.
    let data: AuthVerified = late.envelope.data()?;
    system.bus.publish(&data).await?;
    tokio::time::sleep(SETTLE).await;

    assert_eq!(system.count(subject::APPROVAL_COMPLETED, approval_id), 0);
    let body = browser.await??;
    assert!(!body.contains("Approval complete"), "{body}");
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_event_with_another_challenges_nonce_fails() -> TestResult {
    let hostile = HostileSystem::start(Settings {
        idp_timeout_ms: 10_000,
        ..Settings::default()
    })
    .await?;
    let system = &hostile.system;

    // 1. Approval B completes and its genuine verified event carries B's nonce.
    let (_, verified_b) = completed_step_up(&hostile).await?;

    // 2. Approval A waits in `verifying` while its token request is held back.
    hostile
        .idp
        .set_script(Script::defect(Defect::Slow { seconds: 4 }));
    let (approval_a, link) = hostile.request_step_up().await?;
    let browser = tokio::spawn(async move { open_link(&link).await.map(|page| page.body) });
    let approval_a = approval_a.approval_id;
    let code_received = system
        .wait_for(subject::AUTH_CODE_RECEIVED, &approval_a)
        .await;
    let challenge_a = code_received.envelope.data_json().unwrap()["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 3. B's verdict, addressed to A: same user, same provider, B's nonce.
    let forged = AuthVerified {
        approval_id: approval_a.clone(),
        challenge_id: challenge_a,
        ..verified_b
    };
    system.bus.publish(&forged).await?;

    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, &approval_a)
        .await;
    let data: ChallengeFailed = failed.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::NonceMismatch);

    // 4. A's own genuine verdict arrives later and finds the challenge failed.
    wait_for_count(system, subject::AUTH_VERIFIED, &approval_a, 2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(system.count(subject::APPROVAL_COMPLETED, &approval_a), 0);

    let body = browser.await??;
    assert!(!body.contains("Approval complete"), "{body}");
    hostile.stop().await;
    Ok(())
}
