//! The provider and policy store: two NATS JetStream key-value buckets that every service
//! watches, so a provider or policy saved through the admin API takes effect everywhere
//! without a restart.
//!
//! - [`Registry::open`] creates the buckets when missing, loads the secret keys, and
//!   returns once this process's live [`Catalog`] holds the current records.
//! - Writes are compare-and-set on the bucket revision and return once the local view has
//!   them, so a caller reads its own writes.
//! - Client secrets are stored encrypted with AES-256-GCM ([`crypto`]) or as references
//!   (`env:NAME`, `file:/path`); only the verifier resolves them.
//! - The configuration file's `[[providers]]` and `[[policies]]` seed the buckets
//!   ([`Registry::seed`]).

pub mod catalog;
pub mod checks;
pub mod crypto;
pub mod record;
pub mod seed;
pub mod settings;
pub mod tested;

mod live;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Store};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stepup_bus::Bus;
use stepup_oidc::provider::{ClientSecret, ProviderSettings};
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use catalog::Catalog;
pub use crypto::{CryptoError, KeyError, Keyring};
pub use record::{Origin, PolicyRecord, ProviderRecord, StoredSecret};
pub use settings::RegistrySettings;

use live::Bucket;

/// How many times a compare-and-set write is retried after another writer won.
const WRITE_ATTEMPTS: usize = 5;

/// How many past values each key keeps, for inspection with the NATS tools.
const HISTORY: i64 = 10;

/// An operation on the store failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("creating or updating key-value bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: async_nats::jetstream::context::CreateKeyValueError,
    },
    #[error(
        "the {bucket} bucket was not loaded within {timeout:?}: check that JetStream is enabled and reachable"
    )]
    NotLoaded {
        bucket: &'static str,
        timeout: Duration,
    },
    #[error("{operation} of {key} in bucket {bucket} failed: {source}")]
    Operation {
        operation: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("record {key} in bucket {bucket} does not decode: {source}")]
    Corrupt {
        bucket: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} already exists")]
    Exists { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} kept changing while it was written; try again")]
    Contended { what: String },
    #[error(
        "the write to {what} was stored but did not reach this process's view within {timeout:?}"
    )]
    NotVisible { what: String, timeout: Duration },
}

/// A handle on the store and this process's live view of it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    providers: Store,
    policies: Store,
    view: watch::Sender<Arc<Catalog>>,
    keyring: Arc<Keyring>,
    view_timeout: Duration,
}

impl Registry {
    /// Opens the buckets (creating them when missing), loads the secret keys, and follows
    /// both buckets until `shutdown`. Returns once the current records are in the view.
    pub async fn open(
        bus: &Bus,
        settings: &RegistrySettings,
        shutdown: CancellationToken,
    ) -> Result<Self, RegistryError> {
        let keyring = Keyring::load(
            settings.secret_key.as_deref(),
            &settings.previous_secret_keys,
        )?;
        let providers = bucket(bus, &settings.providers_bucket, settings.replicas).await?;
        let policies = bucket(bus, &settings.policies_bucket, settings.replicas).await?;
        let (view, _) = watch::channel(Arc::new(Catalog::default()));

        let timeout = Duration::from_millis(settings.view_timeout_ms);
        for (store, which) in [
            (&providers, Bucket::Providers),
            (&policies, Bucket::Policies),
        ] {
            let (ready, loaded) = oneshot::channel();
            tokio::spawn(live::follow(
                store.clone(),
                which,
                view.clone(),
                ready,
                shutdown.clone(),
            ));
            match tokio::time::timeout(timeout, loaded).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(RegistryError::NotLoaded {
                        bucket: which.label(),
                        timeout,
                    });
                }
            }
        }

        tracing::info!(
            providers = view.borrow().providers.len(),
            policies = view.borrow().policies.len(),
            secret_key = keyring.current_key_id().unwrap_or("none"),
            "provider and policy store loaded"
        );
        Ok(Self {
            providers,
            policies,
            view,
            keyring: Arc::new(keyring),
            view_timeout: timeout,
        })
    }

    /// The current snapshot of every provider and policy.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.view.borrow().clone()
    }

    /// The provider named `name`, enabled or not.
    pub fn provider(&self, name: &str) -> Option<ProviderRecord> {
        self.view.borrow().provider(name).cloned()
    }

    /// The keys that seal and open client secrets.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Resolves the client secret of `record`. `config_providers` are the `[[providers]]`
    /// of this process's configuration file, for secrets stored as [`StoredSecret::Config`].
    pub fn resolve_secret(
        &self,
        record: &ProviderRecord,
        config_providers: &[ProviderSettings],
    ) -> Result<String, SecretResolveError> {
        match &record.client_secret {
            StoredSecret::Encrypted { .. } => {
                Ok(self.keyring.open(&record.name, &record.client_secret)?)
            }
            StoredSecret::Env { name } => {
                Ok(ClientSecret::new(format!("env:{name}")).resolve(&record.name)?)
            }
            StoredSecret::File { path } => {
                Ok(ClientSecret::new(format!("file:{path}")).resolve(&record.name)?)
            }
            StoredSecret::Config => {
                let configured = config_providers
                    .iter()
                    .find(|provider| provider.name == record.name)
                    .ok_or_else(|| SecretResolveError::NotInConfig {
                        provider: record.name.clone(),
                    })?;
                Ok(configured.client_secret.resolve(&record.name)?)
            }
        }
    }

    /// Turns a configured secret into its stored form: a reference stays a reference, a
    /// value is encrypted with the current key.
    pub fn store_secret(
        &self,
        provider: &str,
        secret: &ClientSecret,
    ) -> Result<StoredSecret, RegistryError> {
        if let Some(stored) = StoredSecret::from_reference(secret) {
            return Ok(stored);
        }
        let value = secret.resolve(provider).map_err(|_| CryptoError::NoKey)?;
        Ok(self.keyring.seal(provider, &value)?)
    }

    /// Stores a new provider; fails with [`RegistryError::Exists`] when the name is taken.
    pub async fn create_provider(&self, record: &ProviderRecord) -> Result<(), RegistryError> {
        let what = format!("provider {}", record.name);
        let revision = create(&self.providers, &record.name, record, &what).await?;
        self.await_view(&what, |catalog| catalog.providers_revision >= revision)
            .await
    }

    /// Changes provider `name` with `change`, retrying when another writer got there first,
    /// and returns the stored record.
    pub async fn update_provider<F>(
        &self,
        name: &str,
        mut change: F,
    ) -> Result<ProviderRecord, RegistryError>
    where
        F: FnMut(&mut ProviderRecord) -> Result<(), RegistryError>,
    {
        let what = format!("provider {name}");
        for _ in 0..WRITE_ATTEMPTS {
            let Some((mut record, revision)) =
                read::<ProviderRecord>(&self.providers, name).await?
            else {
                return Err(RegistryError::NotFound { what });
            };
            change(&mut record)?;
            match update(&self.providers, name, &record, revision).await {
                Ok(Some(stored)) => {
                    self.await_view(&what, |catalog| catalog.providers_revision >= stored)
                        .await?;
                    return Ok(record);
                }
                Ok(None) => continue,
                Err(source) => {
                    return Err(operation_error("update", &self.providers, name, source));
                }
            }
        }
        Err(RegistryError::Contended { what })
    }

    /// Marks provider `name` as tested successfully at `at`.
    pub async fn record_tested(&self, name: &str, at: DateTime<Utc>) -> Result<(), RegistryError> {
        self.update_provider(name, |record| {
            record.last_tested_at = Some(at);
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Deletes provider `name`.
    pub async fn delete_provider(&self, name: &str) -> Result<(), RegistryError> {
        let what = format!("provider {name}");
        if read::<ProviderRecord>(&self.providers, name)
            .await?
            .is_none()
        {
            return Err(RegistryError::NotFound { what });
        }
        self.providers
            .delete(name)
            .await
            .map_err(|source| operation_error("delete", &self.providers, name, Box::new(source)))?;
        self.await_view(&what, |catalog| catalog.provider(name).is_none())
            .await
    }

    /// Stores `record` under its `(policy_id, step_id)`, replacing any policy there, and
    /// returns the one it replaced.
    pub async fn put_policy(
        &self,
        record: &PolicyRecord,
    ) -> Result<Option<PolicyRecord>, RegistryError> {
        let key = record.key();
        let what = format!("policy ({}, {})", record.policy_id, record.step_id);
        let previous = read::<PolicyRecord>(&self.policies, &key)
            .await?
            .map(|(old, _)| old);
        let value = encode(record);
        let revision = self
            .policies
            .put(&key, value)
            .await
            .map_err(|source| operation_error("put", &self.policies, &key, Box::new(source)))?;
        self.await_view(&what, |catalog| catalog.policies_revision >= revision)
            .await?;
        Ok(previous)
    }

    /// Deletes the policy of `(policy_id, step_id)`.
    pub async fn delete_policy(&self, policy_id: &str, step_id: &str) -> Result<(), RegistryError> {
        let key = PolicyRecord::key_of(policy_id, step_id);
        let what = format!("policy ({policy_id}, {step_id})");
        if read::<PolicyRecord>(&self.policies, &key).await?.is_none() {
            return Err(RegistryError::NotFound { what });
        }
        self.policies
            .delete(&key)
            .await
            .map_err(|source| operation_error("delete", &self.policies, &key, Box::new(source)))?;
        self.await_view(&what, |catalog| {
            catalog.policy(policy_id, step_id).is_none()
        })
        .await
    }

    /// Waits, bounded, until the live view satisfies `condition`.
    async fn await_view(
        &self,
        what: &str,
        condition: impl Fn(&Catalog) -> bool,
    ) -> Result<(), RegistryError> {
        let mut receiver = self.view.subscribe();
        let waited = tokio::time::timeout(
            self.view_timeout,
            receiver.wait_for(|catalog| condition(catalog)),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RegistryError::NotVisible {
                what: what.to_owned(),
                timeout: self.view_timeout,
            }),
        }
    }
}

/// A client secret could not be resolved.
#[derive(Debug, Error)]
pub enum SecretResolveError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Reference(#[from] stepup_oidc::provider::SecretError),
    #[error(
        "the client secret of provider {provider} is kept in the configuration file, but this service's file has no provider of that name: add it there, or save the secret through the admin API"
    )]
    NotInConfig { provider: String },
}

async fn bucket(bus: &Bus, name: &str, replicas: usize) -> Result<Store, RegistryError> {
    bus.jetstream()
        .create_or_update_key_value(kv::Config {
            bucket: name.to_owned(),
            description: "step-up providers and policies".to_owned(),
            history: HISTORY,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|source| RegistryError::Bucket {
            bucket: name.to_owned(),
            source,
        })
}

fn encode<T: Serialize>(record: &T) -> Bytes {
    // Records are plain data whose serialization cannot fail.
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}

fn operation_error(
    operation: &'static str,
    store: &Store,
    key: &str,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> RegistryError {
    RegistryError::Operation {
        operation,
        bucket: store.name.clone(),
        key: key.to_owned(),
        source,
    }
}

/// Reads the record under `key` with its revision; `None` when absent or deleted.
async fn read<T: DeserializeOwned>(
    store: &Store,
    key: &str,
) -> Result<Option<(T, u64)>, RegistryError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|source| operation_error("read", store, key, Box::new(source)))?;
    let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&entry.value).map_err(|source| RegistryError::Corrupt {
        bucket: store.name.clone(),
        key: key.to_owned(),
        source,
    })?;
    Ok(Some((record, entry.revision)))
}

/// Creates `key`, also over a deleted one; returns the new revision.
async fn create<T: Serialize>(
    store: &Store,
    key: &str,
    record: &T,
    what: &str,
) -> Result<u64, RegistryError> {
    match store.create(key, encode(record)).await {
        Ok(revision) => Ok(revision),
        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
            Err(RegistryError::Exists {
                what: what.to_owned(),
            })
        }
        Err(error) => Err(operation_error("create", store, key, Box::new(error))),
    }
}

/// Updates `key` if it is still at `revision`; `Ok(None)` when another writer changed it.
async fn update<T: Serialize>(
    store: &Store,
    key: &str,
    record: &T,
    revision: u64,
) -> Result<Option<u64>, Box<dyn std::error::Error + Send + Sync>> {
    match store.update(key, encode(record), revision).await {
        Ok(stored) => Ok(Some(stored)),
        Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(error) => Err(Box::new(error)),
    }
}
