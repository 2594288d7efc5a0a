//! Process wiring shared by the service binaries and the all-in-one `stepup` binary:
//! reading the configuration file, setting up telemetry, and turning SIGINT or SIGTERM
//! into a cancelled shutdown token.

pub mod settings;
mod signal;
mod tasks;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use settings::{Settings, load};
pub use signal::wait_for_shutdown_signal;
pub use tasks::join_tasks;

/// Exit code for configuration errors (`EX_CONFIG` in sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

/// Arguments every single-service binary takes.
#[derive(Debug, Parser)]
struct ServiceArgs {
    /// Configuration file (TOML). Environment variables `STEPUP_<SECTION>__<KEY>` override it.
    #[arg(long, short, env = "STEPUP_CONFIG")]
    config: Option<PathBuf>,

    /// Print logs as JSON lines instead of text.
    #[arg(long, env = "STEPUP_LOG_JSON")]
    log_json: bool,
}

/// Runs one service as its own process: reads its section of the configuration (plus the
/// `shared` top-level keys it uses), sets up telemetry, and runs `run` until SIGINT or
/// SIGTERM.
pub async fn run_service<C, F, Fut, E>(service: &str, shared: &[&str], run: F) -> ExitCode
where
    C: DeserializeOwned,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let args = ServiceArgs::parse();
    let config: C = match load(args.config.as_deref()).and_then(|s| s.service(service, shared)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("stepup-{service}: {error:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = if args.log_json {
        stepup_telemetry::LogFormat::Json
    } else {
        stepup_telemetry::LogFormat::Text
    };
    let _telemetry = match stepup_telemetry::init(&format!("stepup-{service}"), format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("stepup-{service}: setting up telemetry: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    });
    match run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "service stopped with an error");
            eprintln!("stepup-{service}: {error}");
            ExitCode::FAILURE
        }
    }
}
