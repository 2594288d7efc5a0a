//! The services run as their own NATS users from `deploy/nats/permissions.conf`: the flow
//! still completes, and the callback's user (the one internet-facing service) cannot
//! forge the events that complete an approval.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use async_nats::jetstream;
use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_e2e::nats_users::password_of;
use stepup_events::{Envelope, subject};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_user_cannot_forge_completion() -> TestResult {
    let deployment = Deployment::start(DeploymentOptions {
        nats_permissions: true,
        ..DeploymentOptions::default()
    })
    .await?;

    // 1. With every service on its own user, an approval completes.
    let approval_id = deployment.request_approval().await?;
    let required = deployment
        .wait_for(subject::STEPUP_REQUIRED, &approval_id, TIMEOUT)
        .await
        .map_err(|error| format!("{error}\n{}", deployment.logs()))?;
    step_up(&step_up_url(&required)?).await?;
    deployment
        .wait_for(subject::APPROVAL_COMPLETED, &approval_id, TIMEOUT)
        .await
        .map_err(|error| format!("{error}\n{}", deployment.logs()))?;

    // 2. The callback's credentials publish a forged verification and completion.
    let callback = async_nats::ConnectOptions::new()
        .user_and_password("callback".into(), password_of("callback"))
        .connect(deployment.nats.url())
        .await?;
    let mut forger = jetstream::new(callback);
    forger.set_timeout(Duration::from_secs(2));
    let forged_approval = format!("apr-forged-{}", uuid::Uuid::now_v7());
    let forged = forged_completion(&forged_approval)?;
    for target in [subject::AUTH_VERIFIED, subject::APPROVAL_COMPLETED] {
        let published = match forger.publish(target, forged.to_json()?.into()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        assert!(published.is_err(), "the callback's user published {target}");
    }

    // 3. Nothing forged reached the stream, and the callback's own subjects still work for
    //    it: the denial is per subject, not a dead connection.
    for target in [subject::AUTH_VERIFIED, subject::APPROVAL_COMPLETED] {
        assert_eq!(deployment.stream_count(target, &forged_approval).await?, 0);
    }
    assert!(
        forger
            .publish(subject::CHALLENGE_STARTED, forged.to_json()?.into())
            .await?
            .await
            .is_ok(),
        "the callback's user may publish stepup.challenge.started"
    );

    deployment.stop().await
}

fn forged_completion(
    approval_id: &str,
) -> Result<Envelope, Box<dyn std::error::Error + Send + Sync>> {
    let data = stepup_events::data::ApprovalCompleted {
        approval_id: approval_id.to_owned(),
        step_id: "security-approval".into(),
        challenge_id: None,
        approver: stepup_events::data::Approver {
            id: "alice".into(),
            email: "alice@example.com".into(),
            idp_subject: None,
        },
        evidence: None,
    };
    Ok(Envelope::new("/stepup/challenge", &data)?)
}
