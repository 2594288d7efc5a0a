//! A PostgreSQL outage under the challenge and audit services: while their databases refuse
//! connections, `/readyz` reports 503 and approvals published meanwhile are retried with
//! backoff rather than dead-lettered. Once the databases return, every approval gets one
//! challenge, completes once, and is in the audit log.
//!
//! The outage is `ALTER DATABASE … ALLOW_CONNECTIONS false` plus `pg_terminate_backend` for
//! the two test databases, which refuses every new connection and ends the open ones, as a
//! database that went away does. Runs only when `STEPUP_TEST_POSTGRES_URL` is set
//! (scripts/test.sh sets it), because an SQLite file cannot be taken away this way.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use stepup_e2e::deployment::{Deployment, DeploymentOptions, step_up, step_up_url};
use stepup_events::subject;
use stepup_store::Backend;
use stepup_store::sqlx::{self, AnyPool};
use stepup_store::testing::POSTGRES_URL_VARIABLE;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Approvals published while the databases are down.
const APPROVALS: usize = 4;

/// How long the databases stay down after the approvals are published. With the backoff
/// below, each event is delivered several times during it.
const OUTAGE: Duration = Duration::from_secs(8);

const TIMEOUT: Duration = Duration::from_secs(60);

/// The services whose databases go down.
const DATABASE_SERVICES: [&str; 2] = ["challenge", "audit"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_loses_no_approval() -> TestResult {
    let Some(admin_url) = std::env::var(POSTGRES_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("skipped: set {POSTGRES_URL_VARIABLE} to take a PostgreSQL database away");
        return Ok(());
    };
    // As an operator would for a database that may be away for a while: the delays add up
    // to 0.5 + 1 + 18 × 2 = 37.5 s before an event is dead-lettered, longer than OUTAGE.
    let mut deployment = Deployment::start(DeploymentOptions {
        backend: Backend::Postgres,
        max_deliver: 20,
        backoff_ms: vec![500, 1_000, 2_000],
        ..DeploymentOptions::default()
    })
    .await?;
    let dead_letters = count_dead_letters(&deployment).await?;
    stepup_store::sqlx::any::install_default_drivers();
    let admin = AnyPool::connect(&admin_url).await?;
    let names: Vec<String> = DATABASE_SERVICES
        .iter()
        .map(|service| database_name(&deployment, service))
        .collect();

    // 1. The databases go away; readiness follows.
    for name in &names {
        take_away(&admin, name).await?;
    }
    for service in DATABASE_SERVICES {
        let status = wait_for_readiness(&mut deployment, service, 503).await;
        assert_eq!(status, Some(503), "{service} /readyz during the outage");
    }

    // 2. Approvals arrive meanwhile; none can be decided, and none is given up.
    let mut approvals = Vec::with_capacity(APPROVALS);
    for _ in 0..APPROVALS {
        approvals.push(deployment.request_approval().await?);
    }
    tokio::time::sleep(OUTAGE).await;
    for approval_id in &approvals {
        assert!(
            deployment
                .events_for(approval_id)
                .iter()
                .all(|event| event.envelope.event_type() == subject::APPROVAL_REQUESTED),
            "{approval_id} was handled without its database"
        );
    }
    assert_eq!(
        *dead_letters.lock().unwrap(),
        0,
        "events were dead-lettered during the outage:\n{}",
        deployment.logs()
    );
    assert!(
        deployment.logs().contains("the event will be redelivered"),
        "no handler retried:\n{}",
        deployment.logs()
    );

    // 3. The databases return; readiness follows and the backlog is worked off.
    for name in &names {
        bring_back(&admin, name).await?;
    }
    admin.close().await;
    for service in DATABASE_SERVICES {
        let status = wait_for_readiness(&mut deployment, service, 200).await;
        assert_eq!(status, Some(200), "{service} /readyz after the outage");
    }
    for approval_id in &approvals {
        let required = deployment
            .wait_for(subject::STEPUP_REQUIRED, approval_id, TIMEOUT)
            .await
            .map_err(|error| format!("{error}\n{}", deployment.logs()))?;
        let page = step_up(&step_up_url(&required)?).await?;
        assert!(page.body.contains("Approval complete"), "{}", page.body);
        deployment
            .wait_for(subject::APPROVAL_COMPLETED, approval_id, TIMEOUT)
            .await?;
    }

    // 4. Exactly once in the stream, everything in the audit log, nothing dead-lettered.
    let required = deployment.stream_counts(subject::STEPUP_REQUIRED).await?;
    let completed = deployment
        .stream_counts(subject::APPROVAL_COMPLETED)
        .await?;
    for approval_id in &approvals {
        assert_eq!(required.get(approval_id), Some(&1), "{approval_id}");
        assert_eq!(completed.get(approval_id), Some(&1), "{approval_id}");
        let types = audited_until_completed(&deployment, approval_id).await?;
        for expected in [subject::APPROVAL_REQUESTED, subject::APPROVAL_COMPLETED] {
            assert!(
                types.iter().any(|found| found == expected),
                "{approval_id}: no audited {expected} in {types:?}"
            );
        }
    }
    assert_eq!(*dead_letters.lock().unwrap(), 0);
    deployment.stop().await?;
    Ok(())
}

/// Returns the audited event types of `approval_id` once its completion is among them, or
/// what there is after [`TIMEOUT`].
async fn audited_until_completed(
    deployment: &Deployment,
    approval_id: &str,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let types = deployment
            .audit_types(approval_id, usize::MAX, Duration::ZERO)
            .await?;
        let completed = types.iter().any(|t| t == subject::APPROVAL_COMPLETED);
        if completed || tokio::time::Instant::now() > deadline {
            return Ok(types);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts the messages published on the dead-letter subjects from now on.
async fn count_dead_letters(
    deployment: &Deployment,
) -> Result<Arc<Mutex<usize>>, Box<dyn std::error::Error + Send + Sync>> {
    let mut subscription = deployment
        .client
        .subscribe(format!("{}.>", subject::DEADLETTER_PREFIX))
        .await?;
    deployment.client.flush().await?;
    let count = Arc::new(Mutex::new(0));
    let sink = count.clone();
    tokio::spawn(async move {
        while subscription.next().await.is_some() {
            *sink.lock().unwrap() += 1;
        }
    });
    Ok(count)
}

/// Returns the name of `service`'s test database: the last segment of its URL.
fn database_name(deployment: &Deployment, service: &str) -> String {
    let url = deployment.database_url(service).expect("a database");
    let (_, name) = url.rsplit_once('/').expect("a database name in the URL");
    name.to_owned()
}

/// Refuses new connections to database `name` and ends the open ones.
async fn take_away(admin: &AnyPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(admin)
        .await?;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(admin)
        .await?;
    Ok(())
}

async fn bring_back(admin: &AnyPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(admin)
        .await?;
    Ok(())
}

/// Polls the first instance of `service` until `/readyz` returns `expected` or 15 s
/// passed, and returns the last status.
async fn wait_for_readiness(
    deployment: &mut Deployment,
    service: &str,
    expected: u16,
) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = deployment.process(service, 0).readiness().await;
        if status == Some(expected) || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
