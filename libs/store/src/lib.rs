//! Database connections for the services that own state: SQLite (embedded, the default)
//! or PostgreSQL, chosen by the URL's scheme, through sqlx's `Any` driver.
//!
//! Queries written for both backends use `$1`, `$2`, … placeholders in ascending order of
//! first use: PostgreSQL numbers them, and SQLite binds `$N` names in order of appearance.
//! Times are stored as Unix milliseconds (`BIGINT`) and booleans as integers, the types the
//! `Any` driver carries for both.
//!
//! [`testing`] (feature `testing`) gives tests a fresh database on either backend.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions as _};
use thiserror::Error;
use tokio::time::sleep;

pub use sqlx;

#[cfg(feature = "testing")]
pub mod testing;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database could not be opened or migrated.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database URL {url:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl { url: String },
    #[error("opening database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating database {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// Migrations of one service, one set per backend.
#[derive(Debug)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// An open, migrated database.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Database {
    /// Runs a trivial query, so readiness checks notice a database that went away.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Returns the backend a database URL names.
pub fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// Opens the database at `url`, creating an SQLite file when missing, and runs the
/// service's migrations for that backend.
pub async fn open(url: &str, migrations: &Migrations) -> Result<Database, StoreError> {
    install_default_drivers();
    let backend = backend_of(url)?;
    let shown = redact_url(url);
    let connect_error = |source| StoreError::Connect {
        url: shown.clone(),
        source,
    };

    let url = match backend {
        Backend::Sqlite => prepare_sqlite(url).await.map_err(connect_error)?,
        Backend::Postgres => url.to_owned(),
    };
    let pool = connect_with_retry(&url, backend, &shown)
        .await
        .map_err(connect_error)?;

    let migrator = match backend {
        Backend::Sqlite => migrations.sqlite,
        Backend::Postgres => migrations.postgres,
    };
    migrator
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            url: shown.clone(),
            source,
        })?;
    tracing::info!(database = %shown, ?backend, "database ready");
    Ok(Database { pool, backend })
}

/// Opens the pool. A PostgreSQL server that does not answer yet (it is starting, or
/// restarting) is retried with exponential backoff for [`CONNECT_RETRY_FOR`], so services
/// started beside their database do not exit at once.
async fn connect_with_retry(
    url: &str,
    backend: Backend,
    shown: &str,
) -> Result<AnyPool, sqlx::Error> {
    let deadline = std::time::Instant::now() + CONNECT_RETRY_FOR;
    let mut delay = Duration::from_millis(250);
    loop {
        match pool_options(backend).connect(url).await {
            Ok(pool) => return Ok(pool),
            Err(error)
                if backend == Backend::Postgres
                    && is_unavailable(&error)
                    && std::time::Instant::now() + delay < deadline =>
            {
                tracing::warn!(database = %shown, %error, retry_in_ms = delay.as_millis(), "database unavailable; retrying");
                sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

fn pool_options(backend: Backend) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
        .after_connect(move |connection, _| {
            Box::pin(async move {
                // Writers of one SQLite file wait for each other instead of failing at once.
                if backend == Backend::Sqlite {
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(connection)
                        .await?;
                }
                Ok(())
            })
        })
        // A query waits at most this long for a connection, so a database outage turns
        // into errors that callers retry rather than into requests that hang.
        .acquire_timeout(Duration::from_secs(5))
}

/// Whether `error` means the server could not be reached, as opposed to a refusal such as
/// a wrong password or a missing database, which waiting does not fix.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

/// How long [`open`] keeps retrying a PostgreSQL server that does not answer.
pub const CONNECT_RETRY_FOR: Duration = Duration::from_secs(60);

/// Creates the SQLite file in WAL mode and returns the URL to open the pool with.
async fn prepare_sqlite(url: &str) -> Result<String, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    // Opening one connection creates the file and switches it to WAL, which persists.
    let connection = options.connect().await?;
    drop(connection);
    Ok(url.to_owned())
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(backend_of("sqlite:///tmp/x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            backend_of("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(backend_of("mysql://u@h/db").is_err());
    }

    #[test]
    fn password_is_redacted() {
        let shown = redact_url("postgres://stepup:hunter2@127.0.0.1/stepup");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("REDACTED"));
    }
}
