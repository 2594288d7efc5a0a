//! Fault tests on the service binaries: a service killed with SIGKILL at each step of a
//! flow and restarted, and nats-server restarted with its JetStream store kept. After each
//! fault the approval must complete, and the stream and the audit log must hold exactly one
//! completion for it.
//!
//! Everything runs on loopback with a bounded number of approvals; every wait has a
//! timeout.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_e2e::process::SERVICES;
use stepup_events::subject;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How long one approval may take to complete after its fault.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(30);

/// The moment of a flow at which a service is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the approval was published, before anything handled it.
    Requested,
    /// After `stepup.required`, before the approver opened the link.
    Required,
    /// After the callback announced the authorization code, while the verifier redeems it.
    CodeReceived,
    /// After the verifier's verdict, while the challenge service completes the challenge.
    Verified,
}

const KILL_POINTS: [KillPoint; 4] = [
    KillPoint::Requested,
    KillPoint::Required,
    KillPoint::CodeReceived,
    KillPoint::Verified,
];

/// Runs one approval, killing and restarting `service` at `point`, and returns the
/// approval id once it completed.
async fn approve_with_kill(
    deployment: &mut Deployment,
    service: &str,
    point: KillPoint,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let approval_id = deployment.request_approval().await?;
    if matches!(point, KillPoint::Requested) {
        deployment.process(service, 0).restart().await?;
    }

    let required = deployment
        .wait_for(subject::STEPUP_REQUIRED, &approval_id, COMPLETION_TIMEOUT)
        .await?;
    if matches!(point, KillPoint::Required) {
        deployment.process(service, 0).restart().await?;
    }

    // An authorization code is single-use: a verifier killed after its token request
    // reached the IdP cannot redeem the code again, and that approval fails with
    // `token_exchange_failed` instead (killing the verifier on seeing the event would race
    // with that request). So the verifier is killed before the code arrives and started
    // again once the event is in the stream, which is the crash it can recover from.
    let verifier_down = service == "verifier" && matches!(point, KillPoint::CodeReceived);
    if verifier_down {
        deployment.process(service, 0).kill().await?;
    }

    // The browser waits on the callback page while the rest of the flow runs, so it runs
    // beside the kill. Its page may be an error when the callback itself is killed.
    let url = step_up_url(&required)?;
    let browser = tokio::spawn(async move { step_up(&url).await.map(|page| page.status) });
    let trigger = match point {
        KillPoint::CodeReceived => Some(subject::AUTH_CODE_RECEIVED),
        KillPoint::Verified => Some(subject::AUTH_VERIFIED),
        _ => None,
    };
    if let Some(trigger) = trigger {
        deployment
            .wait_for(trigger, &approval_id, COMPLETION_TIMEOUT)
            .await?;
        if verifier_down {
            deployment.process(service, 0).start_again().await?;
        } else {
            deployment.process(service, 0).restart().await?;
        }
    }

    deployment
        .wait_for(
            subject::APPROVAL_COMPLETED,
            &approval_id,
            COMPLETION_TIMEOUT,
        )
        .await?;
    let _ = tokio::time::timeout(COMPLETION_TIMEOUT, browser).await;
    Ok(approval_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_services_complete_each_approval_once() -> TestResult {
    let mut deployment = Deployment::start(DeploymentOptions::default()).await?;

    let mut approvals = Vec::new();
    for service in SERVICES {
        for point in KILL_POINTS {
            match approve_with_kill(&mut deployment, service, point).await {
                Ok(approval_id) => approvals.push(approval_id),
                Err(error) => {
                    panic!(
                        "{service} killed at {point:?}: {error}\n{}",
                        deployment.logs()
                    )
                }
            }
        }
    }

    // The stream stored one completion per approval, although the killed services
    // redelivered and republished.
    let completions = deployment
        .stream_counts(subject::APPROVAL_COMPLETED)
        .await?;
    for approval_id in &approvals {
        assert_eq!(completions.get(approval_id), Some(&1), "{approval_id}");
    }
    assert_eq!(completions.len(), approvals.len());

    // The audit log recorded each completion once.
    for approval_id in &approvals {
        let types = deployment
            .audit_types(approval_id, 6, COMPLETION_TIMEOUT)
            .await?;
        let recorded = types
            .iter()
            .filter(|t| *t == subject::APPROVAL_COMPLETED)
            .count();
        assert_eq!(recorded, 1, "{approval_id}: {types:?}");
    }

    deployment.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restart_keeping_store_loses_no_event() -> TestResult {
    let mut deployment = Deployment::start(DeploymentOptions::default()).await?;

    // 1. An approval waits for its approver while nats-server restarts.
    let waiting = deployment.request_approval().await?;
    let required = deployment
        .wait_for(subject::STEPUP_REQUIRED, &waiting, COMPLETION_TIMEOUT)
        .await?;
    deployment.nats.restart_keeping_store().await?;

    // 2. Approvals requested right after the restart, while the services reconnect.
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(deployment.request_approval().await?);
    }

    // 3. The waiting approval completes, and every later one gets its challenge.
    step_up(&step_up_url(&required)?).await?;
    deployment
        .wait_for(subject::APPROVAL_COMPLETED, &waiting, COMPLETION_TIMEOUT)
        .await
        .map_err(|error| format!("{error}\n{}", deployment.logs()))?;
    for approval_id in &after {
        let required = deployment
            .wait_for(subject::STEPUP_REQUIRED, approval_id, COMPLETION_TIMEOUT)
            .await?;
        step_up(&step_up_url(&required)?).await?;
        deployment
            .wait_for(subject::APPROVAL_COMPLETED, approval_id, COMPLETION_TIMEOUT)
            .await?;
    }

    // 4. The stream kept the events from before the restart, and holds one completion
    //    per approval.
    assert_eq!(
        deployment
            .stream_count(subject::STEPUP_REQUIRED, &waiting)
            .await?,
        1
    );
    let completions = deployment
        .stream_counts(subject::APPROVAL_COMPLETED)
        .await?;
    for approval_id in after.iter().chain([&waiting]) {
        assert_eq!(completions.get(approval_id), Some(&1), "{approval_id}");
    }

    deployment.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_row_left_by_crash_is_published_once_on_restart() -> TestResult {
    let mut deployment = Deployment::start(DeploymentOptions::default()).await?;
    let url = deployment
        .database_url("challenge")
        .ok_or("the deployment has a challenge database")?;

    // 1. An approval completes, so its completion row is in the outbox, published.
    let approval_id = deployment.request_approval().await?;
    let required = deployment
        .wait_for(subject::STEPUP_REQUIRED, &approval_id, COMPLETION_TIMEOUT)
        .await?;
    step_up(&step_up_url(&required)?).await?;
    deployment
        .wait_for(
            subject::APPROVAL_COMPLETED,
            &approval_id,
            COMPLETION_TIMEOUT,
        )
        .await?;

    // 2. The process dies, and the database looks as if it had died between the commit
    //    and the publish: every row of this approval is unpublished again, and one row of
    //    an event that was never published at all is added.
    deployment.process("challenge", 0).kill().await?;
    stepup_store::sqlx::any::install_default_drivers();
    let pool = stepup_store::sqlx::AnyPool::connect(&url).await?;
    stepup_store::sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(&pool)
        .await?;
    let unpublished_id = format!("apr-{}", uuid::Uuid::now_v7());
    let rejected = stepup_events::data::ApprovalRejected {
        approval_id: unpublished_id.clone(),
        step_id: "security-approval".into(),
        challenge_id: None,
        reason_code: stepup_events::ReasonCode::AutomatedApprovalNotAllowed,
        message: "written before the crash".into(),
    };
    let envelope = stepup_events::Envelope::new("/stepup/challenge", &rejected)?;
    stepup_store::sqlx::query(
        "INSERT INTO outbox (event_id, subject, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(envelope.id())
    .bind(subject::APPROVAL_REJECTED)
    .bind(String::from_utf8(envelope.to_json()?)?)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(&pool)
    .await?;

    // 3. The restarted service publishes what it finds: the new event arrives, and the
    //    repeated ones are dropped by the stream's duplicate window.
    deployment.process("challenge", 0).restart().await?;
    deployment
        .wait_for(
            subject::APPROVAL_REJECTED,
            &unpublished_id,
            COMPLETION_TIMEOUT,
        )
        .await?;
    let deadline = tokio::time::Instant::now() + COMPLETION_TIMEOUT;
    loop {
        let (pending,): (i64,) =
            stepup_store::sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&pool)
                .await?;
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} rows stay unpublished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;

    assert_eq!(
        deployment
            .stream_count(subject::APPROVAL_COMPLETED, &approval_id)
            .await?,
        1
    );
    assert_eq!(
        deployment
            .stream_count(subject::STEPUP_REQUIRED, &approval_id)
            .await?,
        1
    );
    assert_eq!(
        deployment
            .stream_count(subject::APPROVAL_REJECTED, &unpublished_id)
            .await?,
        1
    );

    deployment.stop().await
}
