//! Configuration of the verifier.
//!
//! Providers come from the store (`stepup_registry`). The `[[providers]]` of the file are
//! read only for client secrets that the store keeps as "in the configuration file".

use serde::Deserialize;
use stepup_bus::NatsSettings;
use stepup_bus::consumer::ConsumerSettings;
use stepup_bus::stream::StreamSettings;
use stepup_oidc::provider::ProviderSettings;
use stepup_registry::RegistrySettings;

/// Settings of the verifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsSettings,
    pub stream: StreamSettings,
    pub consumer: ConsumerSettings,
    /// Address of the health endpoints.
    pub listen: String,
    /// Timeout of each request to an IdP (discovery, JWKS, token), in milliseconds.
    pub idp_timeout_ms: u64,
    /// Request/reply timeout toward the challenge service, in milliseconds.
    pub rpc_timeout_ms: u64,
    /// Tolerated clock difference with the IdPs, in seconds.
    pub clock_skew_secs: u64,
    /// The configuration file's providers, for the secrets the store points back to.
    pub providers: Vec<ProviderSettings>,
    pub registry: RegistrySettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsSettings::default(),
            stream: StreamSettings::default(),
            consumer: ConsumerSettings::default(),
            listen: "127.0.0.1:8082".into(),
            idp_timeout_ms: 10_000,
            rpc_timeout_ms: 5_000,
            clock_skew_secs: 60,
            providers: Vec::new(),
            registry: RegistrySettings::default(),
        }
    }
}
