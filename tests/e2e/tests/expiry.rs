//! Expiry on the service binaries: a challenge whose verification comes too late ends
//! expired, never completed, and the approver's page says the link expired.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_events::subject;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_verification_ends_expired() -> TestResult {
    let mut deployment = Deployment::start(DeploymentOptions {
        challenge_ttl_secs: 4,
        ..DeploymentOptions::default()
    })
    .await?;

    // 1. The verifier is down, so the approver's code waits in the stream while the
    //    challenge's lifetime runs out.
    let approval_id = deployment.request_approval().await?;
    let required = deployment
        .wait_for(subject::STEPUP_REQUIRED, &approval_id, TIMEOUT)
        .await?;
    deployment.process("verifier", 0).kill().await?;
    let url = step_up_url(&required)?;
    let browser = tokio::spawn(async move { step_up(&url).await });
    deployment
        .wait_for(subject::AUTH_CODE_RECEIVED, &approval_id, TIMEOUT)
        .await?;

    // 2. The challenge expires, and the waiting page says so.
    deployment
        .wait_for(subject::CHALLENGE_EXPIRED, &approval_id, TIMEOUT)
        .await?;
    let page = tokio::time::timeout(TIMEOUT, browser).await???;
    assert!(
        page.body.contains("expired"),
        "the page does not mention the expiry: {}",
        page.body
    );

    // 3. The verifier comes back and handles the late code; nothing completes.
    deployment.process("verifier", 0).restart().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployment
            .stream_count(subject::APPROVAL_COMPLETED, &approval_id)
            .await?,
        0
    );
    assert_eq!(
        deployment
            .stream_count(subject::CHALLENGE_EXPIRED, &approval_id)
            .await?,
        1
    );

    deployment.stop().await
}
