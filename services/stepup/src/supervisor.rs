//! Runs a set of services in this process until SIGINT or SIGTERM.

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::cli::LogFormat;
use stepup_runtime::Settings;

const SERVICES: [&str; 4] = ["challenge", "callback", "verifier", "audit"];

/// Parses `all` or a comma-separated list of service names.
pub fn parse_services(list: &str) -> anyhow::Result<Vec<&'static str>> {
    if list.trim() == "all" {
        return Ok(SERVICES.to_vec());
    }
    let mut chosen = Vec::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let Some(known) = SERVICES.iter().find(|known| **known == name) else {
            anyhow::bail!(
                "unknown service {name:?}: choose from {} or all",
                SERVICES.join(", ")
            );
        };
        if !chosen.contains(known) {
            chosen.push(*known);
        }
    }
    if chosen.is_empty() {
        anyhow::bail!("no service named: pass all or a list such as challenge,verifier");
    }
    Ok(chosen)
}

pub async fn run(settings: &Settings, services: &str, format: LogFormat) -> anyhow::Result<()> {
    let services = parse_services(services)?;
    let format = match format {
        LogFormat::Text => stepup_telemetry::LogFormat::Text,
        LogFormat::Json => stepup_telemetry::LogFormat::Json,
    };
    let _telemetry = stepup_telemetry::init("stepup", format).context("setting up telemetry")?;

    let shutdown = CancellationToken::new();
    let mut running: Vec<(&str, BoxFuture<'static, anyhow::Result<()>>)> = Vec::new();
    for name in services {
        let waiter = start(settings, name, shutdown.clone())
            .await
            .with_context(|| format!("starting the {name} service"));
        match waiter {
            Ok(waiter) => running.push((name, waiter)),
            Err(error) => {
                shutdown.cancel();
                for (name, waiter) in running {
                    if let Err(stop_error) = waiter.await {
                        tracing::warn!(service = name, error = %format!("{stop_error:#}"), "service stopped with an error");
                    }
                }
                return Err(error);
            }
        }
    }

    stepup_runtime::wait_for_shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();

    let mut failed = None;
    for (name, waiter) in running {
        if let Err(error) = waiter.await {
            tracing::error!(service = name, error = %format!("{error:#}"), "service stopped with an error");
            failed.get_or_insert(error);
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn start(
    settings: &Settings,
    name: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
    let providers_and_policies = ["public_url", "providers", "policies", "registry"];
    Ok(match name {
        "challenge" => {
            let config = settings.service("challenge", &providers_and_policies)?;
            let started = stepup_challenge::start(config, shutdown).await?;
            Box::pin(async move { Ok(started.wait().await?) })
        }
        "callback" => {
            let config = settings.service("callback", &["public_url"])?;
            let started = stepup_callback::start(config, shutdown).await?;
            Box::pin(async move { Ok(started.wait().await?) })
        }
        "verifier" => {
            let config = settings.service("verifier", &["providers", "registry"])?;
            let started = stepup_verifier::start(config, shutdown).await?;
            Box::pin(async move { Ok(started.wait().await?) })
        }
        "audit" => {
            let config = settings.service("audit", &[])?;
            let started = stepup_audit::start(config, shutdown).await?;
            Box::pin(async move { Ok(started.wait().await?) })
        }
        other => anyhow::bail!("unknown service {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_services;

    #[test]
    fn all_means_every_service() {
        assert_eq!(
            parse_services("all").ok(),
            Some(vec!["challenge", "callback", "verifier", "audit"])
        );
    }

    #[test]
    fn list_is_parsed_and_deduplicated() {
        assert_eq!(
            parse_services("verifier, challenge,verifier").ok(),
            Some(vec!["verifier", "challenge"])
        );
    }

    #[test]
    fn unknown_service_is_rejected() {
        assert!(parse_services("challenge,billing").is_err());
    }
}
