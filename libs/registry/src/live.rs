//! The live view: each bucket is watched from its current values onward, and every change
//! replaces this process's [`Catalog`] snapshot, so a provider saved through the admin API
//! reaches every service without a restart.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation, Store};
use futures::StreamExt as _;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::record::{PolicyRecord, ProviderRecord};

/// How long a broken watch waits before it is set up again.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Which half of the catalog a bucket fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    Providers,
    Policies,
}

impl Bucket {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Providers => "providers",
            Self::Policies => "policies",
        }
    }
}

/// Follows `store` until `shutdown`, applying every entry to the catalog in `view`. `ready`
/// fires once the values that existed when the watch began have been applied.
pub(crate) async fn follow(
    store: Store,
    bucket: Bucket,
    view: watch::Sender<Arc<Catalog>>,
    ready: oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let mut ready = Some(ready);
    let mut resume_from: Option<u64> = None;
    while !shutdown.is_cancelled() {
        // 1. The last revision now in the bucket: the initial load ends when it is applied.
        let last = match last_revision(&store).await {
            Ok(last) => last,
            Err(error) => {
                tracing::warn!(bucket = %store.name, %error, "reading the bucket state failed; retrying");
                pause(&shutdown).await;
                continue;
            }
        };
        if last == 0 || resume_from.is_some_and(|next| next > last) {
            signal(&mut ready);
        }

        // 2. The latest value of every key first, then every change; after a broken
        //    watch, every change since the last one applied.
        let watch = match resume_from {
            None => store.watch_with_history(">").await,
            Some(next) => store.watch_all_from_revision(next).await,
        };
        let mut watch = match watch {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(bucket = %store.name, %error, "watching the bucket failed; retrying");
                pause(&shutdown).await;
                continue;
            }
        };

        // 3. Apply entries until the watch ends or the service stops.
        loop {
            let entry = tokio::select! {
                () = shutdown.cancelled() => return,
                entry = watch.next() => entry,
            };
            match entry {
                Some(Ok(entry)) => {
                    apply(&view, bucket, &entry);
                    resume_from = Some(entry.revision + 1);
                    if entry.revision >= last {
                        signal(&mut ready);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(bucket = %store.name, %error, "bucket watch reported an error");
                }
                None => {
                    tracing::warn!(bucket = %store.name, "bucket watch ended; watching again");
                    break;
                }
            }
        }
        pause(&shutdown).await;
    }
}

async fn last_revision(store: &Store) -> Result<u64, async_nats::jetstream::stream::InfoError> {
    Ok(store.stream.get_info().await?.state.last_sequence)
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(REWATCH_DELAY) => {}
    }
}

fn signal(ready: &mut Option<oneshot::Sender<()>>) {
    if let Some(sender) = ready.take() {
        // The opener may have given up waiting; the view keeps following anyway.
        let _ = sender.send(());
    }
}

/// Applies one bucket entry to the catalog. A record that does not decode is dropped from
/// the view, so a corrupt provider is unknown rather than half-read.
pub(crate) fn apply(view: &watch::Sender<Arc<Catalog>>, bucket: Bucket, entry: &Entry) {
    let removed = matches!(entry.operation, Operation::Delete | Operation::Purge);
    view.send_modify(|catalog| {
        let catalog = Arc::make_mut(catalog);
        match bucket {
            Bucket::Providers => {
                catalog.providers_revision = catalog.providers_revision.max(entry.revision);
                let record = (!removed)
                    .then(|| decode::<ProviderRecord>(entry))
                    .flatten();
                match record {
                    Some(record) => catalog.providers.insert(entry.key.clone(), record),
                    None => catalog.providers.remove(&entry.key),
                };
            }
            Bucket::Policies => {
                catalog.policies_revision = catalog.policies_revision.max(entry.revision);
                let record = (!removed).then(|| decode::<PolicyRecord>(entry)).flatten();
                match record {
                    Some(record) => catalog.policies.insert(entry.key.clone(), record),
                    None => catalog.policies.remove(&entry.key),
                };
            }
        }
    });
}

fn decode<T: serde::de::DeserializeOwned>(entry: &Entry) -> Option<T> {
    match serde_json::from_slice(&entry.value) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(bucket = %entry.bucket, key = %entry.key, %error, "ignoring a record that does not decode; save it again through the admin API");
            None
        }
    }
}
