//! Expires challenges whose time ran out and publishes `stepup.challenge.expired`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::service::SharedService;

/// Challenges expired per sweep, so one sweep never holds the database for long.
const BATCH: i64 = 100;

pub async fn run(service: SharedService, shutdown: CancellationToken) -> Result<(), Error> {
    let interval = Duration::from_secs(service.config.sweep_interval_secs.max(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = sweep(&service).await {
            tracing::warn!(%error, "expiring overdue challenges failed; retrying at the next sweep");
        }
    }
}

async fn sweep(service: &SharedService) -> Result<(), Error> {
    for id in service.store.overdue(service.now(), BATCH).await? {
        if let Some(challenge) = service.store.get(&id).await? {
            service.expire_if_overdue(&challenge).await?;
        }
    }
    Ok(())
}
