//! The challenge service: decides per approval step whether step-up is required, issues
//! challenges, and completes each one at most once when a verified authentication that
//! belongs to it arrives.
//!
//! It consumes `stepup.approval.requested`, `stepup.auth.verified` and
//! `stepup.auth.rejected`; it serves the `stepup.rpc.challenge.*` requests of the callback
//! and the verifier; and it expires overdue challenges.

pub mod binding;
pub mod config;
pub mod events;
pub mod policy;
pub mod rpc;
pub mod secrets;
pub mod service;
pub mod store;
mod sweeper;

use std::net::SocketAddr;
use std::sync::Arc;

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
    Consumer(#[from] consumer::ConsumerError),
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
    pub async fn wait(mut self) -> Result<(), Error> {
        let mut first_error = None;
        while let Some(result) = self.tasks.join_next().await {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(join_error) => Error::Task(join_error.to_string()),
            };
            tracing::error!(%error, "challenge task stopped with an error");
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
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
        config,
        clock: chrono::Utc::now,
    });

    let mut tasks = JoinSet::new();
    spawn_rpc(&mut tasks, &service, &shutdown);
    spawn_consumer(&mut tasks, &service, &shutdown);
    tasks.spawn(sweeper::run(service.clone(), shutdown.clone()));
    tasks.spawn(serve_health(listener, bus, shutdown.clone()));

    tracing::info!(%http_addr, "challenge service started");
    Ok(Started { http_addr, tasks })
}

/// Runs the challenge service until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}

fn spawn_consumer(
    tasks: &mut JoinSet<Result<(), Error>>,
    service: &SharedService,
    shutdown: &CancellationToken,
) {
    let service = service.clone();
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
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

async fn serve_health(
    listener: tokio::net::TcpListener,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route(
            "/readyz",
            get(move || {
                let bus = bus.clone();
                async move {
                    if bus.is_connected() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::Listen { address, source })
}
