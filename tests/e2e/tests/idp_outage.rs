//! An identity provider that cannot be reached while the verifier redeems a code. The
//! verifier retries within the challenge's lifetime. When the provider stays down, it
//! rejects with `idp_unavailable` before the challenge would expire, so the approver's page
//! names the reason instead of a silent expiry.
//!
//! The outage is the hostile IdP's JWKS endpoint answering HTTP 503. The verifier fetches
//! the keys before it sends the code, so the same code can be redeemed once the provider
//! is back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod hostile_support;
mod support;

use std::time::Duration;

use hostile_idp::{Defect, HostileIdp, Script};
use hostile_support::{BoxError, HostileSystem, assert_rejected, audit_records, open_link};
use stepup_events::data::StepUpRequired;
use stepup_events::{ReasonCode, subject};
use support::{Options, System, TestResult};

/// The verifier's timeout per request to the IdP and to the challenge service, in
/// milliseconds. With them one redemption attempt takes at most 2 s + 3 × 1 s.
const IDP_TIMEOUT_MS: u64 = 1_000;
const RPC_TIMEOUT_MS: u64 = 2_000;

/// Backoff between two deliveries of a failed redemption, in milliseconds.
const BACKOFF_MS: u64 = 500;

/// Starts the system with the hostile IdP running `script`, challenges that live
/// `challenge_ttl_secs`, and a verifier that retries every [`BACKOFF_MS`] with deliveries
/// to spare, so only the challenge's lifetime ends the retries.
async fn start(script: Script, challenge_ttl_secs: u64) -> Result<HostileSystem, BoxError> {
    let idp = HostileIdp::start(script).await?;
    // Other suites add fields to `Options`; their defaults apply here.
    #[allow(clippy::needless_update)]
    let options = Options {
        challenge_ttl_secs: Some(challenge_ttl_secs),
        provider: Some(serde_json::json!({
            "issuer": idp.issuer(),
            "client_id": idp.client_id(),
            "client_secret": idp.client_secret(),
        })),
        verifier: Some(serde_json::json!({
            "idp_timeout_ms": IDP_TIMEOUT_MS,
            "rpc_timeout_ms": RPC_TIMEOUT_MS,
            "consumer": {"max_deliver": 100, "backoff_ms": [BACKOFF_MS]},
        })),
        ..Options::default()
    };
    let system = System::start_with(options).await?;
    Ok(HostileSystem { system, idp })
}

/// Waits until the IdP has served `count` JWKS requests.
async fn wait_for_jwks_requests(idp: &HostileIdp, count: usize) {
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    while idp.requests().jwks < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {count} JWKS requests within {:?}: {:?}",
            support::EVENT_TIMEOUT,
            idp.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brief_idp_outage_completes_once() -> TestResult {
    let hostile = start(Script::defect(Defect::JwksServerError), 60).await?;
    let (approval, link) = hostile.request_step_up().await?;
    let approval_id = approval.approval_id.as_str();
    let browser = tokio::spawn(async move { open_link(&link).await.map(|page| page.body) });

    // 1. The first attempt and two retries find the provider down.
    wait_for_jwks_requests(&hostile.idp, 3).await;
    assert_eq!(hostile.idp.requests().token, 0, "the code was sent");

    // 2. The provider recovers and the next retry redeems the same code.
    hostile.idp.set_script(Script::default());
    let body = browser.await??;
    assert!(body.contains("Approval complete"), "{body}");

    let system = &hostile.system;
    system
        .wait_for(subject::APPROVAL_COMPLETED, approval_id)
        .await;
    assert_eq!(hostile.idp.requests().token, 1);
    assert_eq!(system.count(subject::AUTH_VERIFIED, approval_id), 1);
    assert_eq!(system.count(subject::AUTH_REJECTED, approval_id), 0);
    assert_eq!(system.count(subject::APPROVAL_COMPLETED, approval_id), 1);
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brief_token_endpoint_outage_completes_once() -> TestResult {
    let hostile = start(Script::defect(Defect::TokenServiceUnavailable), 60).await?;
    let (approval, link) = hostile.request_step_up().await?;
    let approval_id = approval.approval_id.as_str();
    let browser = tokio::spawn(async move { open_link(&link).await.map(|page| page.body) });

    // 1. The token endpoint answers 503 to the first attempt and a retry.
    let deadline = tokio::time::Instant::now() + support::EVENT_TIMEOUT;
    while hostile.idp.requests().token < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than 2 token requests"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. It recovers and the next retry redeems the same, still valid, code.
    hostile.idp.set_script(Script::default());
    let body = browser.await??;
    assert!(body.contains("Approval complete"), "{body}");

    let system = &hostile.system;
    system
        .wait_for(subject::APPROVAL_COMPLETED, approval_id)
        .await;
    assert_eq!(system.count(subject::AUTH_REJECTED, approval_id), 0);
    assert_eq!(system.count(subject::APPROVAL_COMPLETED, approval_id), 1);
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lasting_idp_outage_fails_before_expiry() -> TestResult {
    // The approval is retried until about 6.5 s before the 12 s expiry, when the next
    // attempt could no longer finish in time.
    let hostile = start(Script::defect(Defect::JwksServerError), 12).await?;
    let (approval, link) = hostile.request_step_up().await?;
    let approval_id = approval.approval_id.as_str();
    let system = &hostile.system;
    let required: StepUpRequired = system
        .wait_for(subject::STEPUP_REQUIRED, approval_id)
        .await
        .envelope
        .data()?;

    // 1. The page waits for the outcome and shows the reason in plain words.
    let page = open_link(&link).await?;
    assert!(
        page.body.contains(ReasonCode::IdpUnavailable.message()),
        "{}",
        page.body
    );
    assert_rejected(
        system,
        approval_id,
        &page,
        ReasonCode::IdpUnavailable,
        "lasting outage",
    )
    .await;

    // 2. It was retried, never sent the code, and failed before the challenge expired.
    let requests = hostile.idp.requests();
    assert!(requests.jwks >= 2, "no retry: {requests:?}");
    assert_eq!(requests.token, 0, "the code was sent");
    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, approval_id)
        .await;
    let failed_at = failed.envelope.time().expect("the event has a time");
    assert!(
        failed_at < required.expires_at,
        "failed at {failed_at}, after the expiry at {}",
        required.expires_at
    );
    assert_eq!(system.count(subject::CHALLENGE_EXPIRED, approval_id), 0);
    assert_eq!(system.count(subject::AUTH_REJECTED, approval_id), 1);

    // 3. The audit log records the failure, and a reload of the link shows it again.
    let audited = audit_records(system, approval_id, subject::CHALLENGE_FAILED).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(
        audited[0]["reason_code"],
        ReasonCode::IdpUnavailable.as_str()
    );
    let reloaded = open_link(&required.step_up_url).await?;
    assert!(
        reloaded.body.contains(ReasonCode::IdpUnavailable.message()),
        "{}",
        reloaded.body
    );
    hostile.stop().await;
    Ok(())
}
