//! Readiness during shutdown: from SIGTERM on, `/readyz` reports 503 while the listener
//! keeps serving, so an orchestrator routes no new work to the instance while the work in
//! flight finishes.
//!
//! The work in flight is an approver's callback page waiting for its outcome: the verifier
//! is stopped, so the outcome comes only once the verifier is started again.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_events::subject;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_reports_unready_while_page_waits() -> TestResult {
    let mut deployment = Deployment::start(DeploymentOptions::default()).await?;
    deployment.process("verifier", 0).kill().await?;

    // 1. The approver signs in; the callback page waits for an outcome that cannot come.
    let approval_id = deployment.request_approval().await?;
    let required = deployment
        .wait_for(subject::STEPUP_REQUIRED, &approval_id, TIMEOUT)
        .await?;
    let link = step_up_url(&required)?;
    let browser = tokio::spawn(async move { step_up(&link).await.map(|page| page.body) });
    deployment
        .wait_for(subject::AUTH_CODE_RECEIVED, &approval_id, TIMEOUT)
        .await?;

    // 2. SIGTERM: the callback still serves requests, and reports that it takes no new work.
    let pid = deployment
        .process("callback", 0)
        .pid()
        .expect("callback runs");
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(status.success(), "kill -TERM {pid}: {status}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deployment.process("callback", 0).readiness().await,
        Some(503),
        "{}",
        deployment.logs()
    );

    // 3. The verifier returns, the waiting page gets its outcome, and the callback exits.
    deployment.process("verifier", 0).restart().await?;
    let body = browser.await??;
    assert!(body.contains("Approval complete"), "{body}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while deployment
        .process("callback", 0)
        .readiness()
        .await
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the callback still serves after its page got the outcome"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    deployment.stop().await?;
    Ok(())
}
