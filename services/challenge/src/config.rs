//! Configuration of the challenge service.

use serde::Deserialize;
use stepup_bus::NatsSettings;
use stepup_bus::consumer::ConsumerSettings;
use stepup_bus::stream::StreamSettings;
use stepup_oidc::provider::ProviderSettings;

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
}

fn default_step_up() -> bool {
    true
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
    /// Address of the health endpoints.
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
    pub providers: Vec<ProviderSettings>,
    pub policies: Vec<PolicySettings>,
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
        for policy in &self.policies {
            let name = format!("policy ({}, {})", policy.policy_id, policy.step_id);
            match (&policy.provider, policy.step_up) {
                (None, true) => problems.push(format!(
                    "{name} requires step-up but names no provider: set provider, or step_up = false"
                )),
                (Some(provider), true) if !self.providers.iter().any(|p| &p.name == provider) => {
                    problems.push(format!(
                        "{name} names provider {provider:?}, which is not configured"
                    ));
                }
                _ => {}
            }
        }
        problems
    }
}
