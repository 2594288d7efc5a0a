//! Two instances of every service against one nats-server and one PostgreSQL database:
//! 200 approvals in flight at once each get one challenge and complete exactly once,
//! counted in the stream and in the audit log.
//!
//! Runs only when `STEPUP_TEST_POSTGRES_URL` is set (scripts/test.sh sets it), because
//! instances on several machines share state through PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_events::subject;
use stepup_store::Backend;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const APPROVALS: usize = 200;

/// Browsers signing in at once.
const BROWSERS: usize = 8;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_complete_each_approval_once() -> TestResult {
    if !stepup_store::testing::backends().contains(&Backend::Postgres) {
        eprintln!("skipped: set STEPUP_TEST_POSTGRES_URL to run two instances on PostgreSQL");
        return Ok(());
    }
    let deployment = Arc::new(
        Deployment::start(DeploymentOptions {
            instances: 2,
            backend: Backend::Postgres,
            ..DeploymentOptions::default()
        })
        .await?,
    );

    // 1. Every approval is requested before any is approved.
    let mut approvals = Vec::with_capacity(APPROVALS);
    for _ in 0..APPROVALS {
        approvals.push(deployment.request_approval().await?);
    }

    // 2. Each approver opens the link on either callback instance and signs in.
    let callbacks = deployment.callback_urls.clone();
    let results: Vec<Result<(), String>> = futures::stream::iter(approvals.iter().enumerate())
        .map(|(index, approval_id)| {
            let deployment = deployment.clone();
            let callback = callbacks[index % callbacks.len()].clone();
            async move {
                let required = deployment
                    .wait_for(subject::STEPUP_REQUIRED, approval_id, TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                let link = step_up_url(&required).map_err(|e| e.to_string())?;
                let path = link
                    .split_once("/stepup/")
                    .map(|(_, id)| id)
                    .unwrap_or_default();
                step_up(&format!("{callback}/stepup/{path}"))
                    .await
                    .map_err(|e| format!("{approval_id}: {e}"))?;
                deployment
                    .wait_for(subject::APPROVAL_COMPLETED, approval_id, TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .buffer_unordered(BROWSERS)
        .collect()
        .await;
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} approvals failed, first: {:?}\n{}",
        failures.len(),
        failures.first(),
        deployment.logs()
    );

    // 3. The stream holds one challenge and one completion per approval.
    let challenges = deployment.stream_counts(subject::STEPUP_REQUIRED).await?;
    let completions = deployment
        .stream_counts(subject::APPROVAL_COMPLETED)
        .await?;
    for approval_id in &approvals {
        assert_eq!(challenges.get(approval_id), Some(&1), "{approval_id}");
        assert_eq!(completions.get(approval_id), Some(&1), "{approval_id}");
    }

    // 4. The shared audit log recorded each completion once.
    for approval_id in &approvals {
        let types = deployment.audit_types(approval_id, 6, TIMEOUT).await?;
        let recorded = types
            .iter()
            .filter(|t| *t == subject::APPROVAL_COMPLETED)
            .count();
        assert_eq!(recorded, 1, "{approval_id}: {types:?}");
    }

    match Arc::try_unwrap(deployment) {
        Ok(deployment) => deployment.stop().await,
        Err(_) => Err("the deployment is still shared".into()),
    }
}
