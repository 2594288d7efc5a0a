//! The verifier service: redeems the authorization code of each challenge at the IdP and
//! validates the ID token against the step's requirement.
//!
//! It runs on the internal network and is the only service that holds client secrets. It
//! consumes `stepup.auth.code_received`, fetches the code and PKCE verifier from the
//! challenge service over request/reply (they are never in an event), and publishes
//! `stepup.auth.verified` or `stepup.auth.rejected`.

mod config;
mod redeem;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use stepup_bus::Bus;
use stepup_bus::consumer::{self, ConsumerSpec};
use stepup_events::subject;
use stepup_oidc::verify::TokenVerifier;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// The verifier failed to start or stopped with an error.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] stepup_bus::ConnectError),
    #[error(transparent)]
    Stream(#[from] stepup_bus::stream::StreamError),
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
    #[error(transparent)]
    Registry(#[from] stepup_registry::RegistryError),
    #[error("building the HTTP client toward identity providers: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("binding health endpoint {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a verifier task failed: {0}")]
    Task(String),
}

/// A started verifier.
#[derive(Debug)]
pub struct Started {
    pub http_addr: SocketAddr,
    tasks: JoinSet<Result<(), Error>>,
}

impl Started {
    /// Waits until every task has stopped, which happens after `shutdown` is cancelled.
    pub async fn wait(self) -> Result<(), Error> {
        stepup_runtime::join_tasks("verifier", self.tasks, |failure| {
            Error::Task(failure.to_string())
        })
        .await
    }
}

/// Starts the verifier and returns once it consumes and listens.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Started, Error> {
    let bus = Bus::connect(&config.nats, "verifier").await?;
    stepup_bus::stream::ensure_stream(&bus, &config.stream).await?;
    let registry =
        stepup_registry::Registry::open(&bus, &config.registry, shutdown.clone()).await?;
    let http = stepup_oidc::http::idp_client(Duration::from_millis(config.idp_timeout_ms))?;
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

    let skew = chrono::TimeDelta::seconds(i64::try_from(config.clock_skew_secs).unwrap_or(60));
    let verifier = Arc::new(redeem::Verifier {
        bus: bus.clone(),
        tokens: TokenVerifier::new(http, skew),
        registry,
        config,
    });

    // The health listener outlives the consumer: during the shutdown grace period it
    // reports 503 on /readyz while the events in flight finish.
    let drained = CancellationToken::new();
    let mut tasks = JoinSet::new();
    {
        let (verifier, shutdown) = (verifier.clone(), shutdown.clone());
        let drained = drained.clone().drop_guard();
        tasks.spawn(async move {
            let _drained = drained;
            let spec = ConsumerSpec {
                service: "verifier".into(),
                durable: "verifier".into(),
                filter_subjects: vec![subject::AUTH_CODE_RECEIVED.into()],
            };
            let settings = verifier.config.consumer.clone();
            let stream = verifier.config.stream.name.clone();
            consumer::run(
                &verifier.bus,
                &stream,
                &spec,
                &settings,
                shutdown,
                |delivery| {
                    let verifier = verifier.clone();
                    async move { verifier.handle(delivery).await }
                },
            )
            .await?;
            Ok(())
        });
    }
    tasks.spawn(serve_health(listener, bus, shutdown, drained));

    tracing::info!(%http_addr, "verifier started");
    Ok(Started { http_addr, tasks })
}

/// Runs the verifier until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}

/// Serves `/healthz`, `/readyz` and `/metrics` until `drained` is cancelled, which happens
/// when the consumer has stopped after `shutdown`.
async fn serve_health(
    listener: tokio::net::TcpListener,
    bus: Bus,
    shutdown: CancellationToken,
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
                let ready = readiness(shutdown.is_cancelled(), bus.is_connected());
                async move { ready }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(drained.cancelled_owned())
        .await
        .map_err(|source| Error::Listen { address, source })
}

/// Returns the `/readyz` status: 503 from the start of shutdown, so that no new work is
/// routed here while the events in flight finish, and while NATS is disconnected.
fn readiness(shutting_down: bool, bus_connected: bool) -> StatusCode {
    if shutting_down || !bus_connected {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_while_connected_and_running() {
        assert_eq!(readiness(false, true), StatusCode::OK);
    }

    #[test]
    fn not_ready_once_shutdown_begins() {
        assert_eq!(readiness(true, true), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn not_ready_without_nats() {
        assert_eq!(readiness(false, false), StatusCode::SERVICE_UNAVAILABLE);
    }
}
