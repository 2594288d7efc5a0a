//! Start-up and shutdown: connects to NATS, opens the database, spawns the consumer, the
//! audit stream publisher and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use stepup_bus::consumer::{self, ConsumerError, ConsumerSpec};
use stepup_bus::stream::{self, StreamError};
use stepup_bus::{Bus, ConnectError};
use stepup_events::subject::STREAM_SUBJECTS;
use stepup_store::StoreError;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;
use crate::consume::{self, DURABLE};
use crate::http::{self, AppState};
use crate::log::{AuditLog, MIGRATIONS};
use crate::publish::{self, Publisher};

/// The service name: the NATS connection name, event source and dead-letter subject.
pub const SERVICE: &str = "audit";

/// The audit service failed to start or stopped with an error.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    AuditStream(#[from] publish::StreamError),
    #[error("binding the audit HTTP listener to {addr}: {source}; is the port in use?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error("serving the audit HTTP API: {0}")]
    Serve(#[source] std::io::Error),
    #[error("an audit service task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running audit service.
#[derive(Debug)]
pub struct Started {
    /// The address the HTTP API listens on.
    pub http_addr: SocketAddr,
    consumer: JoinHandle<Result<(), Error>>,
    publisher: JoinHandle<()>,
    server: JoinHandle<Result<(), Error>>,
}

impl Started {
    /// Waits until the consumer and the HTTP server have stopped, which they do after
    /// `shutdown` is cancelled or when either fails.
    pub async fn wait(self) -> Result<(), Error> {
        let consumed = self.consumer.await;
        let published = self.publisher.await;
        let served = self.server.await;
        consumed??;
        published?;
        served??;
        Ok(())
    }
}

/// Starts the audit service and returns once it consumes events and serves HTTP.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Started, Error> {
    let bus = Bus::connect(&config.nats, SERVICE).await?;
    stream::ensure_stream(&bus, &config.stream).await?;
    publish::ensure_audit_stream(&bus, &config.audit_stream).await?;
    let database = stepup_store::open(&config.database_url, &MIGRATIONS).await?;
    let log = AuditLog::new(database);
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

    // A failing task stops the other one too, so the process exits and can be restarted.
    let stop = shutdown.child_token();
    let publisher = Publisher::new(bus.clone(), log.clone(), config.audit_stream.clone());
    let publisher = tokio::spawn(
        publisher
            .run(stop.clone())
            .instrument(tracing::info_span!("audit_stream")),
    );
    // The HTTP listener outlives the consumer: during the shutdown grace period it
    // reports 503 on /readyz while the events in flight finish.
    let drained = CancellationToken::new();
    let consumer = tokio::spawn(consume_events(
        bus.clone(),
        log.clone(),
        config,
        stop.clone(),
        drained.clone(),
    ));
    let server = tokio::spawn(serve_http(listener, bus, log, stop, drained));

    tracing::info!(%http_addr, "audit service started");
    Ok(Started {
        http_addr,
        consumer,
        publisher,
        server,
    })
}

/// Starts the audit service and waits until it stops.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}

/// Runs the consumer until `stop`; `drained` is cancelled when it has stopped.
async fn consume_events(
    bus: Bus,
    log: AuditLog,
    config: Config,
    stop: CancellationToken,
    drained: CancellationToken,
) -> Result<(), Error> {
    let _drained = drained.drop_guard();
    let spec = ConsumerSpec {
        service: SERVICE.to_owned(),
        durable: DURABLE.to_owned(),
        filter_subjects: STREAM_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
    };
    let handler = |delivery| {
        let log = log.clone();
        async move { consume::handle(&log, delivery).await }
    };

    let result = consumer::run(
        &bus,
        &config.stream.name,
        &spec,
        &config.consumer,
        stop.clone(),
        handler,
    )
    .await;
    if let Err(error) = &result {
        tracing::error!(%error, "audit consumer failed; stopping the service");
        stop.cancel();
    }
    Ok(result?)
}

/// Serves the HTTP API until `drained` is cancelled, which happens when the consumer has
/// stopped after `stop`.
async fn serve_http(
    listener: tokio::net::TcpListener,
    bus: Bus,
    log: AuditLog,
    stop: CancellationToken,
    drained: CancellationToken,
) -> Result<(), Error> {
    let client = bus.client().clone();
    let state = AppState {
        log,
        nats_connected: Arc::new(move || {
            client.connection_state() == async_nats::connection::State::Connected
        }),
        shutdown: stop.clone(),
    };

    let result = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(drained.cancelled_owned())
        .into_future()
        .instrument(tracing::info_span!("http"))
        .await;
    if let Err(error) = &result {
        tracing::error!(%error, "audit HTTP server failed; stopping the service");
        stop.cancel();
    }
    result.map_err(Error::Serve)
}
