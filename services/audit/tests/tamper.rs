//! Tampering with the audit log directly in the database, on SQLite and on PostgreSQL, as
//! someone with database access would: the append-only triggers are dropped first, then a
//! row is changed, deleted or moved. Verification, in the service and of an export, must
//! name the first broken seq and why.

mod support;

use stepup_audit::chain::Verification;
use stepup_audit::export::{export_line, verify_export};
use stepup_audit::log::{Appended, AuditLog, MIGRATIONS, RecordFilter};
use stepup_audit::record::{Entry, record_hash};
use support::{Backend, TestDatabase, TestResult};

/// Records written before each tampering.
const RECORDS: i64 = 5;

fn entry(index: i64) -> Entry {
    Entry {
        event_id: format!("evt-{index}"),
        event_type: "stepup.approval.completed".into(),
        approval_id: Some(format!("apr-{index}")),
        approver: Some("u-42".into()),
        outcome: "completed".into(),
        event_json: format!(r#"{{"id":"evt-{index}"}}"#),
        ..Entry::default()
    }
}

/// Drops the append-only triggers of `backend`.
async fn drop_triggers(pool: &sqlx::AnyPool, backend: Backend) -> TestResult {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER audit_log_no_change ON audit_log"],
    };
    for statement in statements {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

/// Verifies the log and an export of it; both must break at `expected_seq` with a reason
/// that mentions `reason_word`.
async fn assert_broken_at(log: &AuditLog, expected_seq: i64, reason_word: &str) -> TestResult {
    let verification = log.verify().await?;
    let Verification::Broken {
        first_broken_seq,
        reason,
    } = &verification
    else {
        return Err(format!("tampering was not detected: {verification:?}").into());
    };
    assert_eq!(*first_broken_seq, expected_seq, "{reason}");
    assert!(reason.contains(reason_word), "reason: {reason}");

    let export: String = log
        .page(0, i64::MAX, 1_000)
        .await?
        .iter()
        .map(export_line)
        .collect();
    let exported = verify_export(export.as_bytes())?;
    assert_eq!(
        exported.first_broken_seq(),
        Some(expected_seq),
        "{exported:?}"
    );
    Ok(())
}

/// Runs `tamper` on a log of [`RECORDS`] records on `backend`, after dropping the triggers.
async fn tampered_log<F, Fut>(backend: Backend, tamper: F) -> TestResult<(AuditLog, TestDatabase)>
where
    F: FnOnce(sqlx::AnyPool, AuditLog) -> Fut,
    Fut: std::future::Future<Output = TestResult>,
{
    let database = TestDatabase::create(backend).await?;
    let log = AuditLog::new(stepup_store::open(&database.url, &MIGRATIONS).await?);
    for index in 1..=RECORDS {
        log.append(entry(index)).await?;
    }
    assert!(log.verify().await?.is_ok());

    let pool = database.connect().await?;
    drop_triggers(&pool, backend).await?;
    tamper(pool.clone(), log.clone()).await?;
    pool.close().await;
    Ok((log, database))
}

async fn changed_row_breaks_at_its_seq(backend: Backend) -> TestResult {
    let (log, database) = tampered_log(backend, |pool, _| async move {
        sqlx::query("UPDATE audit_log SET outcome = 'rejected' WHERE seq = 3")
            .execute(&pool)
            .await?;
        Ok(())
    })
    .await?;

    let result = assert_broken_at(&log, 3, "hash").await;
    database.remove().await?;
    result
}

async fn rehashed_row_breaks_at_the_next_seq(backend: Backend) -> TestResult {
    let (log, database) = tampered_log(backend, |pool, log| async move {
        let filter = RecordFilter::default();
        let mut record = log.query(&filter, 2, 1).await?.remove(0);
        record.entry.approver = Some("mallory".into());
        let hash = record_hash(&record);
        sqlx::query("UPDATE audit_log SET approver = 'mallory', hash = $1 WHERE seq = 3")
            .bind(hash)
            .execute(&pool)
            .await?;
        Ok(())
    })
    .await?;

    let result = assert_broken_at(&log, 4, "prev_hash").await;
    database.remove().await?;
    result
}

async fn deleted_row_breaks_at_its_seq(backend: Backend) -> TestResult {
    let (log, database) = tampered_log(backend, |pool, _| async move {
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(&pool)
            .await?;
        Ok(())
    })
    .await?;

    let result = assert_broken_at(&log, 3, "missing").await;
    database.remove().await?;
    result
}

async fn swapped_rows_break_at_the_lower_seq(backend: Backend) -> TestResult {
    let (log, database) = tampered_log(backend, |pool, _| async move {
        // The primary key forbids two rows with one seq, so go through a free value.
        for statement in [
            "UPDATE audit_log SET seq = -2 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 3",
            "UPDATE audit_log SET seq = 3 WHERE seq = -2",
        ] {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(())
    })
    .await?;

    let result = assert_broken_at(&log, 2, "prev_hash").await;
    database.remove().await?;
    result
}

#[tokio::test]
async fn sqlite_changed_row_is_detected() -> TestResult {
    changed_row_breaks_at_its_seq(Backend::Sqlite).await
}

#[tokio::test]
async fn sqlite_rehashed_row_is_detected() -> TestResult {
    rehashed_row_breaks_at_the_next_seq(Backend::Sqlite).await
}

#[tokio::test]
async fn sqlite_deleted_row_is_detected() -> TestResult {
    deleted_row_breaks_at_its_seq(Backend::Sqlite).await
}

#[tokio::test]
async fn sqlite_swapped_rows_are_detected() -> TestResult {
    swapped_rows_break_at_the_lower_seq(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_changed_row_is_detected() -> TestResult {
    changed_row_breaks_at_its_seq(Backend::Postgres).await
}

#[tokio::test]
async fn postgres_rehashed_row_is_detected() -> TestResult {
    rehashed_row_breaks_at_the_next_seq(Backend::Postgres).await
}

#[tokio::test]
async fn postgres_deleted_row_is_detected() -> TestResult {
    deleted_row_breaks_at_its_seq(Backend::Postgres).await
}

#[tokio::test]
async fn postgres_swapped_rows_are_detected() -> TestResult {
    swapped_rows_break_at_the_lower_seq(Backend::Postgres).await
}

/// Two logs with their own pools and mutexes stand for two service instances on one
/// PostgreSQL database. The table lock keeps their appends in one linear chain.
#[tokio::test]
async fn postgres_appends_stay_linear_across_instances() -> TestResult {
    let database = TestDatabase::create(Backend::Postgres).await?;
    let result = appends_stay_linear(&database).await;
    database.remove().await?;
    result
}

async fn appends_stay_linear(database: &TestDatabase) -> TestResult {
    let first = AuditLog::new(stepup_store::open(&database.url, &MIGRATIONS).await?);
    let second = AuditLog::new(stepup_store::open(&database.url, &MIGRATIONS).await?);

    let mut appends = tokio::task::JoinSet::new();
    for index in 0..20 {
        let log = if index % 2 == 0 { &first } else { &second }.clone();
        appends.spawn(async move { log.append(entry(index)).await });
    }
    while let Some(appended) = appends.join_next().await {
        appended??;
    }
    let duplicate = second.append(entry(0)).await?;

    assert!(matches!(duplicate, Appended::Duplicate { .. }));
    assert!(
        matches!(
            first.verify().await?,
            Verification::Intact { records: 20, .. }
        ),
        "the chain of 20 concurrent appends does not verify"
    );

    let pool = database.connect().await?;
    let update = sqlx::query("UPDATE audit_log SET approver = 'mallory' WHERE seq = 7")
        .execute(&pool)
        .await;
    let delete = sqlx::query("DELETE FROM audit_log WHERE seq = 7")
        .execute(&pool)
        .await;
    pool.close().await;
    assert!(update.is_err(), "update was accepted");
    assert!(delete.is_err(), "delete was accepted");
    Ok(())
}
