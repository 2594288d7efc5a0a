//! The callback service: the approver-facing HTTP surface of step-up.
//!
//! `GET /stepup/{challenge_id}` binds the challenge to the browser and redirects to the
//! IdP. `GET /auth/callback` hands the authorization response to the challenge service,
//! announces an accepted code to the verifier, and shows the approver the outcome. The
//! service has no client secrets and redeems no codes: the verifier does that.

mod backend;
mod callback;
mod config;
mod cookie;
mod error;
mod limits;
mod outcomes;
mod pages;
mod routes;
mod start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stepup_bus::Bus;
use stepup_bus::stream::ensure_stream;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backend::{Backend, NatsBackend};
pub use config::{Config, ConfigError};
pub use error::PageError;
pub use outcomes::{OUTCOME_SUBJECTS, Waiter, Waiters, decode_outcome};
pub use routes::{AppState, router};

/// The service name: the NATS connection name and the CloudEvents `source` suffix.
pub const SERVICE: &str = "callback";

/// The CloudEvents `source` of this service's events.
pub(crate) const EVENT_SOURCE: &str = "/stepup/callback";

/// The service could not start or stopped with a failure.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connect(#[from] stepup_bus::ConnectError),
    #[error(transparent)]
    Stream(#[from] stepup_bus::stream::StreamError),
    #[error("setting up the outcome subscriptions failed: {0}")]
    Subscribe(#[from] outcomes::SubscribeError),
    #[error("building the HTTP client for identity providers failed: {0}")]
    HttpClient(#[source] stepup_oidc::authorize::DiscoveryError),
    #[error(
        "binding the HTTP listener to {addr} failed: {source}; choose a free address in `listen`"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("a service task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running callback service.
#[derive(Debug)]
pub struct Started {
    /// The address the HTTP server listens on (useful with port 0).
    pub http_addr: SocketAddr,
    tasks: JoinSet<Result<(), Error>>,
}

impl Started {
    /// Waits until every task has stopped, which happens after `shutdown` is cancelled.
    pub async fn wait(self) -> Result<(), Error> {
        stepup_runtime::join_tasks("callback", self.tasks, Error::from).await
    }
}

/// Connects to NATS, subscribes to challenge outcomes, binds the HTTP listener and spawns
/// the server. Returns once requests can be served.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Started, Error> {
    let settings = config.settings()?;

    let bus = Bus::connect(&config.nats, SERVICE).await?;
    ensure_stream(&bus, &config.stream).await?;

    // Subscribe before serving, so no waiter can miss an outcome.
    let waiters = Waiters::new();
    let messages = outcomes::subscribe(&bus).await?;
    let backend = Arc::new(NatsBackend::new(bus, settings.rpc_timeout));
    let state =
        AppState::new(&config, backend, Arc::clone(&waiters))?.with_shutdown(shutdown.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;

    // Outcomes are delivered until the server has stopped, so the pages waiting during
    // shutdown still get theirs.
    let mut tasks = JoinSet::new();
    let server_stopped = CancellationToken::new();
    let deliver_stop = server_stopped.clone();
    let deliver_waiters = Arc::clone(&waiters);
    tasks.spawn(async move {
        outcomes::deliver(messages, deliver_waiters, deliver_stop).await;
        Ok(())
    });
    tasks.spawn(async move {
        let _stopped = server_stopped.drop_guard();
        // The peer address feeds the per-client rate limit.
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(drained(shutdown, waiters, settings.outcome_wait))
            .await
            .map_err(Error::Serve)
    });

    tracing::info!(%http_addr, "callback service listening");
    Ok(Started { http_addr, tasks })
}

/// Resolves once shutdown has begun and no page waits for an outcome, or `max_wait` after
/// shutdown began. Until then the listener keeps serving, so `/readyz` reports 503 rather
/// than refusing connections, and a reload of a waiting page still gets a response.
async fn drained(shutdown: CancellationToken, waiters: Arc<Waiters>, max_wait: Duration) {
    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + max_wait;
    while waiters.waiting_challenges() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the service and waits until it has stopped after `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}
