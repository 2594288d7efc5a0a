//! An immutable snapshot of every provider and policy, as one process currently sees them.

use std::collections::BTreeMap;

use crate::record::{PolicyRecord, ProviderRecord, WILDCARD};

/// Providers by name and policies by bucket key, with the last bucket revision applied to
/// each map.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub providers: BTreeMap<String, ProviderRecord>,
    pub policies: BTreeMap<String, PolicyRecord>,
    pub providers_revision: u64,
    pub policies_revision: u64,
}

impl Catalog {
    /// Builds a catalog from records, for tests and tools.
    pub fn from_records(
        providers: impl IntoIterator<Item = ProviderRecord>,
        policies: impl IntoIterator<Item = PolicyRecord>,
    ) -> Self {
        Self {
            providers: providers
                .into_iter()
                .map(|record| (record.name.clone(), record))
                .collect(),
            policies: policies
                .into_iter()
                .map(|record| (record.key(), record))
                .collect(),
            providers_revision: 0,
            policies_revision: 0,
        }
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderRecord> {
        self.providers.get(name)
    }

    /// The policy of exactly `(policy_id, step_id)`.
    pub fn policy(&self, policy_id: &str, step_id: &str) -> Option<&PolicyRecord> {
        self.policies.get(&PolicyRecord::key_of(policy_id, step_id))
    }

    /// The policy that governs an approval step: its own, else the default of its policy
    /// `(policy_id, *)`, else the global default `(*, *)`.
    pub fn policy_for(&self, policy_id: &str, step_id: &str) -> Option<&PolicyRecord> {
        self.policy(policy_id, step_id)
            .or_else(|| self.policy(policy_id, WILDCARD))
            .or_else(|| self.policy(WILDCARD, WILDCARD))
    }

    /// The policies that name `provider`.
    pub fn policies_using<'a>(
        &'a self,
        provider: &'a str,
    ) -> impl Iterator<Item = &'a PolicyRecord> + 'a {
        self.policies
            .values()
            .filter(move |policy| policy.provider.as_deref() == Some(provider))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::record::Origin;

    fn policy(policy_id: &str, step_id: &str, provider: &str) -> PolicyRecord {
        PolicyRecord {
            policy_id: policy_id.into(),
            step_id: step_id.into(),
            step_up: true,
            provider: Some(provider.into()),
            max_age: None,
            acr_values: None,
            allow_self_approval: false,
            origin: Origin::Api,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn exact_policy_wins_over_defaults() {
        let catalog = Catalog::from_records(
            [],
            [
                policy("prod", "security", "exact"),
                policy("prod", WILDCARD, "policy-default"),
                policy(WILDCARD, WILDCARD, "global-default"),
            ],
        );
        let provider_of = |policy_id: &str, step_id: &str| {
            catalog
                .policy_for(policy_id, step_id)
                .and_then(|p| p.provider.clone())
        };
        assert_eq!(provider_of("prod", "security").as_deref(), Some("exact"));
        assert_eq!(
            provider_of("prod", "other").as_deref(),
            Some("policy-default")
        );
        assert_eq!(
            provider_of("dev", "security").as_deref(),
            Some("global-default")
        );
    }

    #[test]
    fn no_policy_without_default() {
        let catalog = Catalog::from_records([], [policy("prod", "security", "okta")]);
        assert!(catalog.policy_for("prod", "other").is_none());
    }
}
