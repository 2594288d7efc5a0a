//! Opening and migrating a database on each backend, with the throw-away databases of
//! `stepup_store::testing`.

use stepup_store::testing::{TestDatabase, backends};
use stepup_store::{Backend, Migrations};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("tests/migrations/sqlite"),
    postgres: &sqlx::migrate!("tests/migrations/postgres"),
};

#[tokio::test]
async fn open_migrates_and_queries_each_backend() -> TestResult {
    for backend in backends() {
        let Some(test_database) = TestDatabase::create(backend).await? else {
            continue;
        };
        let database = stepup_store::open(&test_database.url, &MIGRATIONS).await?;
        assert_eq!(database.backend, backend);

        sqlx::query("INSERT INTO items (id, created_at) VALUES ($1, $2)")
            .bind("a")
            .bind(1_i64)
            .execute(&database.pool)
            .await?;
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM items")
            .fetch_one(&database.pool)
            .await?;
        assert_eq!(count, 1, "{backend:?}");
        database.ping().await?;

        // Opening again runs no migration twice.
        let again = stepup_store::open(&test_database.url, &MIGRATIONS).await?;
        again.ping().await?;

        database.pool.close().await;
        again.pool.close().await;
        test_database.remove().await?;
    }
    Ok(())
}

#[tokio::test]
async fn postgres_is_tested_when_configured() {
    let configured = std::env::var(stepup_store::testing::POSTGRES_URL_VARIABLE).is_ok();
    assert_eq!(backends().contains(&Backend::Postgres), configured);
}

#[tokio::test]
async fn unreachable_postgres_is_an_unavailable_error() {
    // Port 1 on loopback refuses connections; the error is the kind `open` retries.
    sqlx::any::install_default_drivers();
    let error = <sqlx::AnyConnection as sqlx::Connection>::connect(
        "postgres://postgres@127.0.0.1:1/postgres",
    )
    .await
    .err();
    assert!(
        error.as_ref().is_some_and(stepup_store::is_unavailable),
        "{error:?}"
    );
}
