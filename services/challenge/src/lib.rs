//! The challenge service: decides per approval step whether step-up is required, issues
//! challenges, and completes each one at most once when a verified authentication that
//! belongs to it arrives.
//!
//! It consumes `stepup.approval.requested`, `stepup.auth.verified` and
//! `stepup.auth.rejected`; it serves the `stepup.rpc.challenge.*` requests of the callback
//! and the verifier; it expires overdue challenges; and it serves the admin API for
//! providers, policies and provider tests (`admin`, documented in `openapi.yaml`).

pub mod admin;
pub mod binding;
pub mod config;
pub mod events;
pub mod outbox;
pub mod policy;
pub mod rpc;
pub mod secrets;
pub mod service;
pub mod store;
mod sweeper;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use stepup_bus::consumer::{self, ConsumerSpec};
use stepup_bus::{Bus, rpc as bus_rpc};
use stepup_events::subject;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, PolicySettings};

use service::{Service, SharedService};

/// The migrations of the challenge database.
pub static MIGRATIONS: stepup_store::Migrations = stepup_store::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

/// The challenge service failed to start or stopped with an error.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    #[error(transparent)]
    Connect(#[from] stepup_bus::ConnectError),
    #[error(transparent)]
    Stream(#[from] stepup_bus::stream::StreamError),
    #[error(transparent)]
    Database(#[from] stepup_store::StoreError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Publish(#[from] stepup_bus::PublishError),
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
    #[error(transparent)]
    Registry(#[from] stepup_registry::RegistryError),
    #[error(transparent)]
    Seed(#[from] stepup_registry::seed::SeedError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        subject: &'static str,
        #[source]
        source: stepup_bus::SubscribeError,
    },
    #[error("binding health endpoint {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("challenge state is inconsistent: {0}")]
    Inconsistent(String),
    #[error("a challenge task failed: {0}")]
    Task(String),
}

/// A started challenge service.
#[derive(Debug)]
pub struct Started {
    pub http_addr: SocketAddr,
    tasks: JoinSet<Result<(), Error>>,
}

impl Started {
    /// Waits until every task has stopped, which happens after `shutdown` is cancelled.
    pub async fn wait(self) -> Result<(), Error> {
        stepup_runtime::join_tasks("challenge", self.tasks, |failure| {
            Error::Task(failure.to_string())
        })
        .await
    }
}

/// Starts the challenge service and returns once it consumes, serves and listens.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Started, Error> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }

    let bus = Bus::connect(&config.nats, "challenge").await?;
    stepup_bus::stream::ensure_stream(&bus, &config.stream).await?;
    let database = stepup_store::open(&config.database_url, &MIGRATIONS).await?;
    let registry = open_registry(&bus, &config, &shutdown).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| Error::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| Error::Listen {
        address: config.listen.clone(),
        source,
    })?;

    let service: SharedService = Arc::new(Service {
        bus: bus.clone(),
        store: store::ChallengeStore::new(database.pool.clone()),
        outbox: outbox::Outbox::new(database.pool.clone(), database.backend),
        config,
        registry,
        clock: chrono::Utc::now,
    });
    let admin_routes = admin::router(admin::AdminState::new(service.clone())?);

    // The health listener outlives the consumer: during the shutdown grace period it
    // reports 503 on /readyz while the events in flight finish.
    let drained = CancellationToken::new();
    let mut tasks = JoinSet::new();
    spawn_rpc(&mut tasks, &service, &shutdown);
    spawn_consumer(&mut tasks, &service, &shutdown, drained.clone());
    tasks.spawn(sweeper::run(service.clone(), shutdown.clone()));
    {
        let relay = service
            .outbox
            .clone()
            .run(service.bus.clone(), shutdown.clone());
        tasks.spawn(async move {
            relay.await;
            Ok(())
        });
    }
    let readiness = Readiness {
        bus,
        database,
        shutdown: shutdown.clone(),
    };
    tasks.spawn(serve_health(listener, readiness, admin_routes, drained));

    tracing::info!(%http_addr, "challenge service started");
    Ok(Started { http_addr, tasks })
}

/// Opens the provider and policy store, seeds it from the configuration file, and
/// re-encrypts secrets sealed with an earlier key.
async fn open_registry(
    bus: &Bus,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<stepup_registry::Registry, Error> {
    let registry = stepup_registry::Registry::open(bus, &config.registry, shutdown.clone()).await?;
    let now = chrono::Utc::now();
    let policies: Vec<_> = config.policies.iter().map(|p| p.to_record(now)).collect();
    registry.seed(&config.providers, &policies).await?;
    registry.reencrypt_secrets().await?;
    Ok(registry)
}

/// Runs the challenge service until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}

/// Spawns the event consumer; `drained` is cancelled when it has stopped.
fn spawn_consumer(
    tasks: &mut JoinSet<Result<(), Error>>,
    service: &SharedService,
    shutdown: &CancellationToken,
    drained: CancellationToken,
) {
    let service = service.clone();
    let shutdown = shutdown.clone();
    let drained = drained.drop_guard();
    tasks.spawn(async move {
        let _drained = drained;
        let spec = ConsumerSpec {
            service: "challenge".into(),
            durable: "challenge".into(),
            filter_subjects: vec![
                subject::APPROVAL_REQUESTED.into(),
                subject::AUTH_VERIFIED.into(),
                subject::AUTH_REJECTED.into(),
            ],
        };
        let settings = service.config.consumer.clone();
        let stream = service.config.stream.name.clone();
        consumer::run(
            &service.bus,
            &stream,
            &spec,
            &settings,
            shutdown,
            |delivery| {
                let service = service.clone();
                async move { events::handle(&service, delivery).await }
            },
        )
        .await?;
        Ok(())
    });
}

fn spawn_rpc(
    tasks: &mut JoinSet<Result<(), Error>>,
    service: &SharedService,
    shutdown: &CancellationToken,
) {
    let queue = "challenge";
    {
        let (bus, service, shutdown) = (service.bus.clone(), service.clone(), shutdown.clone());
        tasks.spawn(async move {
            bus_rpc::serve(
                &bus,
                subject::RPC_CHALLENGE_START,
                queue,
                shutdown,
                move |request| {
                    let service = service.clone();
                    async move { rpc::start(&service, request).await }
                },
            )
            .await
            .map_err(|source| Error::Subscribe {
                subject: subject::RPC_CHALLENGE_START,
                source,
            })
        });
    }
    {
        let (bus, service, shutdown) = (service.bus.clone(), service.clone(), shutdown.clone());
        tasks.spawn(async move {
            bus_rpc::serve(
                &bus,
                subject::RPC_CHALLENGE_CALLBACK,
                queue,
                shutdown,
                move |request| {
                    let service = service.clone();
                    async move { rpc::callback(&service, request).await }
                },
            )
            .await
            .map_err(|source| Error::Subscribe {
                subject: subject::RPC_CHALLENGE_CALLBACK,
                source,
            })
        });
    }
    {
        let (bus, service, shutdown) = (service.bus.clone(), service.clone(), shutdown.clone());
        tasks.spawn(async move {
            bus_rpc::serve(
                &bus,
                subject::RPC_CHALLENGE_REDEMPTION,
                queue,
                shutdown,
                move |request| {
                    let service = service.clone();
                    async move { rpc::redemption(&service, request).await }
                },
            )
            .await
            .map_err(|source| Error::Subscribe {
                subject: subject::RPC_CHALLENGE_REDEMPTION,
                source,
            })
        });
    }
}

/// How long `/readyz` waits for the database to complete a query.
const DATABASE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The dependencies and the shutdown state that `/readyz` checks.
#[derive(Debug, Clone)]
struct Readiness {
    bus: Bus,
    database: stepup_store::Database,
    /// Cancelled when shutdown begins.
    shutdown: CancellationToken,
}

impl Readiness {
    /// Returns 503 from the start of shutdown, so that no new work is routed here while
    /// the events in flight finish, and while NATS is disconnected or the database does
    /// not complete a query within [`DATABASE_PING_TIMEOUT`].
    async fn status(&self) -> StatusCode {
        if !accepts_work(self.shutdown.is_cancelled(), self.bus.is_connected()) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        database_status(&self.database).await
    }
}

/// Returns whether the process may be sent work: shutdown has not begun and NATS is up.
fn accepts_work(shutting_down: bool, bus_connected: bool) -> bool {
    !shutting_down && bus_connected
}

/// Returns 200 when `database` completes a query within [`DATABASE_PING_TIMEOUT`], else 503.
async fn database_status(database: &stepup_store::Database) -> StatusCode {
    match tokio::time::timeout(DATABASE_PING_TIMEOUT, database.ping()).await {
        Ok(Ok(())) => StatusCode::OK,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: the database query failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = DATABASE_PING_TIMEOUT.as_millis(),
                "readiness check: the database did not answer in time"
            );
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Serves health, metrics and the admin API until `drained` is cancelled, which happens
/// when the consumer has stopped after shutdown began.
async fn serve_health(
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    admin_routes: Router,
    drained: CancellationToken,
) -> Result<(), Error> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route(
            "/metrics",
            get(|| async { stepup_telemetry::metrics::http_response() }),
        )
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.status().await }
            }),
        )
        .merge(admin_routes);
    axum::serve(listener, app)
        .with_graceful_shutdown(drained.cancelled_owned())
        .await
        .map_err(|source| Error::Listen { address, source })
}

#[cfg(test)]
mod tests {
    use stepup_store::Backend;
    use stepup_store::testing::TestDatabase;

    use super::*;

    #[test]
    fn accepts_work_only_while_running_and_connected() {
        assert!(accepts_work(false, true));
        assert!(!accepts_work(true, true), "shutdown has begun");
        assert!(!accepts_work(false, false), "NATS is disconnected");
    }

    #[tokio::test]
    async fn database_ready_while_it_answers() {
        let test_database = TestDatabase::create(Backend::Sqlite)
            .await
            .unwrap()
            .unwrap();
        let database = stepup_store::open(&test_database.url, &MIGRATIONS)
            .await
            .unwrap();
        assert_eq!(database_status(&database).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn database_not_ready_once_unreachable() {
        let test_database = TestDatabase::create(Backend::Sqlite)
            .await
            .unwrap()
            .unwrap();
        let database = stepup_store::open(&test_database.url, &MIGRATIONS)
            .await
            .unwrap();
        // A closed pool fails every query, as a pool whose server went away does.
        database.pool.close().await;
        assert_eq!(
            database_status(&database).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
