//! Checks a provider's settings against its IdP's discovery document before it is saved.
//!
//! A problem blocks the save; a warning is returned with the saved provider. Okta, for one,
//! silently ignores `acr_values` it does not support, so a configured value missing from
//! `acr_values_supported` would make every step-up fail later with `acr_not_satisfied`.

use serde::Deserialize;
use stepup_events::data::EntraMode;
use stepup_oidc::provider::{FieldProblem, ProviderKind, ProviderSettings, TokenAuthMethod};

/// The largest discovery document accepted. Real documents are a few kilobytes.
const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// What the discovery checks found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// Problems that make the provider unusable; the save is refused.
    pub problems: Vec<FieldProblem>,
    /// Settings the IdP may not honour; the save goes ahead and the caller shows them.
    pub warnings: Vec<FieldProblem>,
}

/// The fields of a discovery document that the checks read.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    #[serde(default)]
    acr_values_supported: Option<Vec<String>>,
    #[serde(default)]
    claims_parameter_supported: Option<bool>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// Fetches `{issuer}/.well-known/openid-configuration` with `http` (which must not follow
/// redirects) and checks `settings` against it.
pub async fn check_discovery(
    http: &reqwest::Client,
    settings: &ProviderSettings,
) -> DiscoveryReport {
    let url = format!(
        "{}/.well-known/openid-configuration",
        settings.issuer.trim_end_matches('/')
    );
    match fetch(http, &url).await {
        Ok(discovery) => compare(settings, &discovery),
        Err(message) => DiscoveryReport {
            problems: vec![FieldProblem::new("issuer", "discovery_failed", message)],
            warnings: Vec::new(),
        },
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Discovery, String> {
    let unreachable = |error: reqwest::Error| {
        format!(
            "fetching the discovery document {url} failed ({error}): check the issuer URL and that the IdP is reachable from the challenge service"
        )
    };
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!(
            "the discovery document {url} returned HTTP status {}, expected 200 (redirects are not followed): check the issuer URL",
            response.status().as_u16()
        ));
    }

    // Read in chunks so that an endless body is cut off at the limit.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_DISCOVERY_BYTES {
            return Err(format!(
                "the discovery document {url} is larger than {MAX_DISCOVERY_BYTES} bytes: check the issuer URL"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|error| {
        format!("{url} is not an OpenID Connect discovery document ({error}): check the issuer URL")
    })
}

fn compare(settings: &ProviderSettings, discovery: &Discovery) -> DiscoveryReport {
    let mut report = DiscoveryReport::default();

    // 1. OpenID Connect Discovery 1.0, section 4.3: the issuer must match exactly, or
    //    every ID token will fail the iss check.
    if discovery.issuer != settings.issuer {
        report.problems.push(FieldProblem::new(
            "issuer",
            "issuer_mismatch",
            format!(
                "the discovery document names issuer {:?}, but the provider is configured with {:?}: they must be equal character for character (mind a trailing slash); set issuer to the discovery document's value if that is your IdP",
                discovery.issuer, settings.issuer
            ),
        ));
    }

    // 2. Requested acr values the IdP does not list are ignored by some IdPs.
    if let Some(supported) = &discovery.acr_values_supported {
        for value in &settings.acr_values {
            if !supported.contains(value) {
                report.warnings.push(FieldProblem::new(
                    "acr_values",
                    "acr_value_not_supported",
                    format!(
                        "acr value {value:?} is not in the IdP's acr_values_supported {supported:?}: IdPs such as Okta ignore unsupported values, so ID tokens will not carry it and every step-up will fail with acr_not_satisfied; use a listed value"
                    ),
                ));
            }
        }
    }

    // 3. Entra's authentication contexts are requested through the claims parameter.
    let acrs_mode =
        settings.kind == ProviderKind::Entra && settings.entra_mode == Some(EntraMode::Acrs);
    if acrs_mode && discovery.claims_parameter_supported != Some(true) {
        report.problems.push(FieldProblem::new(
            "entra_mode",
            "claims_parameter_not_supported",
            "entra_mode acrs sends the claims request parameter, but the discovery document does not set claims_parameter_supported: use entra_mode oidc, or check that the issuer is an Entra v2.0 endpoint",
        ));
    }

    // 4. The token endpoint must accept the configured client authentication.
    let method = match settings.token_auth_method {
        TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
        TokenAuthMethod::ClientSecretPost => "client_secret_post",
    };
    if let Some(supported) = &discovery.token_endpoint_auth_methods_supported
        && !supported.iter().any(|listed| listed == method)
    {
        report.problems.push(FieldProblem::new(
            "token_auth_method",
            "token_auth_method_not_supported",
            format!("token_auth_method {method} is not in the IdP's token_endpoint_auth_methods_supported {supported:?}: choose a listed method"),
        ));
    }

    // 5. Every authorization request uses PKCE with S256.
    if let Some(supported) = &discovery.code_challenge_methods_supported
        && !supported.iter().any(|listed| listed == "S256")
    {
        report.warnings.push(FieldProblem::new(
            "issuer",
            "pkce_s256_not_listed",
            format!("the IdP lists code_challenge_methods_supported {supported:?} without S256, which every step-up sends: enable PKCE with S256 for the app at the IdP"),
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: serde_json::Value) -> ProviderSettings {
        serde_json::from_value(value).expect("test settings deserialize")
    }

    fn okta() -> ProviderSettings {
        settings(serde_json::json!({
            "name": "okta", "kind": "oauth2", "issuer": "https://example.okta.com",
            "client_id": "c", "client_secret": "s",
            "acr_values": ["urn:okta:loa:2fa:any", "urn:example:unknown"]
        }))
    }

    fn discovery(value: serde_json::Value) -> Discovery {
        serde_json::from_value(value).expect("test discovery deserializes")
    }

    fn codes(problems: &[FieldProblem]) -> Vec<&'static str> {
        problems.iter().map(|problem| problem.code).collect()
    }

    #[test]
    fn issuer_must_match_exactly() {
        let report = compare(
            &okta(),
            &discovery(serde_json::json!({"issuer": "https://example.okta.com/"})),
        );
        assert_eq!(codes(&report.problems), vec!["issuer_mismatch"]);
    }

    #[test]
    fn unlisted_acr_value_is_a_warning() {
        let report = compare(
            &okta(),
            &discovery(serde_json::json!({
                "issuer": "https://example.okta.com",
                "acr_values_supported": ["urn:okta:loa:2fa:any"]
            })),
        );
        assert!(report.problems.is_empty());
        assert_eq!(codes(&report.warnings), vec!["acr_value_not_supported"]);
        assert!(report.warnings[0].message.contains("urn:example:unknown"));
    }

    #[test]
    fn acr_values_unchecked_when_not_published() {
        let report = compare(
            &okta(),
            &discovery(serde_json::json!({"issuer": "https://example.okta.com"})),
        );
        assert_eq!(report, DiscoveryReport::default());
    }

    #[test]
    fn acrs_mode_needs_claims_parameter() {
        let issuer = "https://login.microsoftonline.com/t1/v2.0";
        let entra = settings(serde_json::json!({
            "name": "entra", "kind": "entra", "issuer": issuer,
            "client_id": "c", "client_secret": "s", "entra_mode": "acrs", "auth_context": "c1"
        }));
        let without = compare(&entra, &discovery(serde_json::json!({"issuer": issuer})));
        assert_eq!(
            codes(&without.problems),
            vec!["claims_parameter_not_supported"]
        );

        let with = compare(
            &entra,
            &discovery(serde_json::json!({"issuer": issuer, "claims_parameter_supported": true})),
        );
        assert!(with.problems.is_empty());
    }

    #[test]
    fn unsupported_token_auth_method_is_a_problem() {
        let report = compare(
            &okta(),
            &discovery(serde_json::json!({
                "issuer": "https://example.okta.com",
                "token_endpoint_auth_methods_supported": ["client_secret_post"]
            })),
        );
        assert_eq!(
            codes(&report.problems),
            vec!["token_auth_method_not_supported"]
        );
    }
}
