//! Runs the audit service against a real `nats-server` with JetStream and a temporary
//! SQLite file: published events must appear once each, in order, in a verified chain.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use serde_json::Value;
use stepup_audit::Config;
use stepup_bus::{Bus, NatsSettings};
use stepup_events::Envelope;
use stepup_events::data::{
    ApprovalCompleted, ApprovalRequested, Approver, ChallengeStarted, Channel, DeadLetter,
    Evidence, Requirement, StepUpRequired,
};
use support::{NatsServer, TestResult, supports_multiple_filters};
use tokio_util::sync::CancellationToken;

/// How long the test waits for the service to record the events.
const RECORD_TIMEOUT: Duration = Duration::from_secs(20);

fn approver() -> Approver {
    Approver {
        id: "u-42".into(),
        email: "ada@example.com".into(),
        idp_subject: None,
    }
}

fn approval_requested() -> ApprovalRequested {
    ApprovalRequested {
        approval_id: "apr-7".into(),
        policy_id: "prod-access".into(),
        step_id: "step-1".into(),
        approver: approver(),
        requester: None,
        resource: None,
        channel: Channel::Web,
        automated: false,
        return_url: None,
    }
}

fn step_up_required() -> StepUpRequired {
    StepUpRequired {
        challenge_id: "ch-7".into(),
        approval_id: "apr-7".into(),
        step_id: "step-1".into(),
        step_up_url: "http://127.0.0.1:8081/stepup/ch-7".into(),
        provider: "okta".into(),
        requirement: Requirement {
            acr_values: vec!["phrh".into()],
            max_age: Some(0),
            ..Requirement::default()
        },
        expires_at: Utc::now() + chrono::Duration::minutes(10),
    }
}

fn approval_completed() -> ApprovalCompleted {
    ApprovalCompleted {
        approval_id: "apr-7".into(),
        step_id: "step-1".into(),
        challenge_id: Some("ch-7".into()),
        approver: approver(),
        evidence: Some(Evidence {
            provider: "okta".into(),
            issuer: "https://idp.example.com".into(),
            subject: "00u7".into(),
            acr: Some("phrh".into()),
            amr: vec!["hwk".into()],
            auth_time: Some(Utc::now()),
            acrs: vec![],
            id_token_sha256: "ef".repeat(32),
            verified_at: Utc::now(),
        }),
    }
}

/// Publishes the events of one approval, with repeats, and returns the ids expected in
/// the log in order.
async fn publish_events(bus: &Bus) -> TestResult<Vec<String>> {
    let requested = bus.publish(&approval_requested()).await?;
    let required = bus.publish(&step_up_required()).await?;
    let started = bus
        .publish(&ChallengeStarted {
            approval_id: "apr-7".into(),
            challenge_id: "ch-7".into(),
            provider: "okta".into(),
            started_at: Utc::now(),
        })
        .await?;
    let completed = bus.publish(&approval_completed()).await?;

    // The same envelope again: JetStream drops it by its Nats-Msg-Id.
    bus.publish_envelope(&completed).await?;
    // The same event without Nats-Msg-Id reaches the stream twice, as a redelivery
    // would reach the consumer; the audit log must still hold it once.
    bus.jetstream()
        .publish("stepup.approval.completed", completed.to_json()?.into())
        .await?
        .await?;

    let letter = bus
        .publish_on(
            "stepup.deadletter.challenge",
            &DeadLetter {
                service: "challenge".into(),
                original_subject: "stepup.approval.requested".into(),
                original_payload_base64: base64::engine::general_purpose::STANDARD
                    .encode(requested.to_json()?),
                original_event_id: Some(requested.id().to_owned()),
                error: "test: handler gave up".into(),
                delivered: 5,
            },
        )
        .await?;

    Ok([requested, required, started, completed, letter]
        .iter()
        .map(|envelope: &Envelope| envelope.id().to_owned())
        .collect())
}

/// Polls the approval query until it returns `count` records or the timeout passes.
async fn wait_for_records(base: &str, count: usize) -> TestResult<Vec<Value>> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + RECORD_TIMEOUT;
    loop {
        let body: Value = client
            .get(format!("{base}/audit/approvals/apr-7"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let records = body["records"].as_array().cloned().unwrap_or_default();
        if records.len() >= count || Instant::now() >= deadline {
            return Ok(records);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn records_published_events_once_in_a_verified_chain() -> TestResult {
    let nats = NatsServer::start()?;
    let directory = tempfile::tempdir()?;
    let nats_settings = NatsSettings {
        url: nats.url(),
        ..NatsSettings::default()
    };
    let config = Config {
        nats: nats_settings.clone(),
        database_url: format!(
            "sqlite://{}?mode=rwc",
            directory.path().join("audit.db").display()
        ),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ..Config::default()
    };
    let shutdown = CancellationToken::new();
    let started = stepup_audit::start(config, shutdown.clone()).await?;
    let base = format!("http://{}", started.http_addr);

    let producer = Bus::connect(&nats_settings, "test-producer").await?;
    let expected_ids = publish_events(&producer).await?;
    let records = wait_for_records(&base, expected_ids.len()).await?;

    // Every event once, in publish order, with consecutive seqs.
    let ids: Vec<&str> = records
        .iter()
        .filter_map(|record| record["event_id"].as_str())
        .collect();
    assert_eq!(ids, expected_ids);
    let seqs: Vec<i64> = records
        .iter()
        .filter_map(|record| record["seq"].as_i64())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    // Columns read from the events.
    let outcomes: Vec<&str> = records
        .iter()
        .filter_map(|record| record["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "requested",
            "step_up_required",
            "started",
            "completed",
            "dead_letter"
        ]
    );
    let completed = &records[3];
    assert_eq!(completed["challenge_id"], "ch-7");
    assert_eq!(completed["approver"], "u-42");
    assert_eq!(completed["acr"], "phrh");
    assert_eq!(completed["amr"], serde_json::json!(["hwk"]));
    assert_eq!(completed["idp_subject"], "00u7");
    assert_eq!(completed["event"]["id"], completed["event_id"]);

    // A later publish must not have slipped in as a duplicate after the wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wait_for_records(&base, 0).await?.len(), 5);

    let verification: Value = reqwest::get(format!("{base}/audit/verify"))
        .await?
        .json()
        .await?;
    assert_eq!(verification["ok"], true, "{verification}");
    assert_eq!(verification["records"], 5);
    let ready = reqwest::get(format!("{base}/readyz")).await?.status();
    assert_eq!(ready, reqwest::StatusCode::OK);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), started.wait()).await??;
    Ok(())
}

#[test]
fn version_check_needs_2_10() {
    assert!(supports_multiple_filters("nats-server: v2.10.4"));
    assert!(supports_multiple_filters("nats-server: v2.15.1\n"));
    assert!(!supports_multiple_filters("nats-server: v2.9.10"));
    assert!(!supports_multiple_filters("garbage"));
}
