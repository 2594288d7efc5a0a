//! Throw-away databases for tests, so one test body can run on SQLite and on PostgreSQL.
//!
//! SQLite databases live in a temporary directory. PostgreSQL databases are created on the
//! server that `STEPUP_TEST_POSTGRES_URL` names (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped by [`TestDatabase::remove`].
//! Without the variable, [`TestDatabase::create`] returns `None` for PostgreSQL and the
//! test skips that backend; `scripts/test.sh` sets it.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyPool;
use sqlx::any::install_default_drivers;
use thiserror::Error;

use crate::Backend;

/// Names the admin URL of the PostgreSQL server that tests may create databases on.
pub const POSTGRES_URL_VARIABLE: &str = "STEPUP_TEST_POSTGRES_URL";

/// A test database could not be created or dropped.
#[derive(Debug, Error)]
pub enum TestDatabaseError {
    #[error("creating a temporary directory for the SQLite test database: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("{POSTGRES_URL_VARIABLE} {url:?} has no database name after its last '/'")]
    AdminUrl { url: String },
    #[error("creating or dropping test database {name} on {url}: {source}; is PostgreSQL running?")]
    Admin {
        name: String,
        url: String,
        #[source]
        source: sqlx::Error,
    },
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to open it with [`crate::open`].
    pub url: String,
    pub backend: Backend,
    postgres: Option<PostgresTestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug)]
struct PostgresTestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database on `backend`. Returns `None` for PostgreSQL when
    /// `STEPUP_TEST_POSTGRES_URL` is not set.
    pub async fn create(backend: Backend) -> Result<Option<Self>, TestDatabaseError> {
        match backend {
            Backend::Sqlite => Self::sqlite().map(Some),
            Backend::Postgres => match admin_url() {
                Some(admin_url) => Self::postgres(&admin_url).await.map(Some),
                None => Ok(None),
            },
        }
    }

    fn sqlite() -> Result<Self, TestDatabaseError> {
        let dir = tempfile::Builder::new()
            .prefix("stepup-db-")
            .tempdir()
            .map_err(TestDatabaseError::TempDir)?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Ok(Self {
            url,
            backend: Backend::Sqlite,
            postgres: None,
            _dir: Some(dir),
        })
    }

    async fn postgres(admin_url: &str) -> Result<Self, TestDatabaseError> {
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| TestDatabaseError::AdminUrl {
                url: crate::redact_url(admin_url),
            })?;
        let name = unique_name();
        admin(admin_url, &name, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            postgres: Some(PostgresTestDatabase {
                admin_url: admin_url.to_owned(),
                name,
            }),
            _dir: None,
        })
    }

    /// Drops the PostgreSQL database, closing any connection still open to it, or removes
    /// the SQLite directory.
    pub async fn remove(self) -> Result<(), TestDatabaseError> {
        if let Some(postgres) = &self.postgres {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", postgres.name);
            admin(&postgres.admin_url, &postgres.name, &sql).await?;
        }
        Ok(())
    }
}

/// Returns the backends to run a test on: SQLite always, PostgreSQL when
/// `STEPUP_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if admin_url().is_some() {
        backends.push(Backend::Postgres);
    }
    backends
}

fn admin_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
}

async fn admin(admin_url: &str, name: &str, sql: &str) -> Result<(), TestDatabaseError> {
    install_default_drivers();
    let admin_error = |source| TestDatabaseError::Admin {
        name: name.to_owned(),
        url: crate::redact_url(admin_url),
        source,
    };
    let pool = AnyPool::connect(admin_url).await.map_err(admin_error)?;
    let result = sqlx::query(sql).execute(&pool).await.map_err(admin_error);
    pool.close().await;
    result.map(|_| ())
}

/// Returns a database name no other test process or test of this process uses.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "stepup_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}
