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

fn records_checked(verification: &Verification) -> Option<u64> {
    match verification {
        Verification::Intact { records, .. } => Some(*records),
        Verification::Broken { .. } => None,
    }
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
    assert_eq!(records_checked(&log.verify().await?), Some(3));
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
    assert_eq!(records_checked(&log.verify().await?), Some(1));
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
    let count = PAGE_SIZE + 3;
    for index in 0..count {
        log.append(entry(&format!("e{index}"), "apr-1")).await?;
    }

    let verification = log.verify().await?;

    assert_eq!(records_checked(&verification), Some(u64::try_from(count)?));
    Ok(())
}

#[tokio::test]
async fn query_combines_filters_and_pages_by_seq() -> TestResult {
    let (log, _directory) = temp_log().await?;
    for (index, (approval, provider)) in [
        ("apr-1", "okta"),
        ("apr-2", "okta"),
        ("apr-1", "entra"),
        ("apr-1", "okta"),
        ("apr-1", "okta"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut entry = entry(&format!("e{index}"), approval);
        entry.provider = Some(provider.into());
        log.append(entry).await?;
    }
    let filter = RecordFilter {
        approval_id: Some("apr-1".into()),
        provider: Some("okta".into()),
        ..RecordFilter::default()
    };

    let first_page = log.query(&filter, 0, 2).await?;
    let second_page = log.query(&filter, first_page[1].seq, 2).await?;

    let seqs = |records: &[AuditRecord]| records.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&first_page), [1, 4]);
    assert_eq!(seqs(&second_page), [5]);
    Ok(())
}

#[tokio::test]
async fn query_time_range_uses_recorded_at() -> TestResult {
    let (log, _directory) = temp_log().await?;
    log.append(entry("e1", "apr-1")).await?;
    let recorded_at = log.query(&RecordFilter::default(), 0, 1).await?[0].recorded_at;

    let inside = RecordFilter {
        from: Some(recorded_at),
        to: Some(recorded_at + 1),
        ..RecordFilter::default()
    };
    let after = RecordFilter {
        from: Some(recorded_at + 1),
        ..RecordFilter::default()
    };

    assert_eq!(log.query(&inside, 0, 10).await?.len(), 1);
    assert_eq!(log.query(&after, 0, 10).await?.len(), 0);
    Ok(())
}

#[tokio::test]
async fn range_verification_links_to_the_record_before() -> TestResult {
    let (log, _directory) = temp_log().await?;
    for index in 1..=6 {
        log.append(entry(&format!("e{index}"), "apr-1")).await?;
    }

    let middle = log.verify_range(Some(3), Some(5)).await?;
    let past_the_end = log.verify_range(Some(10), None).await?;

    assert!(
        matches!(
            middle,
            Verification::Intact {
                records: 3,
                first_seq: Some(3),
                last_seq: Some(5),
                ..
            }
        ),
        "{middle:?}"
    );
    assert_eq!(records_checked(&past_the_end), Some(0));
    Ok(())
}

#[tokio::test]
async fn removed_last_record_is_detected() -> TestResult {
    let (log, _directory) = temp_log().await?;
    for index in 1..=4 {
        log.append(entry(&format!("e{index}"), "apr-1")).await?;
    }
    log.mark_published("STEPUP_AUDIT", 4).await?;

    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(&log.database.pool)
        .await?;
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(&log.database.pool)
        .await?;

    assert_eq!(log.verify().await?.first_broken_seq(), Some(4));
    Ok(())
}

#[tokio::test]
async fn published_mark_never_moves_back() -> TestResult {
    let (log, _directory) = temp_log().await?;

    log.mark_published("STEPUP_AUDIT", 5).await?;
    log.mark_published("STEPUP_AUDIT", 3).await?;

    assert_eq!(log.published_seq_of("STEPUP_AUDIT").await?, 5);
    assert_eq!(log.published_seq_of("OTHER").await?, 0);
    Ok(())
}
