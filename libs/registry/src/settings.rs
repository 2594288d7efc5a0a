//! Settings of the provider and policy store, shared by every service that opens it.

use serde::Deserialize;

/// Where the store lives and which keys protect the client secrets in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Key-value bucket of the providers.
    pub providers_bucket: String,
    /// Key-value bucket of the policies.
    pub policies_bucket: String,
    /// Copies of each bucket kept in a NATS cluster (1 for a single server).
    pub replicas: usize,
    /// The key that encrypts client secrets, as `env:NAME` or `file:/path`. The variable or
    /// file holds 32 random bytes in base64 (`openssl rand -base64 32`). Without it, the
    /// store accepts only secret references (`env:NAME`, `file:/path`).
    pub secret_key: Option<String>,
    /// Earlier keys, as `env:NAME` or `file:/path`, still accepted for decryption while
    /// secrets are re-encrypted with `secret_key` (see docs/providers.md).
    pub previous_secret_keys: Vec<String>,
    /// How long fetching an IdP's discovery document may take when a provider is saved, in
    /// milliseconds.
    pub discovery_timeout_ms: u64,
    /// How long a write waits until this process's live view contains it, in milliseconds.
    pub view_timeout_ms: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            providers_bucket: "stepup_providers".into(),
            policies_bucket: "stepup_policies".into(),
            replicas: 1,
            secret_key: None,
            previous_secret_keys: Vec::new(),
            discovery_timeout_ms: 5_000,
            view_timeout_ms: 5_000,
        }
    }
}
