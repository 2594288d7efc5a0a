//! The authorization request: where to send the approver's browser and with which
//! parameters.
//!
//! [`AuthorizationEndpoints`] reads each issuer's `authorization_endpoint` from its OpenID
//! Connect discovery document and caches it for a while, so that opening a step-up link
//! costs no IdP round trip most of the time. [`authorization_url`] turns an endpoint and the
//! challenge's [`AuthorizationParams`] into the URL the browser is redirected to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use stepup_events::rpc::AuthorizationParams;
use thiserror::Error;
use url::Url;

use crate::http::idp_client;

/// How long a discovered endpoint is reused when the caller does not choose.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(10 * 60);

/// How long a discovery request may take when the caller does not choose.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest discovery document accepted. Real documents are a few kilobytes.
const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// The authorization endpoint of an issuer could not be discovered.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("building the HTTP client for discovery failed: {0}")]
    Client(#[source] reqwest::Error),
    #[error(
        "invalid issuer URL {issuer:?}: {reason}; configure an https URL (http only on loopback)"
    )]
    InvalidIssuer { issuer: String, reason: String },
    #[error("fetching {url} failed: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} returned HTTP status {status}, expected 200 (redirects are not followed)")]
    Status { url: String, status: u16 },
    #[error("{url} returned more than {MAX_DISCOVERY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} is not a valid discovery document: {source}")]
    Document {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("discovery document at {url} names issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("invalid authorization_endpoint {endpoint:?} in {url}: {reason}")]
    InvalidEndpoint {
        url: String,
        endpoint: String,
        reason: String,
    },
}

/// The fields of a discovery document that the authorization request needs.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    /// RFC 9207 section 3: absent means false.
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

#[derive(Debug, Clone)]
struct CachedEndpoint {
    endpoint: Url,
    iss_parameter_supported: bool,
    fetched_at: Instant,
}

/// A cache of authorization endpoints, one per issuer, filled from OpenID Connect discovery.
#[derive(Debug)]
pub struct AuthorizationEndpoints {
    http: reqwest::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedEndpoint>>,
}

impl AuthorizationEndpoints {
    /// Creates a cache with its own [`idp_client`], which follows no redirects and gives up
    /// after `timeout`. Endpoints are reused for `ttl`.
    pub fn new(timeout: Duration, ttl: Duration) -> Result<Self, DiscoveryError> {
        let http = idp_client(timeout).map_err(DiscoveryError::Client)?;
        Ok(Self::with_client(http, ttl))
    }

    /// Creates a cache that fetches with `http`. The client must not follow redirects: a
    /// redirect would let another origin respond for the issuer.
    pub fn with_client(http: reqwest::Client, ttl: Duration) -> Self {
        Self {
            http,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the authorization endpoint of `issuer`, from the cache while it is fresh,
    /// else from `{issuer}/.well-known/openid-configuration`. Failures are not cached.
    pub async fn authorization_endpoint(&self, issuer: &str) -> Result<Url, DiscoveryError> {
        Ok(self.entry(issuer).await?.endpoint)
    }

    /// Returns whether `issuer`'s discovery document sets
    /// `authorization_response_iss_parameter_supported` (RFC 9207 section 3), so that an
    /// authorization response without `iss` must be rejected. Cached like the endpoint.
    pub async fn iss_parameter_supported(&self, issuer: &str) -> Result<bool, DiscoveryError> {
        Ok(self.entry(issuer).await?.iss_parameter_supported)
    }

    async fn entry(&self, issuer: &str) -> Result<CachedEndpoint, DiscoveryError> {
        if let Some(entry) = self.cached(issuer) {
            return Ok(entry);
        }

        let entry = self.discover(issuer).await?;

        self.lock_cache().insert(issuer.to_owned(), entry.clone());
        Ok(entry)
    }

    fn cached(&self, issuer: &str) -> Option<CachedEndpoint> {
        let cache = self.lock_cache();
        let entry = cache.get(issuer)?;
        (entry.fetched_at.elapsed() < self.ttl).then(|| entry.clone())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedEndpoint>> {
        // The map stays consistent even if a holder panicked, so a poisoned lock is usable.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn discover(&self, issuer: &str) -> Result<CachedEndpoint, DiscoveryError> {
        // 1. The issuer must be a URL we are willing to talk to.
        let issuer_url = check_url(issuer).map_err(|reason| DiscoveryError::InvalidIssuer {
            issuer: issuer.to_owned(),
            reason,
        })?;

        // 2. OpenID Connect Discovery 1.0, section 4: append the well-known path to the
        //    issuer, keeping any path the issuer has.
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer_url.as_str().trim_end_matches('/')
        );
        let body = self.fetch(&url).await?;

        // 3. The document must name exactly the configured issuer (section 4.3).
        let document: DiscoveryDocument =
            serde_json::from_slice(&body).map_err(|source| DiscoveryError::Document {
                url: url.clone(),
                source,
            })?;
        if document.issuer != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                url,
                expected: issuer.to_owned(),
                found: document.issuer,
            });
        }

        // 4. The endpoint gets the same scheme rules as the issuer.
        let endpoint = check_url(&document.authorization_endpoint).map_err(|reason| {
            DiscoveryError::InvalidEndpoint {
                url,
                endpoint: document.authorization_endpoint.clone(),
                reason,
            }
        })?;
        Ok(CachedEndpoint {
            endpoint,
            iss_parameter_supported: document.authorization_response_iss_parameter_supported,
            fetched_at: Instant::now(),
        })
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, DiscoveryError> {
        let fetch_error = |source| DiscoveryError::Fetch {
            url: url.to_owned(),
            source,
        };
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(fetch_error)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(DiscoveryError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }

        // Read in chunks so that an endless body is cut off at the limit.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > MAX_DISCOVERY_BYTES {
                return Err(DiscoveryError::TooLarge {
                    url: url.to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Parses `text` as an https URL, or an http URL on a loopback host (development IdPs).
fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| error.to_string())?;
    if url.fragment().is_some() {
        return Err("it must not have a fragment".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("plain http is allowed only for loopback hosts".into()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Builds the authorization request URL (OpenID Connect Core 1.0, section 3.1.2.1, with
/// PKCE from RFC 7636). Parameters are appended form-encoded after any query the endpoint
/// already has, which section 3.1.2.1 requires to be kept.
pub fn authorization_url(endpoint: &Url, params: &AuthorizationParams) -> Url {
    let mut url = endpoint.clone();
    url.set_fragment(None);

    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &params.client_id)
            .append_pair("redirect_uri", &params.redirect_uri)
            .append_pair("scope", &params.scope)
            .append_pair("state", &params.state)
            .append_pair("nonce", &params.nonce)
            .append_pair("code_challenge", &params.code_challenge)
            .append_pair("code_challenge_method", "S256");
        if !params.acr_values.is_empty() {
            query.append_pair("acr_values", &params.acr_values.join(" "));
        }
        if let Some(max_age) = params.max_age {
            query.append_pair("max_age", &max_age.to_string());
        }
        if params.prompt_login {
            query.append_pair("prompt", "login");
        }
        if let Some(hint) = &params.login_hint {
            query.append_pair("login_hint", hint);
        }
        if let Some(claims) = &params.claims {
            query.append_pair("claims", claims);
        }
    }

    url
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn params() -> AuthorizationParams {
        AuthorizationParams {
            issuer: "https://idp.example.com".into(),
            client_id: "stepup".into(),
            redirect_uri: "https://approve.example.com/auth/callback".into(),
            scope: "openid email".into(),
            state: "st&te=1".into(),
            nonce: "n0nce".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            acr_values: Vec::new(),
            max_age: None,
            prompt_login: false,
            login_hint: None,
            claims: None,
        }
    }

    fn endpoint(text: &str) -> Url {
        Url::parse(text).expect("test endpoint is a valid URL")
    }

    /// Decodes the query pairs, in order.
    fn pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    }

    fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn url_has_required_parameters() {
        let url = authorization_url(&endpoint("https://idp.example.com/authorize"), &params());
        let pairs = pairs(&url);

        assert_eq!(value(&pairs, "response_type"), Some("code"));
        assert_eq!(value(&pairs, "client_id"), Some("stepup"));
        assert_eq!(
            value(&pairs, "redirect_uri"),
            Some("https://approve.example.com/auth/callback")
        );
        assert_eq!(value(&pairs, "scope"), Some("openid email"));
        assert_eq!(value(&pairs, "state"), Some("st&te=1"));
        assert_eq!(value(&pairs, "nonce"), Some("n0nce"));
        assert_eq!(
            value(&pairs, "code_challenge"),
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        );
        assert_eq!(value(&pairs, "code_challenge_method"), Some("S256"));
    }

    #[test]
    fn url_omits_unset_optional_parameters() {
        let url = authorization_url(&endpoint("https://idp.example.com/authorize"), &params());
        let pairs = pairs(&url);

        for key in ["acr_values", "max_age", "prompt", "login_hint", "claims"] {
            assert_eq!(value(&pairs, key), None, "{key} was sent");
        }
    }

    #[test]
    fn url_carries_step_up_parameters() {
        let mut params = params();
        params.acr_values = vec!["urn:okta:loa:2fa:any".into(), "phr".into()];
        params.max_age = Some(0);
        params.prompt_login = true;
        params.login_hint = Some("alice+ops@example.com".into());
        params.claims = Some(r#"{"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#.into());

        let url = authorization_url(&endpoint("https://idp.example.com/authorize"), &params);
        let pairs = pairs(&url);

        assert_eq!(
            value(&pairs, "acr_values"),
            Some("urn:okta:loa:2fa:any phr")
        );
        assert_eq!(value(&pairs, "max_age"), Some("0"));
        assert_eq!(value(&pairs, "prompt"), Some("login"));
        assert_eq!(value(&pairs, "login_hint"), Some("alice+ops@example.com"));
        assert_eq!(
            value(&pairs, "claims"),
            Some(r#"{"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#)
        );
    }

    #[test]
    fn url_encodes_reserved_characters() {
        let mut params = params();
        params.login_hint = Some("a&b=c#d@example.com".into());

        let url = authorization_url(&endpoint("https://idp.example.com/authorize"), &params);
        let query = url.query().expect("the URL has a query");

        assert!(query.contains("state=st%26te%3D1"), "query: {query}");
        assert!(
            query.contains("login_hint=a%26b%3Dc%23d%40example.com"),
            "query: {query}"
        );
        assert_eq!(url.fragment(), None);
    }

    #[test]
    fn url_keeps_endpoint_query() {
        let url = authorization_url(
            &endpoint("https://login.example.com/tenant/oauth2/authorize?p=B2C_1_signin"),
            &params(),
        );
        let pairs = pairs(&url);

        assert_eq!(url.path(), "/tenant/oauth2/authorize");
        assert_eq!(
            pairs.first().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("p", "B2C_1_signin"))
        );
        assert_eq!(value(&pairs, "response_type"), Some("code"));
    }

    #[test]
    fn url_drops_endpoint_fragment() {
        let url = authorization_url(&endpoint("https://idp.example.com/authorize#x"), &params());
        assert_eq!(url.fragment(), None);
    }

    #[test]
    fn check_url_accepts_https_and_loopback_http() {
        for good in [
            "https://idp.example.com",
            "http://127.0.0.1:9000/tenant",
            "http://[::1]:9000",
            "http://localhost:9000",
        ] {
            assert!(check_url(good).is_ok(), "{good} was rejected");
        }
    }

    #[test]
    fn check_url_rejects_remote_http_and_other_schemes() {
        for bad in [
            "http://idp.example.com",
            "ftp://idp.example.com",
            "https://idp.example.com/#frag",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn discovery_reads_iss_parameter_support() {
        let without: DiscoveryDocument = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com",
            "authorization_endpoint": "https://idp.example.com/authorize",
        }))
        .expect("minimal document parses");
        assert!(!without.authorization_response_iss_parameter_supported);

        let with: DiscoveryDocument = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com",
            "authorization_endpoint": "https://idp.example.com/authorize",
            "authorization_response_iss_parameter_supported": true,
        }))
        .expect("document with the RFC 9207 flag parses");
        assert!(with.authorization_response_iss_parameter_supported);
    }
}
