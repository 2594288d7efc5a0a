//! Parsing and checking admin API request bodies.
//!
//! Bodies are read as loose JSON first, so that a wrong value (an unknown kind, a context
//! id out of range) is reported as a [`FieldProblem`] that names the field and the fix
//! instead of a generic parse error.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use stepup_oidc::provider::{ClientSecret, FieldProblem, ProviderSettings};

use super::error::ApiError;

/// The largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A provider as the API receives it. Every field but `name`, `kind`, `issuer`,
/// `client_id` and `client_secret` has the same default as in the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// The value, `env:NAME` or `file:/path`. Left out on update, the stored secret stays.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub acr_values: Option<Vec<String>>,
    #[serde(default)]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub prompt_login: Option<bool>,
    #[serde(default)]
    pub entra_mode: Option<String>,
    #[serde(default)]
    pub auth_context: Option<String>,
    #[serde(default)]
    pub token_auth_method: Option<String>,
    #[serde(default)]
    pub binding: Option<String>,
    #[serde(default)]
    pub id_token_signing_algs: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for ProviderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderInput")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// A policy as the API receives it; the ids come from the path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    #[serde(default = "default_step_up")]
    pub step_up: bool,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub acr_values: Option<Vec<String>>,
    #[serde(default)]
    pub allow_self_approval: bool,
}

fn default_step_up() -> bool {
    true
}

/// The body of a provider test request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// The tester's email, sent as `login_hint` and matched by the `email` and
    /// `preferred_username` bindings.
    #[serde(default)]
    pub approver_email: Option<String>,
    /// The tester's subject at the IdP (`sub`, or `oid` for Entra), for those bindings.
    #[serde(default)]
    pub approver_idp_subject: Option<String>,
}

/// Parses a JSON body; an empty body is the type's default when `empty_ok` is set.
pub fn parse_body<T: DeserializeOwned + Default>(
    body: &[u8],
    empty_ok: bool,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) && empty_ok {
        return Ok(T::default());
    }
    parse_json(body)
}

/// Parses a JSON body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::InvalidJson(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    serde_json::from_slice(body).map_err(|error| ApiError::InvalidJson(error.to_string()))
}

/// The allowed choices of each enumerated field, with a hint for the message.
const CHOICES: [(&str, &str, &[&str], &str); 4] = [
    (
        "kind",
        "unknown_kind",
        &["oauth2", "entra"],
        "oauth2 (Okta, Keycloak, Auth0, Ping and other RFC 9470 providers) or entra (Microsoft Entra ID)",
    ),
    (
        "entra_mode",
        "invalid_entra_mode",
        &["oidc", "acrs"],
        "oidc (require re-authentication) or acrs (require an authentication context)",
    ),
    (
        "token_auth_method",
        "invalid_token_auth_method",
        &["client_secret_basic", "client_secret_post"],
        "client_secret_basic or client_secret_post",
    ),
    (
        "binding",
        "invalid_binding",
        &["email", "sub", "oid", "preferred_username"],
        "email, sub, oid or preferred_username",
    ),
];

impl ProviderInput {
    /// Builds the settings, with `name` from the path when the body has none. `secret` is
    /// the secret to check: the body's, or a stand-in when an update keeps the stored one.
    /// Returns every problem found.
    pub fn into_settings(
        self,
        path_name: Option<&str>,
        secret: ClientSecret,
    ) -> Result<ProviderSettings, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let name = match (path_name, &self.name) {
            (Some(path), Some(body)) if path != body => {
                problems.push(FieldProblem::new(
                    "name",
                    "name_mismatch",
                    format!("the body names provider {body:?} but the path names {path:?}: a provider cannot be renamed; create a new one and delete the old one"),
                ));
                path.to_owned()
            }
            (Some(path), _) => path.to_owned(),
            (None, Some(body)) => body.clone(),
            (None, None) => {
                problems.push(missing("name", "the name policies refer to, such as okta"));
                String::new()
            }
        };
        for (field, value, hint) in [
            ("kind", &self.kind, "oauth2 or entra"),
            (
                "issuer",
                &self.issuer,
                "the IdP's issuer URL, such as https://example.okta.com",
            ),
            (
                "client_id",
                &self.client_id,
                "the client (application) id from the IdP",
            ),
        ] {
            if value.is_none() {
                problems.push(missing(field, hint));
            }
        }
        for (field, code, allowed, hint) in CHOICES {
            let value = match field {
                "kind" => &self.kind,
                "entra_mode" => &self.entra_mode,
                "token_auth_method" => &self.token_auth_method,
                _ => &self.binding,
            };
            if let Some(value) = value
                && !allowed.contains(&value.as_str())
            {
                problems.push(FieldProblem::new(
                    field,
                    code,
                    format!("{field} {value:?} is not supported: use {hint}"),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let mut file = serde_json::json!({
            "name": name,
            "kind": self.kind,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": "",
        });
        let optional = [
            ("acr_values", serde_json::to_value(&self.acr_values)),
            ("max_age", serde_json::to_value(self.max_age)),
            ("prompt_login", serde_json::to_value(self.prompt_login)),
            ("entra_mode", serde_json::to_value(&self.entra_mode)),
            ("auth_context", serde_json::to_value(&self.auth_context)),
            (
                "token_auth_method",
                serde_json::to_value(&self.token_auth_method),
            ),
            ("binding", serde_json::to_value(&self.binding)),
            (
                "id_token_signing_algs",
                serde_json::to_value(&self.id_token_signing_algs),
            ),
            ("scopes", serde_json::to_value(&self.scopes)),
            ("enabled", serde_json::to_value(self.enabled)),
        ];
        for (field, value) in optional {
            if let Ok(value) = value
                && !value.is_null()
            {
                file[field] = value;
            }
        }
        let mut settings: ProviderSettings = serde_json::from_value(file)
            .map_err(|error| vec![FieldProblem::new("body", "invalid_json", error.to_string())])?;
        settings.client_secret = secret;

        let problems = settings.problems();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

fn missing(field: &str, hint: &str) -> FieldProblem {
    let code = if field == "client_secret" {
        "missing_client_secret"
    } else {
        "missing_field"
    };
    FieldProblem::new(field, code, format!("{field} is missing: give {hint}"))
}

/// The secret to check and store for a create request: the body's, which must be there.
pub fn required_secret(input: &ProviderInput) -> Result<ClientSecret, Vec<FieldProblem>> {
    match &input.client_secret {
        Some(secret) => Ok(ClientSecret::new(secret.clone())),
        None => Err(vec![missing(
            "client_secret",
            "the secret from the IdP's app registration, or a reference env:NAME or file:/path",
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: serde_json::Value) -> ProviderInput {
        serde_json::from_value(value).expect("test input deserializes")
    }

    fn codes(result: Result<ProviderSettings, Vec<FieldProblem>>) -> Vec<(String, &'static str)> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|problem| (problem.field, problem.code))
            .collect()
    }

    fn okta() -> serde_json::Value {
        serde_json::json!({
            "name": "okta", "kind": "oauth2", "issuer": "https://example.okta.com",
            "client_id": "c", "client_secret": "s", "acr_values": ["urn:okta:loa:2fa:any"]
        })
    }

    #[test]
    fn valid_input_builds_settings() {
        let settings = input(okta())
            .into_settings(None, ClientSecret::new("s"))
            .expect("valid");
        assert_eq!(settings.max_age, Some(0));
        assert_eq!(settings.scopes, vec!["openid", "email", "profile"]);
    }

    #[test]
    fn unknown_kind_names_the_choices() {
        let mut value = okta();
        value["kind"] = "saml".into();
        let problems = input(value)
            .into_settings(None, ClientSecret::new("s"))
            .err()
            .unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, "unknown_kind");
        assert!(problems[0].message.contains("entra"));
    }

    #[test]
    fn missing_fields_are_all_listed() {
        let result = input(serde_json::json!({})).into_settings(None, ClientSecret::new("s"));
        assert_eq!(
            codes(result),
            vec![
                ("name".to_owned(), "missing_field"),
                ("kind".to_owned(), "missing_field"),
                ("issuer".to_owned(), "missing_field"),
                ("client_id".to_owned(), "missing_field"),
            ]
        );
    }

    #[test]
    fn path_name_must_match_body() {
        let result = input(okta()).into_settings(Some("other"), ClientSecret::new("s"));
        assert_eq!(codes(result), vec![("name".to_owned(), "name_mismatch")]);
    }

    #[test]
    fn create_needs_secret() {
        let mut value = okta();
        value
            .as_object_mut()
            .map(|object| object.remove("client_secret"));
        let problems = required_secret(&input(value)).err().unwrap_or_default();
        assert_eq!(problems[0].code, "missing_client_secret");
    }

    #[test]
    fn unknown_field_is_invalid_json() {
        let mut value = okta();
        value["colour"] = "blue".into();
        let result = parse_json::<ProviderInput>(value.to_string().as_bytes());
        assert!(
            matches!(result, Err(ApiError::InvalidJson(message)) if message.contains("colour"))
        );
    }
}
