//! Graceful shutdown: each service binary, sent SIGTERM while approvals are in flight,
//! exits with status 0 within a bound, and a rolling restart of every service loses no
//! approval and completes none twice.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_e2e::process::SERVICES;
use stepup_events::subject;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a service may take to exit after SIGTERM: the consumers' default grace for
/// messages in flight is 10 s, plus the final outbox pass.
const EXIT_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_loses_no_approval() -> TestResult {
    let mut deployment = Deployment::start(DeploymentOptions::default()).await?;

    let mut approvals = Vec::new();
    for service in SERVICES {
        // 1. Two approvals in flight: one waiting for its approver, one just requested.
        let waiting = deployment.request_approval().await?;
        let required = deployment
            .wait_for(subject::STEPUP_REQUIRED, &waiting, TIMEOUT)
            .await?;
        let fresh = deployment.request_approval().await?;

        // 2. SIGTERM: the process finishes or hands back its work and exits with 0.
        let status = deployment.process(service, 0).terminate(EXIT_BOUND).await?;
        assert!(
            status.success(),
            "{service} exited with {status} after SIGTERM\n{}",
            deployment.logs()
        );

        // 3. The new version starts, and both approvals complete.
        deployment.process(service, 0).restart().await?;
        step_up(&step_up_url(&required)?).await?;
        let fresh_required = deployment
            .wait_for(subject::STEPUP_REQUIRED, &fresh, TIMEOUT)
            .await?;
        step_up(&step_up_url(&fresh_required)?).await?;
        for approval_id in [&waiting, &fresh] {
            deployment
                .wait_for(subject::APPROVAL_COMPLETED, approval_id, TIMEOUT)
                .await
                .map_err(|error| {
                    format!("after restarting {service}: {error}\n{}", deployment.logs())
                })?;
        }
        approvals.extend([waiting, fresh]);
    }

    let completions = deployment
        .stream_counts(subject::APPROVAL_COMPLETED)
        .await?;
    for approval_id in &approvals {
        assert_eq!(completions.get(approval_id), Some(&1), "{approval_id}");
    }

    deployment.stop().await
}
