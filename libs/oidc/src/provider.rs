//! Identity provider settings and the strength each one is asked for.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use stepup_events::data::{EntraMode, Requirement};
use thiserror::Error;

/// What kind of IdP a provider is, which decides how strength is requested and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// An RFC 9470-compliant OpenID provider (Okta, Keycloak, Auth0, Ping, ...): strength is
    /// requested with `acr_values` and checked on `acr`.
    Oauth2,
    /// Microsoft Entra ID.
    Entra,
}

/// How the token endpoint authenticates the client (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Which ID-token claim identifies the approver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproverBinding {
    /// `email`, compared case-insensitively, accepted only when `email_verified` is true.
    #[default]
    Email,
    /// `sub` (with `iss`), compared with the approval's `approver.idp_subject`.
    Sub,
    /// Entra's `oid`, compared with the approval's `approver.idp_subject`.
    Oid,
    /// `preferred_username`, compared case-insensitively with the approver's email.
    PreferredUsername,
}

/// A client secret, or a reference to where it is kept. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

/// A client secret reference could not be resolved.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("client secret of provider {provider}: environment variable {name} is not set")]
    MissingEnv { provider: String, name: String },
    #[error("client secret of provider {provider}: reading {path}: {source}")]
    File {
        provider: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret, reading it from the environment (`env:NAME`) or a file
    /// (`file:/path`) when the configured value is a reference.
    pub fn resolve(&self, provider: &str) -> Result<String, SecretError> {
        if let Some(name) = self.0.strip_prefix("env:") {
            return std::env::var(name).map_err(|_| SecretError::MissingEnv {
                provider: provider.to_owned(),
                name: name.to_owned(),
            });
        }
        if let Some(path) = self.0.strip_prefix("file:") {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                provider: provider.to_owned(),
                path: PathBuf::from(path),
                source,
            })?;
            return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        Ok(self.0.clone())
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

impl<'de> Deserialize<'de> for ClientSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// One identity provider the approver can be sent to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The name policies refer to.
    pub name: String,
    pub kind: ProviderKind,
    /// The issuer identifier; discovery is read from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or `env:NAME` / `file:/path`.
    pub client_secret: ClientSecret,
    /// Allowed `acr` values, most preferred first (kind `oauth2`).
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Maximum authentication age sent as `max_age`, in seconds. 0 makes the approver
    /// authenticate during the challenge.
    #[serde(default = "default_max_age")]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub prompt_login: bool,
    #[serde(default)]
    pub entra_mode: Option<EntraMode>,
    /// Entra authentication context id, `c1` … `c99` (mode `acrs`).
    #[serde(default)]
    pub auth_context: Option<String>,
    #[serde(default)]
    pub token_auth_method: TokenAuthMethod,
    #[serde(default)]
    pub binding: ApproverBinding,
    /// Signing algorithms accepted on ID tokens. Never taken from discovery, so a token
    /// signed with HS256 and the client secret is rejected unless configured here.
    #[serde(default = "default_algorithms")]
    pub id_token_signing_algs: Vec<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_max_age() -> Option<u64> {
    Some(0)
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn default_enabled() -> bool {
    true
}

impl ProviderSettings {
    /// The requirement this provider asks for, with a policy's overrides applied.
    pub fn requirement(
        &self,
        acr_values_override: Option<&[String]>,
        max_age_override: Option<u64>,
    ) -> Requirement {
        let entra_mode = match self.kind {
            ProviderKind::Entra => Some(self.entra_mode.unwrap_or(EntraMode::Oidc)),
            ProviderKind::Oauth2 => None,
        };
        let prompt_login = self.prompt_login || entra_mode == Some(EntraMode::Oidc);
        Requirement {
            acr_values: acr_values_override
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| self.acr_values.clone()),
            max_age: max_age_override.or(self.max_age),
            prompt_login,
            entra_mode,
            auth_context: match entra_mode {
                Some(EntraMode::Acrs) => self.auth_context.clone(),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let secret = ClientSecret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn secret_reference_reads_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("stepup-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("secret");
        std::fs::write(&path, "from-file\n")?;
        let secret = ClientSecret::new(format!("file:{}", path.display()));
        assert_eq!(secret.resolve("p")?, "from-file");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn missing_env_reference_names_the_variable() {
        let secret = ClientSecret::new("env:STEPUP_TEST_SECRET_THAT_IS_NOT_SET");
        let error = secret.resolve("okta").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("STEPUP_TEST_SECRET_THAT_IS_NOT_SET")));
    }
}
