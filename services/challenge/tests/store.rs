//! The challenge store and its outbox on SQLite and, when `STEPUP_TEST_POSTGRES_URL` is
//! set, on PostgreSQL: creation and every status change happen at most once, and each
//! change that happened has exactly one outbox row.

#![allow(clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use stepup_challenge::MIGRATIONS;
use stepup_challenge::outbox::{Outbox, OutboxEvent};
use stepup_challenge::store::{ChallengeStore, NewChallenge};
use stepup_events::ReasonCode;
use stepup_events::data::{ApprovalCompleted, Approver, Evidence, Requirement};
use stepup_events::rpc::ChallengeStatus;
use stepup_store::testing::{TestDatabase, backends};
use stepup_store::{Backend, Database};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs `body` once per backend, each time on a fresh database that is dropped after.
async fn on_each_backend<F, Fut>(body: F) -> TestResult
where
    F: Fn(Database) -> Fut,
    Fut: Future<Output = TestResult>,
{
    for backend in backends() {
        let Some(test_database) = TestDatabase::create(backend).await? else {
            continue;
        };
        let database = stepup_store::open(&test_database.url, &MIGRATIONS).await?;
        let pool = database.pool.clone();
        let result = body(database).await;
        pool.close().await;
        test_database.remove().await?;
        result.map_err(|error| format!("on {backend:?}: {error}"))?;
    }
    Ok(())
}

fn new_challenge(request_event_id: &str) -> NewChallenge {
    let now = Utc::now();
    let id = uuid::Uuid::now_v7().to_string();
    NewChallenge {
        request_event_id: request_event_id.to_owned(),
        approval_id: format!("apr-{id}"),
        policy_id: "production-access".into(),
        step_id: "security-approval".into(),
        provider: "dev-idp".into(),
        requirement: Requirement::default(),
        approver: Approver {
            id: "alice".into(),
            email: "alice@example.com".into(),
            idp_subject: None,
        },
        requester_id: None,
        resource: None,
        return_url: None,
        state: format!("state-{id}"),
        state_sha256: format!("hash-{id}"),
        nonce: "nonce".into(),
        pkce_verifier: "verifier".into(),
        traceparent: None,
        created_at: now,
        expires_at: now + TimeDelta::minutes(10),
        id,
    }
}

fn event(name: &str, challenge: &NewChallenge) -> OutboxEvent {
    let data = ApprovalCompleted {
        approval_id: challenge.approval_id.clone(),
        step_id: challenge.step_id.clone(),
        challenge_id: Some(challenge.id.clone()),
        approver: challenge.approver.clone(),
        evidence: None,
    };
    let id = stepup_events::envelope::derived_event_id(&[name, &challenge.id]);
    OutboxEvent::new(id, &data).expect("the event encodes")
}

fn evidence() -> Evidence {
    Evidence {
        provider: "dev-idp".into(),
        issuer: "http://127.0.0.1/".into(),
        subject: "00u1alice".into(),
        acr: Some("urn:okta:loa:2fa:any".into()),
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: Some(Utc::now()),
        acrs: Vec::new(),
        id_token_sha256: "0".repeat(64),
        verified_at: Utc::now(),
    }
}

async fn outbox_rows(database: &Database) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT event_id, subject FROM outbox ORDER BY seq")
        .fetch_all(&database.pool)
        .await
}

/// Moves a new challenge to verifying, as the start and callback requests do.
async fn verifying(store: &ChallengeStore, challenge: &NewChallenge) -> TestResult {
    assert!(store.start(&challenge.id, "browser").await?);
    assert!(store.accept_code(&challenge.id, "code").await?);
    Ok(())
}

#[tokio::test]
async fn insert_is_idempotent_per_approval_event() -> TestResult {
    on_each_backend(|database| async move {
        let store = ChallengeStore::new(database.pool.clone());
        let first = new_challenge("event-1");
        // A redelivery builds a new challenge with a new id for the same event.
        let again = new_challenge("event-1");

        assert!(store.insert(&first, &event("required", &first)).await?);
        assert!(!store.insert(&again, &event("required", &again)).await?);

        assert!(store.get(&again.id).await?.is_none());
        let stored = store.get_by_request_event("event-1").await?;
        assert_eq!(stored.map(|c| c.id), Some(first.id.clone()));
        assert_eq!(outbox_rows(&database).await?.len(), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn concurrent_satisfy_completes_once() -> TestResult {
    on_each_backend(|database| async move {
        let store = ChallengeStore::new(database.pool.clone());
        let challenge = Arc::new(new_challenge("event-2"));
        store
            .insert(&challenge, &event("required", &challenge))
            .await?;
        verifying(&store, &challenge).await?;

        // Eight deliveries of the same verification race; two instances would too.
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (store, challenge) = (store.clone(), challenge.clone());
            racers.spawn(async move {
                let completed = event("completed", &challenge);
                store.satisfy(&challenge.id, &evidence(), &completed).await
            });
        }
        let mut winners = 0;
        while let Some(result) = racers.join_next().await {
            if result?? {
                winners += 1;
            }
        }

        assert_eq!(winners, 1);
        let stored = store.get(&challenge.id).await?.ok_or("challenge missing")?;
        assert_eq!(stored.status, ChallengeStatus::Satisfied);
        assert_eq!(stored.pkce_verifier, None, "single-use secrets are cleared");
        assert_eq!(stored.authorization_code, None);
        assert_eq!(outbox_rows(&database).await?.len(), 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn final_challenge_never_changes() -> TestResult {
    on_each_backend(|database| async move {
        let store = ChallengeStore::new(database.pool.clone());
        let challenge = new_challenge("event-3");
        store
            .insert(&challenge, &event("required", &challenge))
            .await?;
        verifying(&store, &challenge).await?;
        let completed = event("completed", &challenge);
        assert!(
            store
                .satisfy(&challenge.id, &evidence(), &completed)
                .await?
        );

        let failed = event("failed", &challenge);
        let expired = event("expired", &challenge);
        let failed_later = store
            .fail(&challenge.id, ReasonCode::NonceMismatch, "late", &failed)
            .await?;
        let expired_later = store.expire(&challenge.id, &expired).await?;
        let satisfied_again = store
            .satisfy(&challenge.id, &evidence(), &completed)
            .await?;

        assert!(!failed_later);
        assert!(!expired_later);
        assert!(!satisfied_again);
        let subjects: Vec<String> = outbox_rows(&database)
            .await?
            .into_iter()
            .map(|(_, subject)| subject)
            .collect();
        assert_eq!(
            subjects.len(),
            2,
            "only the issue and the completion: {subjects:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn expire_marks_overdue_challenge_once() -> TestResult {
    on_each_backend(|database| async move {
        let store = ChallengeStore::new(database.pool.clone());
        let mut challenge = new_challenge("event-4");
        challenge.expires_at = Utc::now() - TimeDelta::seconds(1);
        store
            .insert(&challenge, &event("required", &challenge))
            .await?;

        let overdue = store.overdue(Utc::now(), 10).await?;
        assert_eq!(overdue, vec![challenge.id.clone()]);
        let expired = event("expired", &challenge);
        assert!(store.expire(&challenge.id, &expired).await?);
        assert!(!store.expire(&challenge.id, &expired).await?);

        let stored = store.get(&challenge.id).await?.ok_or("challenge missing")?;
        assert_eq!(stored.status, ChallengeStatus::Expired);
        assert_eq!(stored.reason_code, Some(ReasonCode::Expired));
        assert!(store.overdue(Utc::now(), 10).await?.is_empty());
        assert_eq!(outbox_rows(&database).await?.len(), 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn enqueue_writes_each_event_id_once() -> TestResult {
    on_each_backend(|database| async move {
        let store = ChallengeStore::new(database.pool.clone());
        let outbox = Outbox::new(database.pool.clone(), database.backend);
        let challenge = new_challenge("event-5");
        let completed = event("completed", &challenge);

        store.enqueue(&completed).await?;
        store.enqueue(&completed).await?;

        assert_eq!(outbox.pending().await?, 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn backends_include_postgres_when_configured() {
    let configured = std::env::var(stepup_store::testing::POSTGRES_URL_VARIABLE).is_ok();
    assert_eq!(backends().contains(&Backend::Postgres), configured);
}
