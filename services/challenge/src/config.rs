//! Configuration of the challenge service.
//!
//! Providers and policies live in the store (`stepup_registry`); the `[[providers]]` and
//! `[[policies]]` of the file seed it at start.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use stepup_bus::NatsSettings;
use stepup_bus::consumer::ConsumerSettings;
use stepup_bus::stream::StreamSettings;
use stepup_oidc::provider::{ClientSecret, ProviderSettings};
use stepup_registry::{Origin, PolicyRecord, RegistrySettings};

/// What a policy requires for one approval step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    pub policy_id: String,
    pub step_id: String,
    /// Whether the approver must step up. `false` completes the step at once.
    #[serde(default = "default_step_up")]
    pub step_up: bool,
    /// The provider that re-authenticates the approver; required when `step_up` is true.
    #[serde(default)]
    pub provider: Option<String>,
    /// Replaces the provider's `max_age` for this step, in seconds.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Replaces the provider's allowed `acr` values for this step.
    #[serde(default)]
    pub acr_values: Option<Vec<String>>,
    /// Lets the requester of an approval approve it. Off by default: such an approval is
    /// rejected with `self_approval`.
    #[serde(default)]
    pub allow_self_approval: bool,
}

fn default_step_up() -> bool {
    true
}

impl PolicySettings {
    /// The store record of this file entry.
    pub fn to_record(&self, now: DateTime<Utc>) -> PolicyRecord {
        PolicyRecord {
            policy_id: self.policy_id.clone(),
            step_id: self.step_id.clone(),
            step_up: self.step_up,
            provider: self.provider.clone(),
            max_age: self.max_age,
            acr_values: self.acr_values.clone(),
            allow_self_approval: self.allow_self_approval,
            origin: Origin::Config,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Settings of the challenge service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsSettings,
    pub stream: StreamSettings,
    pub consumer: ConsumerSettings,
    /// sqlx database URL: `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Address of the health endpoints and the admin API.
    pub listen: String,
    /// Public base URL of the callback service; step-up links and the OAuth `redirect_uri`
    /// are built from it.
    pub public_url: String,
    /// How long an approver has to complete a challenge, in seconds.
    pub challenge_ttl_secs: u64,
    /// How often overdue challenges are expired, in seconds.
    pub sweep_interval_secs: u64,
    /// Request/reply timeout toward other services, in milliseconds.
    pub rpc_timeout_ms: u64,
    /// Providers that seed the store.
    pub providers: Vec<ProviderSettings>,
    /// Policies that seed the store.
    pub policies: Vec<PolicySettings>,
    pub registry: RegistrySettings,
    /// The bearer token of the admin API, as the value, `env:NAME` or `file:/path`. Without
    /// it, the admin API answers every request with 503.
    pub admin_token: Option<ClientSecret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsSettings::default(),
            stream: StreamSettings::default(),
            consumer: ConsumerSettings::default(),
            database_url: "sqlite://.stepup/challenge.db?mode=rwc".into(),
            listen: "127.0.0.1:8081".into(),
            public_url: "http://127.0.0.1:8080".into(),
            challenge_ttl_secs: 600,
            sweep_interval_secs: 5,
            rpc_timeout_ms: 5_000,
            providers: Vec::new(),
            policies: Vec::new(),
            registry: RegistrySettings::default(),
            admin_token: None,
        }
    }
}

impl Config {
    /// Lists every problem in the configuration at once, so an operator fixes them in one go.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if url::Url::parse(&self.public_url).is_err() {
            problems.push(format!(
                "public_url {:?} is not a URL: use the callback's external base URL, such as https://stepup.example.com",
                self.public_url
            ));
        }
        for provider in &self.providers {
            for problem in provider.problems() {
                problems.push(format!("provider {}: {problem}", provider.name));
            }
        }
        for policy in &self.policies {
            let name = format!("policy ({}, {})", policy.policy_id, policy.step_id);
            for problem in policy.to_record(Utc::now()).problems() {
                problems.push(format!("{name}: {problem}"));
            }
        }
        problems
    }
}
