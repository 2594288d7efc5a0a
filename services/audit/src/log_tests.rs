use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Opens an audit log in a fresh SQLite file, which lives as long as the returned directory.
async fn temp_log() -> Result<(AuditLog, tempfile::TempDir), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("audit.db").display()
    );
    let database = stepup_store::open(&url, &MIGRATIONS).await?;
    Ok((AuditLog::new(database), directory))
}

fn entry(event_id: &str, approval_id: &str) -> Entry {
    Entry {
        event_id: event_id.into(),
        event_type: "stepup.challenge.started".into(),
        approval_id: Some(approval_id.into()),
        outcome: "started".into(),
        event_json: format!(r#"{{"id":"{event_id}"}}"#),
        ..Entry::default()
    }
}

#[tokio::test]
async fn appends_get_consecutive_seqs_linked_by_hash() -> TestResult {
    let (log, _directory) = temp_log().await?;

    assert_eq!(
        log.append(entry("e1", "apr-1")).await?,
        Appended::New { seq: 1 }
    );
    assert_eq!(
        log.append(entry("e2", "apr-2")).await?,
        Appended::New { seq: 2 }
    );
    assert_eq!(
        log.append(entry("e3", "apr-1")).await?,
        Appended::New { seq: 3 }
    );

    let records = log.records_for_approval("apr-1").await?;
    let seqs: Vec<i64> = records.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, [1, 3]);
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    assert_eq!(log.verify().await?, Verification::Intact { records: 3 });
    Ok(())
}

#[tokio::test]
async fn repeated_event_adds_no_record() -> TestResult {
    let (log, _directory) = temp_log().await?;

    log.append(entry("e1", "apr-1")).await?;
    let again = log.append(entry("e1", "apr-1")).await?;

    assert_eq!(again, Appended::Duplicate { seq: 1 });
    assert_eq!(log.records_for_approval("apr-1").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn stored_record_round_trips_every_column() -> TestResult {
    let (log, _directory) = temp_log().await?;
    let full = Entry {
        event_time: Some(1_700_000_000_123),
        step_id: Some("step-1".into()),
        challenge_id: Some("ch-1".into()),
        approver: Some("u-42".into()),
        provider: Some("okta".into()),
        reason_code: Some("acr_not_satisfied".into()),
        acr: Some("phr".into()),
        amr: Some(r#"["hwk"]"#.into()),
        acrs: Some(r#"["c1"]"#.into()),
        auth_time: Some(1_700_000_000_000),
        idp_subject: Some("00u1".into()),
        id_token_sha256: Some("cd".repeat(32)),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        ..entry("e1", "apr-1")
    };

    log.append(full.clone()).await?;
    let records = log.records_for_approval("apr-1").await?;

    assert_eq!(records.len(), 1);
    assert_eq!(records[0].entry, full);
    assert_eq!(log.verify().await?, Verification::Intact { records: 1 });
    Ok(())
}

#[tokio::test]
async fn database_rejects_updates_and_deletes() -> TestResult {
    let (log, _directory) = temp_log().await?;
    log.append(entry("e1", "apr-1")).await?;

    let update = sqlx::query("UPDATE audit_log SET outcome = 'completed' WHERE seq = 1")
        .execute(&log.database.pool)
        .await;
    let delete = sqlx::query("DELETE FROM audit_log WHERE seq = 1")
        .execute(&log.database.pool)
        .await;

    assert!(update.is_err(), "update was accepted");
    assert!(delete.is_err(), "delete was accepted");
    assert_eq!(log.records_for_approval("apr-1").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn verify_finds_a_changed_row_at_its_seq() -> TestResult {
    let (log, _directory) = temp_log().await?;
    for index in 1..=4 {
        log.append(entry(&format!("e{index}"), "apr-1")).await?;
    }

    // Tampering needs the append-only trigger out of the way, as an attacker with
    // database access would do.
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(&log.database.pool)
        .await?;
    sqlx::query("UPDATE audit_log SET approver = 'mallory' WHERE seq = 3")
        .execute(&log.database.pool)
        .await?;

    let verification = log.verify().await?;

    assert!(
        matches!(
            verification,
            Verification::Broken {
                first_broken_seq: 3,
                ..
            }
        ),
        "expected a break at seq 3, got {verification:?}"
    );
    Ok(())
}

#[tokio::test]
async fn verify_walks_several_pages() -> TestResult {
    let (log, _directory) = temp_log().await?;
    let count = VERIFY_PAGE_SIZE + 3;
    for index in 0..count {
        log.append(entry(&format!("e{index}"), "apr-1")).await?;
    }

    let verification = log.verify().await?;

    assert_eq!(
        verification,
        Verification::Intact {
            records: u64::try_from(count)?
        }
    );
    Ok(())
}

/// Admin URL of a PostgreSQL server for the PostgreSQL test, such as
/// `postgres://postgres@127.0.0.1:5432/postgres`. The test creates and drops its own
/// database there.
const POSTGRES_URL_VARIABLE: &str = "STEPUP_TEST_POSTGRES_URL";

#[tokio::test]
async fn postgres_log_stays_linear_across_instances() -> TestResult {
    let Ok(admin_url) = std::env::var(POSTGRES_URL_VARIABLE) else {
        eprintln!("skipped: set {POSTGRES_URL_VARIABLE} to run the audit log on PostgreSQL");
        return Ok(());
    };
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url).await?;
    let name = format!("stepup_audit_test_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or("admin URL has no database name")?;
    let url = format!("{base}/{name}");

    let result = exercise_postgres(&url).await;

    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    result
}

async fn exercise_postgres(url: &str) -> TestResult {
    // Two logs with their own pools and mutexes stand for two service instances.
    let first = AuditLog::new(stepup_store::open(url, &MIGRATIONS).await?);
    let second = AuditLog::new(stepup_store::open(url, &MIGRATIONS).await?);

    let mut appends = tokio::task::JoinSet::new();
    for index in 0..20 {
        let log = if index % 2 == 0 { &first } else { &second }.clone();
        appends.spawn(async move { log.append(entry(&format!("e{index}"), "apr-1")).await });
    }
    while let Some(appended) = appends.join_next().await {
        appended??;
    }
    let duplicate = second.append(entry("e0", "apr-1")).await?;

    assert!(matches!(duplicate, Appended::Duplicate { .. }));
    assert_eq!(first.records_for_approval("apr-1").await?.len(), 20);
    assert_eq!(first.verify().await?, Verification::Intact { records: 20 });

    let update = sqlx::query("UPDATE audit_log SET approver = 'mallory' WHERE seq = 7")
        .execute(&first.database.pool)
        .await;
    assert!(update.is_err(), "update was accepted");

    sqlx::query("DROP TRIGGER audit_log_no_change ON audit_log")
        .execute(&first.database.pool)
        .await?;
    sqlx::query("UPDATE audit_log SET approver = 'mallory' WHERE seq = 7")
        .execute(&first.database.pool)
        .await?;
    let verification = first.verify().await?;
    assert!(
        matches!(
            verification,
            Verification::Broken {
                first_broken_seq: 7,
                ..
            }
        ),
        "expected a break at seq 7, got {verification:?}"
    );

    first.database.pool.close().await;
    second.database.pool.close().await;
    Ok(())
}
