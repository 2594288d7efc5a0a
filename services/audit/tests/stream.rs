//! The audit stream against a real `nats-server`: a consumer created after N records
//! replays all N in order as a verifiable chain, records committed while the service was
//! down are published when it starts, and a restart publishes nothing twice.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use chrono::Utc;
use futures::StreamExt as _;
use stepup_audit::Config;
use stepup_audit::config::AuditStreamSettings;
use stepup_audit::export::verify_export;
use stepup_audit::log::{AuditLog, MIGRATIONS};
use stepup_audit::record::Entry;
use stepup_bus::{Bus, NatsSettings};
use stepup_events::Envelope;
use stepup_events::data::{AuditRecorded, ChallengeStarted};
use stepup_events::subject::AUDIT_RECORDED;
use support::{NatsServer, TestResult, wait_for};
use tokio_util::sync::CancellationToken;

/// How long a test waits for records to be appended or published.
const WAIT: Duration = Duration::from_secs(20);

/// The duplicate window of the test stream: short, so that a second publish of a record
/// after a restart would be stored again and counted, not dropped by the window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(1);

fn config(nats: &NatsServer, database_url: &str) -> Config {
    Config {
        nats: NatsSettings {
            url: nats.url(),
            ..NatsSettings::default()
        },
        database_url: database_url.to_owned(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        audit_stream: AuditStreamSettings {
            duplicate_window_secs: DUPLICATE_WINDOW.as_secs(),
            ..AuditStreamSettings::default()
        },
        ..Config::default()
    }
}

fn started_event(index: usize) -> ChallengeStarted {
    ChallengeStarted {
        approval_id: format!("apr-{index}"),
        challenge_id: format!("ch-{index}"),
        provider: "okta".into(),
        started_at: Utc::now(),
    }
}

/// Returns how many messages the audit stream holds.
async fn messages_on_stream(bus: &Bus) -> TestResult<u64> {
    let mut stream = bus.jetstream().get_stream("STEPUP_AUDIT").await?;
    Ok(stream.info().await?.state.messages)
}

async fn wait_for_messages(bus: &Bus, count: u64) -> TestResult {
    let reached = wait_for(WAIT, || async {
        Ok((messages_on_stream(bus).await? >= count).then_some(()))
    })
    .await?;
    reached.ok_or_else(|| format!("the audit stream did not reach {count} messages"))?;
    Ok(())
}

/// Replays the whole audit stream through a new consumer and returns the payloads.
async fn replay(bus: &Bus, expected: usize) -> TestResult<Vec<AuditRecorded>> {
    let stream = bus.jetstream().get_stream("STEPUP_AUDIT").await?;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject: AUDIT_RECORDED.to_owned(),
            ..pull::Config::default()
        })
        .await?;
    let mut batch = consumer
        .fetch()
        .max_messages(expected + 10)
        .expires(Duration::from_secs(2))
        .messages()
        .await?;

    let mut records = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.map_err(|error| error.to_string())?;
        let envelope = Envelope::from_json(&message.payload)?;
        records.push(envelope.data::<AuditRecorded>()?);
    }
    Ok(records)
}

#[tokio::test]
async fn late_consumer_replays_every_record_once() -> TestResult {
    let nats = NatsServer::start()?;
    let directory = tempfile::tempdir()?;
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("audit.db").display()
    );
    let producer = Bus::connect(&config(&nats, &database_url).nats, "test-producer").await?;

    // 1. Three events are recorded and published while the service runs.
    let shutdown = CancellationToken::new();
    let started = stepup_audit::start(config(&nats, &database_url), shutdown.clone()).await?;
    for index in 0..3 {
        producer.publish(&started_event(index)).await?;
    }
    wait_for_messages(&producer, 3).await?;
    shutdown.cancel();
    started.wait().await?;

    // 2. Two records are committed while the service is down, as after a crash between
    //    the commit and the publish.
    let log = AuditLog::new(stepup_store::open(&database_url, &MIGRATIONS).await?);
    for index in 3..5 {
        log.append(Entry {
            event_id: format!("evt-offline-{index}"),
            event_type: "stepup.challenge.started".into(),
            outcome: "started".into(),
            event_json: "{}".into(),
            ..Entry::default()
        })
        .await?;
    }

    // 3. Restarting publishes those two, and only those, after the duplicate window.
    tokio::time::sleep(DUPLICATE_WINDOW + Duration::from_millis(500)).await;
    for _restart in 0..2 {
        let shutdown = CancellationToken::new();
        let started = stepup_audit::start(config(&nats, &database_url), shutdown.clone()).await?;
        wait_for_messages(&producer, 5).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        started.wait().await?;
    }
    assert_eq!(messages_on_stream(&producer).await?, 5);

    // 4. A consumer created now replays all five in order, as a chain that verifies.
    let records = replay(&producer, 5).await?;
    let seqs: Vec<i64> = records.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let lines: String = records
        .iter()
        .map(|record| serde_json::to_string(record).map(|line| line + "\n"))
        .collect::<Result<_, _>>()?;
    let verification = verify_export(lines.as_bytes())?;
    assert!(verification.is_ok(), "{verification:?}");
    Ok(())
}
