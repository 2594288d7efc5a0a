//! Seeding the store from the configuration file, and re-encrypting secrets after a key
//! rotation.
//!
//! A `[[providers]]` or `[[policies]]` entry is created when the store lacks it, and updated
//! when the store's record also came from the file and the file changed. A record that was
//! saved through the admin API is left alone, so the API always wins over the file.

use chrono::Utc;
use stepup_oidc::provider::ProviderSettings;
use thiserror::Error;

use crate::record::{Origin, PolicyRecord, ProviderRecord, StoredSecret};
use crate::{Registry, RegistryError};

/// Seeding stopped at one entry.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error("configuration file entry {entry} is invalid: {problems}")]
    Invalid { entry: String, problems: String },
    #[error("seeding {entry} into the store failed: {source}")]
    Store {
        entry: String,
        #[source]
        source: RegistryError,
    },
}

/// What seeding did, for the start-up log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Entries skipped because the store's record was saved through the admin API.
    pub kept_api: usize,
}

impl Registry {
    /// Seeds the store with the configuration file's providers and policies.
    pub async fn seed(
        &self,
        providers: &[ProviderSettings],
        policies: &[PolicyRecord],
    ) -> Result<SeedSummary, SeedError> {
        let mut summary = SeedSummary::default();
        for provider in providers {
            self.seed_provider(provider, &mut summary).await?;
        }
        for policy in policies {
            self.seed_policy(policy, &mut summary).await?;
        }
        tracing::info!(
            created = summary.created,
            updated = summary.updated,
            unchanged = summary.unchanged,
            kept_api = summary.kept_api,
            "store seeded from the configuration file"
        );
        Ok(summary)
    }

    async fn seed_provider(
        &self,
        settings: &ProviderSettings,
        summary: &mut SeedSummary,
    ) -> Result<(), SeedError> {
        let entry = format!("provider {}", settings.name);
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(SeedError::Invalid {
                entry,
                problems: join(&problems),
            });
        }
        let store_error = |source| SeedError::Store {
            entry: entry.clone(),
            source,
        };

        let existing = self.provider(&settings.name);
        match existing {
            None => {
                let secret = self.seed_secret(settings).map_err(store_error)?;
                let record =
                    ProviderRecord::from_settings(settings, secret, Origin::Config, Utc::now());
                match self.create_provider(&record).await {
                    Ok(()) => summary.created += 1,
                    // Another instance seeded it first.
                    Err(RegistryError::Exists { .. }) => summary.unchanged += 1,
                    Err(error) => return Err(store_error(error)),
                }
            }
            Some(record) if record.origin == Origin::Api => {
                tracing::info!(provider = %settings.name, "provider was saved through the admin API; its configuration file entry is not applied");
                summary.kept_api += 1;
            }
            Some(record)
                if record.same_settings(settings) && self.same_secret(&record, settings) =>
            {
                summary.unchanged += 1;
            }
            Some(_) => {
                let secret = self.seed_secret(settings).map_err(store_error)?;
                self.update_provider(&settings.name, |record| {
                    let fresh = ProviderRecord::from_settings(
                        settings,
                        secret.clone(),
                        Origin::Config,
                        Utc::now(),
                    );
                    *record = ProviderRecord {
                        created_at: record.created_at,
                        last_tested_at: record.last_tested_at,
                        ..fresh
                    };
                    Ok(())
                })
                .await
                .map_err(store_error)?;
                summary.updated += 1;
            }
        }
        Ok(())
    }

    /// The stored form of a file's secret: references stay references; a value is
    /// encrypted when a key is configured, else left in the file ([`StoredSecret::Config`]).
    fn seed_secret(&self, settings: &ProviderSettings) -> Result<StoredSecret, RegistryError> {
        if let Some(stored) = StoredSecret::from_reference(&settings.client_secret) {
            return Ok(stored);
        }
        if self.keyring().current_key_id().is_none() {
            return Ok(StoredSecret::Config);
        }
        self.store_secret(&settings.name, &settings.client_secret)
    }

    fn same_secret(&self, record: &ProviderRecord, settings: &ProviderSettings) -> bool {
        if let Some(reference) = StoredSecret::from_reference(&settings.client_secret) {
            return record.client_secret == reference;
        }
        match &record.client_secret {
            StoredSecret::Config => self.keyring().current_key_id().is_none(),
            StoredSecret::Encrypted { .. } => {
                let stored = self.keyring().open(&record.name, &record.client_secret);
                let configured = settings.client_secret.resolve(&settings.name);
                matches!((stored, configured), (Ok(a), Ok(b)) if a == b)
            }
            StoredSecret::Env { .. } | StoredSecret::File { .. } => false,
        }
    }

    async fn seed_policy(
        &self,
        policy: &PolicyRecord,
        summary: &mut SeedSummary,
    ) -> Result<(), SeedError> {
        let entry = format!("policy ({}, {})", policy.policy_id, policy.step_id);
        let problems = policy.problems();
        if !problems.is_empty() {
            return Err(SeedError::Invalid {
                entry,
                problems: join(&problems),
            });
        }

        let catalog = self.catalog();
        let existing = catalog.policy(&policy.policy_id, &policy.step_id);
        let record = match existing {
            Some(existing) if existing.origin == Origin::Api => {
                tracing::info!(policy = %policy.policy_id, step = %policy.step_id, "policy was saved through the admin API; its configuration file entry is not applied");
                summary.kept_api += 1;
                return Ok(());
            }
            Some(existing) if same_policy(existing, policy) => {
                summary.unchanged += 1;
                return Ok(());
            }
            Some(existing) => {
                summary.updated += 1;
                PolicyRecord {
                    created_at: existing.created_at,
                    origin: Origin::Config,
                    ..policy.clone()
                }
            }
            None => {
                summary.created += 1;
                PolicyRecord {
                    origin: Origin::Config,
                    ..policy.clone()
                }
            }
        };
        self.put_policy(&record)
            .await
            .map(|_| ())
            .map_err(|source| SeedError::Store { entry, source })
    }

    /// Re-encrypts, with the current key, every client secret sealed with an earlier key,
    /// and returns how many were re-encrypted. Secrets no configured key opens are left as
    /// they are and logged.
    pub async fn reencrypt_secrets(&self) -> Result<usize, RegistryError> {
        let Some(current) = self.keyring().current_key_id().map(str::to_owned) else {
            return Ok(0);
        };
        let stale: Vec<String> = self
            .catalog()
            .providers
            .values()
            .filter(|record| matches!(&record.client_secret, StoredSecret::Encrypted { key_id, .. } if *key_id != current))
            .map(|record| record.name.clone())
            .collect();

        let mut count = 0;
        for name in stale {
            let result = self
                .update_provider(&name, |record| {
                    let plaintext = self.keyring().open(&record.name, &record.client_secret)?;
                    record.client_secret = self.keyring().seal(&record.name, &plaintext)?;
                    Ok(())
                })
                .await;
            match result {
                Ok(_) => count += 1,
                Err(error) => {
                    tracing::warn!(provider = %name, %error, "client secret not re-encrypted")
                }
            }
        }
        if count > 0 {
            tracing::info!(count, key_id = %current, "client secrets re-encrypted with the current key");
        }
        Ok(count)
    }
}

fn same_policy(stored: &PolicyRecord, configured: &PolicyRecord) -> bool {
    stored.step_up == configured.step_up
        && stored.provider == configured.provider
        && stored.max_age == configured.max_age
        && stored.acr_values == configured.acr_values
        && stored.allow_self_approval == configured.allow_self_approval
}

fn join(problems: &[stepup_oidc::provider::FieldProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
