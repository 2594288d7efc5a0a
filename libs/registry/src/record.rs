//! What the buckets hold: one JSON record per provider and per policy.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stepup_events::data::{EntraMode, Requirement};
use stepup_oidc::provider::{
    ApproverBinding, ClientSecret, FieldProblem, ProviderKind, ProviderSettings, TokenAuthMethod,
};

/// The policy id that provider tests use. No policy may be stored under it, and an approval
/// that names it is rejected.
pub const PROVIDER_TEST_POLICY: &str = "stepup:provider-test";

/// The prefix of the approval ids of provider tests.
pub const PROVIDER_TEST_APPROVAL_PREFIX: &str = "stepup-provider-test-";

/// The wildcard that makes a policy a default: `(policy, *)` covers every step of `policy`
/// without a policy of its own, and `(*, *)` covers every step of every policy.
pub const WILDCARD: &str = "*";

/// Where a record came from. Seeding from the configuration file updates only records that
/// came from it, so a change made through the admin API is never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Config,
    Api,
}

/// A client secret as stored: encrypted, or a reference to where the verifier finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum StoredSecret {
    /// AES-256-GCM ciphertext; see [`crate::crypto`].
    Encrypted {
        key_id: String,
        nonce: String,
        ciphertext: String,
    },
    /// An environment variable of the verifier.
    Env { name: String },
    /// A file the verifier reads.
    File { path: String },
    /// The value written in the `[[providers]]` entry of the same name in the verifier's
    /// configuration file. Seeding stores this when no secret key is configured, so a value
    /// from the file never enters the bucket unencrypted.
    Config,
}

impl StoredSecret {
    /// The reference form of a configured secret (`env:NAME`, `file:/path`), if it is one.
    pub fn from_reference(secret: &ClientSecret) -> Option<Self> {
        let reference = secret.reference()?;
        if let Some(name) = reference.strip_prefix("env:") {
            return Some(Self::Env {
                name: name.to_owned(),
            });
        }
        reference.strip_prefix("file:").map(|path| Self::File {
            path: path.to_owned(),
        })
    }
}

/// One identity provider in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The name policies and challenges refer to; also the key in the bucket.
    pub name: String,
    pub kind: ProviderKind,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: StoredSecret,
    #[serde(default)]
    pub acr_values: Vec<String>,
    #[serde(default)]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub prompt_login: bool,
    #[serde(default)]
    pub entra_mode: Option<EntraMode>,
    #[serde(default)]
    pub auth_context: Option<String>,
    pub token_auth_method: TokenAuthMethod,
    pub binding: ApproverBinding,
    pub id_token_signing_algs: Vec<String>,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub origin: Origin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub last_tested_at: Option<DateTime<Utc>>,
}

impl ProviderRecord {
    /// Builds a record from settings whose secret is already in its stored form.
    pub fn from_settings(
        settings: &ProviderSettings,
        client_secret: StoredSecret,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            name: settings.name.clone(),
            kind: settings.kind,
            issuer: settings.issuer.clone(),
            client_id: settings.client_id.clone(),
            client_secret,
            acr_values: settings.acr_values.clone(),
            max_age: settings.max_age,
            prompt_login: settings.prompt_login,
            entra_mode: settings.entra_mode,
            auth_context: settings.auth_context.clone(),
            token_auth_method: settings.token_auth_method,
            binding: settings.binding,
            id_token_signing_algs: settings.id_token_signing_algs.clone(),
            scopes: settings.scopes.clone(),
            enabled: settings.enabled,
            origin,
            created_at: now,
            updated_at: now,
            last_tested_at: None,
        }
    }

    /// The settings the OpenID Connect code works with, carrying `client_secret`.
    pub fn settings(&self, client_secret: ClientSecret) -> ProviderSettings {
        ProviderSettings {
            name: self.name.clone(),
            kind: self.kind,
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret,
            acr_values: self.acr_values.clone(),
            max_age: self.max_age,
            prompt_login: self.prompt_login,
            entra_mode: self.entra_mode,
            auth_context: self.auth_context.clone(),
            token_auth_method: self.token_auth_method,
            binding: self.binding,
            id_token_signing_algs: self.id_token_signing_algs.clone(),
            scopes: self.scopes.clone(),
            enabled: self.enabled,
        }
    }

    /// The requirement this provider asks for, with a policy's overrides applied.
    pub fn requirement(
        &self,
        acr_values_override: Option<&[String]>,
        max_age_override: Option<u64>,
    ) -> Requirement {
        self.settings(ClientSecret::withheld())
            .requirement(acr_values_override, max_age_override)
    }

    /// Whether the protocol and strength settings equal those of `settings`. The secret,
    /// origin and times are not compared.
    pub fn same_settings(&self, settings: &ProviderSettings) -> bool {
        let mine = Self::from_settings(
            &self.settings(ClientSecret::withheld()),
            self.client_secret.clone(),
            self.origin,
            self.created_at,
        );
        let theirs = Self::from_settings(
            settings,
            self.client_secret.clone(),
            self.origin,
            self.created_at,
        );
        mine == theirs
    }
}

/// What one approval step requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub policy_id: String,
    pub step_id: String,
    /// Whether the approver must step up. `false` completes the step at once.
    pub step_up: bool,
    /// The provider that re-authenticates the approver; set exactly when `step_up` is.
    #[serde(default)]
    pub provider: Option<String>,
    /// Replaces the provider's `max_age` for this step, in seconds.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Replaces the provider's allowed `acr` values for this step (kind `oauth2`).
    #[serde(default)]
    pub acr_values: Option<Vec<String>>,
    /// Lets the requester of an approval approve it; off by default.
    #[serde(default)]
    pub allow_self_approval: bool,
    pub origin: Origin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The longest policy or step id accepted, in bytes.
const MAX_ID_BYTES: usize = 200;

impl PolicyRecord {
    /// The bucket key of `(policy_id, step_id)`. Ids are free text in approval events, and
    /// key-value keys allow few characters, so each id is base64url-encoded.
    pub fn key_of(policy_id: &str, step_id: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(policy_id), b64.encode(step_id))
    }

    pub fn key(&self) -> String {
        Self::key_of(&self.policy_id, &self.step_id)
    }

    /// Lists what is wrong with the policy on its own. Whether its provider exists is
    /// checked against the store by the caller.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        for (field, value) in [("policy_id", &self.policy_id), ("step_id", &self.step_id)] {
            if value.trim().is_empty() || value.len() > MAX_ID_BYTES {
                problems.push(FieldProblem::new(
                    field,
                    "invalid_id",
                    format!("{field} {value:?} is empty or longer than {MAX_ID_BYTES} bytes: use the id the approval events carry"),
                ));
            }
        }
        if self.policy_id == PROVIDER_TEST_POLICY {
            problems.push(FieldProblem::new(
                "policy_id",
                "reserved_id",
                format!("policy_id {PROVIDER_TEST_POLICY} is reserved for provider tests: choose another id"),
            ));
        }
        if self.policy_id == WILDCARD && self.step_id != WILDCARD {
            problems.push(FieldProblem::new(
                "step_id",
                "invalid_id",
                "a default policy for every policy id must also cover every step: set step_id to *",
            ));
        }
        match (self.step_up, &self.provider) {
            (true, None) => problems.push(FieldProblem::new(
                "provider",
                "missing_provider",
                "the step requires step-up but names no provider: set provider, or step_up to false",
            )),
            (false, Some(_)) => problems.push(FieldProblem::new(
                "provider",
                "unexpected_provider",
                "the step requires no step-up, so a provider has no effect: remove provider, or set step_up to true",
            )),
            _ => {}
        }
        if !self.step_up && (self.max_age.is_some() || self.acr_values.is_some()) {
            problems.push(FieldProblem::new(
                "max_age",
                "unexpected_override",
                "max_age and acr_values apply only to steps that require step-up: remove them, or set step_up to true",
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(policy_id: &str, step_id: &str, provider: Option<&str>) -> PolicyRecord {
        PolicyRecord {
            policy_id: policy_id.into(),
            step_id: step_id.into(),
            step_up: provider.is_some(),
            provider: provider.map(str::to_owned),
            max_age: None,
            acr_values: None,
            allow_self_approval: false,
            origin: Origin::Api,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn policy_keys_are_valid_bucket_keys() {
        let key = PolicyRecord::key_of("prod access/β", "step 1.2");
        assert!(
            key.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{key}"
        );
        assert_ne!(key, PolicyRecord::key_of("prod access/β", "step 1"));
    }

    #[test]
    fn step_up_policy_needs_provider() {
        let mut record = policy("prod", "security", Some("okta"));
        assert!(record.problems().is_empty());
        record.provider = None;
        let codes: Vec<_> = record.problems().iter().map(|p| p.code).collect();
        assert_eq!(codes, vec!["missing_provider"]);
    }

    #[test]
    fn provider_test_policy_id_is_reserved() {
        let record = policy(PROVIDER_TEST_POLICY, "okta", Some("okta"));
        let codes: Vec<_> = record.problems().iter().map(|p| p.code).collect();
        assert_eq!(codes, vec!["reserved_id"]);
    }

    #[test]
    fn global_default_must_cover_every_step() {
        let record = policy(WILDCARD, "security", Some("okta"));
        let codes: Vec<_> = record.problems().iter().map(|p| p.code).collect();
        assert_eq!(codes, vec!["invalid_id"]);
    }
}
