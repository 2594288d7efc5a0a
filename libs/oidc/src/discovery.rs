//! The verifier's reading of an issuer's discovery document: the token endpoint and the
//! JWKS URL, fetched with a size limit and cached per issuer.
//!
//! Only these two fields and `issuer` are used. The document's algorithm list
//! (`id_token_signing_alg_values_supported`) is deliberately ignored: the accepted
//! algorithms come from configuration, so a provider that advertises HS256 cannot make the
//! verifier accept a token keyed with the client secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use stepup_events::ReasonCode;
use url::Url;

use crate::http::{FetchError, send_bounded};
use crate::verify::Rejection;

/// The endpoints the verifier sends the code to and reads the keys from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub token_endpoint: Url,
    pub jwks_uri: Url,
}

#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
}

type Slot = Option<(Arc<Endpoints>, DateTime<Utc>)>;

/// Discovered endpoints by issuer. Each issuer has its own lock, so a slow provider delays
/// only its own redemptions, and concurrent ones share a single discovery request.
#[derive(Debug)]
pub struct DiscoveryCache {
    http: reqwest::Client,
    max_bytes: usize,
    ttl: TimeDelta,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl DiscoveryCache {
    pub fn new(http: reqwest::Client, max_bytes: usize, ttl: TimeDelta) -> Self {
        Self {
            http,
            max_bytes,
            ttl,
            slots: Mutex::default(),
        }
    }

    /// Returns the endpoints of `issuer`, from the cache while younger than the TTL.
    /// Failures are not cached.
    pub async fn endpoints(
        &self,
        issuer: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<Endpoints>, Rejection> {
        let slot = {
            // Entries are only ever added whole, so a poisoned map is still consistent.
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slots.entry(issuer.to_owned()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some((endpoints, fetched_at)) = slot.as_ref()
            && now - *fetched_at < self.ttl
        {
            return Ok(endpoints.clone());
        }
        let endpoints = Arc::new(self.discover(issuer).await?);
        *slot = Some((endpoints.clone(), now));
        Ok(endpoints)
    }

    async fn discover(&self, issuer: &str) -> Result<Endpoints, Rejection> {
        let invalid = |detail: String| Rejection::new(ReasonCode::ProviderMetadataInvalid, detail);

        // 1. OpenID Connect Discovery 1.0 §4: the well-known path appended to the issuer.
        let issuer_url = check_url(issuer)
            .map_err(|reason| invalid(format!("the issuer {issuer:?} {reason}")))?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer_url.as_str().trim_end_matches('/')
        );
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json");
        let reply =
            send_bounded(request, &url, self.max_bytes)
                .await
                .map_err(|error| match error {
                    FetchError::TooLarge { .. } => invalid(error.to_string()),
                    FetchError::Timeout { .. } | FetchError::Unreachable { .. } => {
                        Rejection::new(ReasonCode::IdpUnavailable, format!("discovery: {error}"))
                    }
                })?;
        if reply.status.is_server_error() {
            return Err(Rejection::new(
                ReasonCode::IdpUnavailable,
                format!("discovery at {url} returned HTTP {}", reply.status),
            ));
        }
        if reply.status != reqwest::StatusCode::OK || !reply.is_json() {
            return Err(invalid(format!(
                "discovery at {url} returned HTTP {} with content type {:?}, expected 200 with JSON",
                reply.status, reply.media_type
            )));
        }

        // 2. The document names exactly the configured issuer (§4.3).
        let document: Document = serde_json::from_slice(&reply.body).map_err(|error| {
            invalid(format!("{url} is not a valid discovery document: {error}"))
        })?;
        if document.issuer != issuer {
            return Err(Rejection::new(
                ReasonCode::IssuerMismatch,
                format!(
                    "the discovery document at {url} names issuer {:?}, expected exactly {issuer:?}",
                    document.issuer
                ),
            ));
        }

        // 3. Endpoints under the same scheme rules as the issuer.
        let endpoint = |name: &str, value: &str| {
            check_url(value)
                .map_err(|reason| invalid(format!("{name} {value:?} in {url} {reason}")))
        };
        Ok(Endpoints {
            token_endpoint: endpoint("token_endpoint", &document.token_endpoint)?,
            jwks_uri: endpoint("jwks_uri", &document.jwks_uri)?,
        })
    }
}

/// Parses `text` as an https URL, or an http URL on a loopback host (development IdPs).
fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("is not a URL: {error}"))?;
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("uses plain http, which is allowed only for loopback hosts".into()),
        other => Err(format!("has scheme {other:?}, expected https")),
    }
}
