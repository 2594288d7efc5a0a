//! Identity provider settings, the strength each one is asked for, and the checks that a
//! provider's settings make sense before anything is sent to its IdP.
//!
//! The same [`ProviderSettings`] come from the TOML file and, through the provider store,
//! from the admin API, so both are held to the one list of [`FieldProblem`]s.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use stepup_events::data::{EntraMode, Requirement};
use thiserror::Error;

/// What kind of IdP a provider is, which decides how strength is requested and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// An RFC 9470-compliant OpenID provider (Okta, Keycloak, Auth0, Ping, ...): strength is
    /// requested with `acr_values` and checked on `acr`.
    Oauth2,
    /// Microsoft Entra ID.
    Entra,
}

/// How the token endpoint authenticates the client (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Which ID-token claim identifies the approver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproverBinding {
    /// `email`, compared case-insensitively, accepted only when `email_verified` is true.
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
pub struct ClientSecret(SecretValue);

#[derive(Clone, PartialEq, Eq)]
enum SecretValue {
    /// The value, `env:NAME` or `file:/path`, as configured.
    Configured(String),
    /// Held by another service; this copy of the settings cannot resolve it.
    Withheld,
}

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
    #[error(
        "client secret of provider {provider} is not available in this service: only the verifier resolves client secrets"
    )]
    Withheld { provider: String },
}

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretValue::Configured(value.into()))
    }

    /// A secret that this copy of the settings does not carry, for services that describe a
    /// provider but never authenticate to it.
    pub fn withheld() -> Self {
        Self(SecretValue::Withheld)
    }

    /// Returns `env:NAME` or `file:/path` when the secret is a reference, `None` for a value.
    pub fn reference(&self) -> Option<&str> {
        match &self.0 {
            SecretValue::Configured(text)
                if text.starts_with("env:") || text.starts_with("file:") =>
            {
                Some(text)
            }
            _ => None,
        }
    }

    /// Whether nothing was configured: an empty value, or a reference without a name.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            SecretValue::Configured(text) => {
                let target = text
                    .strip_prefix("env:")
                    .or_else(|| text.strip_prefix("file:"))
                    .unwrap_or(text);
                target.trim().is_empty()
            }
            SecretValue::Withheld => false,
        }
    }

    /// Returns the secret, reading it from the environment (`env:NAME`) or a file
    /// (`file:/path`) when the configured value is a reference.
    pub fn resolve(&self, provider: &str) -> Result<String, SecretError> {
        let text = match &self.0 {
            SecretValue::Configured(text) => text,
            SecretValue::Withheld => {
                return Err(SecretError::Withheld {
                    provider: provider.to_owned(),
                });
            }
        };
        if let Some(name) = text.strip_prefix("env:") {
            return std::env::var(name).map_err(|_| SecretError::MissingEnv {
                provider: provider.to_owned(),
                name: name.to_owned(),
            });
        }
        if let Some(path) = text.strip_prefix("file:") {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                provider: provider.to_owned(),
                path: PathBuf::from(path),
                source,
            })?;
            return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        Ok(text.clone())
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

impl<'de> Deserialize<'de> for ClientSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// One identity provider the approver can be sent to.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "ProviderFile")]
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
    pub acr_values: Vec<String>,
    /// Maximum authentication age sent as `max_age`, in seconds. 0 makes the approver
    /// authenticate during the challenge.
    pub max_age: Option<u64>,
    pub prompt_login: bool,
    pub entra_mode: Option<EntraMode>,
    /// Entra authentication context id, `c1` … `c99` (mode `acrs`).
    pub auth_context: Option<String>,
    pub token_auth_method: TokenAuthMethod,
    /// Which claim identifies the approver: `email` by default, `oid` for Entra.
    pub binding: ApproverBinding,
    /// Signing algorithms accepted on ID tokens. Never taken from discovery, so a token
    /// signed with HS256 and the client secret is rejected unless configured here.
    pub id_token_signing_algs: Vec<String>,
    pub scopes: Vec<String>,
    pub enabled: bool,
}

/// A provider as written in the configuration file. The binding's default depends on the
/// kind, which serde defaults cannot see, so the file form keeps it optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    kind: ProviderKind,
    issuer: String,
    client_id: String,
    client_secret: ClientSecret,
    #[serde(default)]
    acr_values: Vec<String>,
    #[serde(default = "default_max_age")]
    max_age: Option<u64>,
    #[serde(default)]
    prompt_login: bool,
    #[serde(default)]
    entra_mode: Option<EntraMode>,
    #[serde(default)]
    auth_context: Option<String>,
    #[serde(default)]
    token_auth_method: TokenAuthMethod,
    #[serde(default)]
    binding: Option<ApproverBinding>,
    #[serde(default = "default_algorithms")]
    id_token_signing_algs: Vec<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_enabled")]
    enabled: bool,
}

impl From<ProviderFile> for ProviderSettings {
    fn from(file: ProviderFile) -> Self {
        Self {
            binding: file.binding.unwrap_or(default_binding(file.kind)),
            entra_mode: match file.kind {
                ProviderKind::Entra => Some(file.entra_mode.unwrap_or(EntraMode::Oidc)),
                ProviderKind::Oauth2 => file.entra_mode,
            },
            name: file.name,
            kind: file.kind,
            issuer: file.issuer,
            client_id: file.client_id,
            client_secret: file.client_secret,
            acr_values: file.acr_values,
            max_age: file.max_age,
            prompt_login: file.prompt_login,
            auth_context: file.auth_context,
            token_auth_method: file.token_auth_method,
            id_token_signing_algs: file.id_token_signing_algs,
            scopes: file.scopes,
            enabled: file.enabled,
        }
    }
}

fn default_max_age() -> Option<u64> {
    Some(0)
}

/// The signing algorithms accepted when none are configured.
pub fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

/// The scopes requested when none are configured.
pub fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn default_enabled() -> bool {
    true
}

/// The approver binding of a kind when none is configured: Entra's immutable `oid`, else the
/// verified email.
pub fn default_binding(kind: ProviderKind) -> ApproverBinding {
    match kind {
        ProviderKind::Entra => ApproverBinding::Oid,
        ProviderKind::Oauth2 => ApproverBinding::Email,
    }
}

/// ID token signing algorithms the verifier can check.
pub const SUPPORTED_ALGORITHMS: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// Entra tenant names that stand for many tenants. An issuer with one of them cannot be
/// matched against a token's `iss`, and its `tid` would be any tenant's.
const MULTI_TENANT_NAMES: [&str; 3] = ["common", "organizations", "consumers"];

/// One thing wrong with a provider's or policy's settings: the field, a stable machine
/// code, and a sentence that names the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ProviderSettings {
    /// The requirement this provider asks for, with a policy's overrides applied.
    ///
    /// Entra in mode `oidc` always asks for `max_age=0` and `prompt=login`: that mode has no
    /// other way to make the approver authenticate again.
    pub fn requirement(
        &self,
        acr_values_override: Option<&[String]>,
        max_age_override: Option<u64>,
    ) -> Requirement {
        let entra_mode = match self.kind {
            ProviderKind::Entra => Some(self.entra_mode.unwrap_or(EntraMode::Oidc)),
            ProviderKind::Oauth2 => None,
        };
        let max_age = match entra_mode {
            Some(EntraMode::Oidc) => Some(0),
            _ => max_age_override.or(self.max_age),
        };
        let prompt_login = self.prompt_login || entra_mode == Some(EntraMode::Oidc);
        Requirement {
            acr_values: match self.kind {
                ProviderKind::Oauth2 => acr_values_override
                    .map(<[String]>::to_vec)
                    .unwrap_or_else(|| self.acr_values.clone()),
                ProviderKind::Entra => Vec::new(),
            },
            max_age,
            prompt_login,
            entra_mode,
            auth_context: match entra_mode {
                Some(EntraMode::Acrs) => self.auth_context.clone(),
                _ => None,
            },
        }
    }

    /// The Entra tenant of this provider, taken from its issuer.
    pub fn entra_tenant(&self) -> Option<String> {
        match self.kind {
            ProviderKind::Entra => entra_tenant(&self.issuer).ok(),
            ProviderKind::Oauth2 => None,
        }
    }

    /// Lists every problem in the settings at once. Nothing here contacts the IdP; the
    /// discovery checks happen when a provider is saved to the store.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if let Err(message) = check_name(&self.name) {
            problems.push(FieldProblem::new("name", "invalid_name", message));
        }
        if let Err(message) = check_issuer(self.kind, &self.issuer) {
            problems.push(FieldProblem::new("issuer", "invalid_issuer", message));
        }
        if self.client_id.trim().is_empty() {
            problems.push(FieldProblem::new(
                "client_id",
                "missing_client_id",
                "client_id is empty: copy the client (application) id from the IdP's app registration",
            ));
        }
        problems.extend(self.secret_problems());
        problems.extend(self.strength_problems());
        problems.extend(self.protocol_problems());
        problems
    }

    fn secret_problems(&self) -> Option<FieldProblem> {
        if self.client_secret.is_empty() {
            return Some(FieldProblem::new(
                "client_secret",
                "missing_client_secret",
                "client_secret is missing: give the secret from the IdP's app registration, or a reference env:NAME or file:/path",
            ));
        }
        match self.client_secret.reference() {
            Some(reference) if reference.starts_with("file:") => {
                let path = &reference["file:".len()..];
                (!std::path::Path::new(path).is_absolute()).then(|| {
                    FieldProblem::new(
                        "client_secret",
                        "invalid_client_secret",
                        format!("client_secret reference file:{path} is not an absolute path: write file:/path/to/secret"),
                    )
                })
            }
            Some(reference) => {
                let name = &reference["env:".len()..];
                let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                (!valid).then(|| {
                    FieldProblem::new(
                        "client_secret",
                        "invalid_client_secret",
                        format!("client_secret reference env:{name} is not a variable name: use letters, digits and _"),
                    )
                })
            }
            None => None,
        }
    }

    fn strength_problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        for value in &self.acr_values {
            if value.is_empty() || value.chars().any(char::is_whitespace) {
                problems.push(FieldProblem::new(
                    "acr_values",
                    "invalid_acr_values",
                    format!("acr value {value:?} is empty or contains whitespace: acr_values is sent space-separated, so each value must be one token such as urn:okta:loa:2fa:any"),
                ));
            }
        }
        match self.kind {
            ProviderKind::Oauth2 => {
                if self.entra_mode.is_some() || self.auth_context.is_some() {
                    problems.push(FieldProblem::new(
                        "entra_mode",
                        "invalid_entra_mode",
                        "entra_mode and auth_context apply to kind entra only: remove them, or set kind = entra",
                    ));
                }
            }
            ProviderKind::Entra => problems.extend(self.entra_problems()),
        }
        problems
    }

    fn entra_problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if !self.acr_values.is_empty() {
            problems.push(FieldProblem::new(
                "acr_values",
                "invalid_acr_values",
                "Entra ignores acr_values and its v2 ID tokens carry no acr: remove acr_values and use entra_mode acrs with an auth_context instead",
            ));
        }
        match (self.entra_mode.unwrap_or(EntraMode::Oidc), &self.auth_context) {
            (EntraMode::Acrs, None) => problems.push(FieldProblem::new(
                "auth_context",
                "invalid_auth_context",
                "entra_mode acrs needs auth_context: set the authentication context id (c1 to c99) that your Conditional Access policy targets",
            )),
            (EntraMode::Acrs, Some(context)) if !is_auth_context_id(context) => {
                problems.push(FieldProblem::new(
                    "auth_context",
                    "invalid_auth_context",
                    format!("auth_context {context:?} is not an Entra authentication context id: use c1 to c99"),
                ));
            }
            (EntraMode::Oidc, Some(_)) => problems.push(FieldProblem::new(
                "auth_context",
                "invalid_auth_context",
                "auth_context applies to entra_mode acrs only: remove it, or set entra_mode = acrs",
            )),
            (EntraMode::Oidc, None) if self.max_age.is_some_and(|age| age != 0) => {
                problems.push(FieldProblem::new(
                    "max_age",
                    "invalid_max_age",
                    "entra_mode oidc always sends max_age=0 with prompt=login: remove max_age or set it to 0",
                ));
            }
            _ => {}
        }
        problems
    }

    fn protocol_problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if !self.scopes.iter().any(|scope| scope == "openid") {
            problems.push(FieldProblem::new(
                "scopes",
                "invalid_scopes",
                format!("scopes {:?} lack openid, without which the IdP returns no ID token: add openid", self.scopes),
            ));
        }
        if self.id_token_signing_algs.is_empty() {
            problems.push(FieldProblem::new(
                "id_token_signing_algs",
                "invalid_signing_algs",
                "id_token_signing_algs is empty: list the algorithm your IdP signs ID tokens with, usually RS256",
            ));
        }
        for algorithm in &self.id_token_signing_algs {
            if !SUPPORTED_ALGORITHMS.contains(&algorithm.as_str()) {
                problems.push(FieldProblem::new(
                    "id_token_signing_algs",
                    "invalid_signing_algs",
                    format!(
                        "ID token signing algorithm {algorithm:?} is not supported: use one of {}",
                        SUPPORTED_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if self.binding == ApproverBinding::Oid && self.kind != ProviderKind::Entra {
            problems.push(FieldProblem::new(
                "binding",
                "invalid_binding",
                "binding oid needs kind entra, because only Entra ID tokens carry oid: use email, sub or preferred_username",
            ));
        }
        problems
    }
}

/// Checks a provider name: it is a key in the store and a path segment of the admin API.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} is not valid: use 1 to 64 letters, digits, - or _, starting with a letter or digit"
        ))
    }
}

/// Checks an issuer URL for `kind`: https (http only on loopback, for development IdPs),
/// no query or fragment, and for Entra the `{base}/{tenant}/v2.0` shape of one tenant.
pub fn check_issuer(kind: ProviderKind, issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|error| {
        format!("issuer {issuer:?} is not a URL ({error}): use the IdP's issuer identifier, such as https://example.okta.com")
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "issuer {issuer:?} uses plain http: use https (http is accepted only on loopback hosts)"
            ));
        }
        other => {
            return Err(format!(
                "issuer {issuer:?} has scheme {other:?}: use an https URL"
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "issuer {issuer:?} has a query or fragment: use the issuer identifier exactly as the IdP's discovery document names it"
        ));
    }
    if kind == ProviderKind::Entra {
        entra_tenant(issuer)?;
    }
    Ok(())
}

/// Returns the tenant of an Entra issuer `{base}/{tenant}/v2.0`, such as
/// `https://login.microsoftonline.com/{tenant}/v2.0`.
pub fn entra_tenant(issuer: &str) -> Result<String, String> {
    let shape_error = || {
        format!(
            "issuer {issuer:?} is not an Entra v2.0 issuer: use https://login.microsoftonline.com/{{tenant id}}/v2.0"
        )
    };
    let url = url::Url::parse(issuer).map_err(|_| shape_error())?;
    let segments: Vec<&str> = url
        .path_segments()
        .map(|segments| segments.collect())
        .unwrap_or_default();
    let [.., tenant, "v2.0"] = segments.as_slice() else {
        return Err(shape_error());
    };
    if tenant.is_empty() {
        return Err(shape_error());
    }
    if MULTI_TENANT_NAMES.contains(&tenant.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "issuer {issuer:?} names {tenant:?}, which stands for many tenants: use your tenant id, so that only tokens of your tenant are accepted"
        ));
    }
    Ok((*tenant).to_owned())
}

/// Whether `text` is an Entra authentication context id, `c1` to `c99`.
pub fn is_auth_context_id(text: &str) -> bool {
    let Some(number) = text.strip_prefix('c') else {
        return false;
    };
    !number.starts_with('0')
        && number.len() <= 2
        && number.chars().all(|c| c.is_ascii_digit())
        && !number.is_empty()
}

#[cfg(test)]
mod tests;
