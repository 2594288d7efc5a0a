//! The signing keys of each issuer: read strictly, cached, and fetched again when a token
//! names a key the cache does not have.
//!
//! `openidconnect` fetches the JWKS once with discovery and never again, so a provider that
//! rotates its key would lock every approver out until a restart. [`KeyCache::refresh`]
//! fetches the set again when a token's `kid` is unknown, within two limits. Concurrent
//! callers share one fetch (single flight). A set is fetched at most once per refresh
//! interval, so tokens with made-up `kid`s cannot turn the verifier into a load generator
//! against the provider.
//!
//! Keys that cannot be used (symmetric, for encryption, of an unknown type or curve,
//! incomplete) are skipped with a log line; the rest of the set stays usable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use serde_json::Value;
use stepup_events::ReasonCode;
use url::Url;

use crate::http::{FetchError, send_bounded};
use crate::verify::Rejection;

/// The kind of public key, which decides the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One usable public key from a JWKS.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub kid: Option<String>,
    family: KeyFamily,
    /// The key's own `alg`, when the set names one.
    alg: Option<String>,
    jwk: CoreJsonWebKey,
}

impl PublishedKey {
    /// Whether this key can verify a signature made with `alg` (named as in JOSE).
    pub fn supports(&self, alg: &str) -> bool {
        let family = match alg {
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => KeyFamily::Rsa,
            "ES256" => KeyFamily::P256,
            "ES384" => KeyFamily::P384,
            "EdDSA" => KeyFamily::Ed25519,
            _ => return false,
        };
        family == self.family && self.alg.as_deref().is_none_or(|own| own == alg)
    }

    pub fn jwk(&self) -> &CoreJsonWebKey {
        &self.jwk
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<PublishedKey>,
    /// Entries that were skipped as unusable.
    skipped: usize,
    fetched_at: DateTime<Utc>,
}

/// The key that verifies a token, or the reason no key does.
#[derive(Debug)]
pub enum Selection<'a> {
    Found(&'a PublishedKey),
    /// No key carries the token's `kid`: the provider may have rotated its keys.
    UnknownKid,
    /// The token has no `kid` and the set has several keys (OpenID Connect Core §10.1
    /// requires a `kid` then).
    KidRequired {
        keys: usize,
    },
    /// Keys exist, but none of the right type for the algorithm, or several share the `kid`.
    NoUsableKey {
        detail: String,
    },
}

impl KeySet {
    /// Reads a JWKS document, skipping entries that cannot verify signatures.
    pub fn parse(body: &[u8], source: &str, fetched_at: DateTime<Utc>) -> Result<Self, String> {
        let document: Value =
            serde_json::from_slice(body).map_err(|error| format!("is not JSON: {error}"))?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err("has no keys array".into());
        };

        let mut keys = Vec::new();
        let mut skipped = 0;
        for entry in entries {
            match usable_key(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    skipped += 1;
                    let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
                    tracing::info!(jwks_uri = source, kid, reason, "JWKS entry skipped");
                }
            }
        }
        Ok(Self {
            keys,
            skipped,
            fetched_at,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Chooses the key for a token with header `kid` and `alg`.
    pub fn select(&self, kid: Option<&str>, alg: &str) -> Selection<'_> {
        let Some(kid) = kid else {
            return match self.keys.as_slice() {
                [only] if only.supports(alg) => Selection::Found(only),
                [only] => Selection::NoUsableKey {
                    detail: format!(
                        "the only published key ({:?}) cannot verify {alg}",
                        only.kid
                    ),
                },
                [] => Selection::NoUsableKey {
                    detail: "the JWKS has no usable key".into(),
                },
                several => Selection::KidRequired {
                    keys: several.len(),
                },
            };
        };

        let named: Vec<&PublishedKey> = self
            .keys
            .iter()
            .filter(|key| key.kid.as_deref() == Some(kid))
            .collect();
        if named.is_empty() {
            return Selection::UnknownKid;
        }
        let usable: Vec<&PublishedKey> =
            named.into_iter().filter(|key| key.supports(alg)).collect();
        match usable.as_slice() {
            [key] => Selection::Found(key),
            [] => Selection::NoUsableKey {
                detail: format!("the published key {kid:?} cannot verify {alg}"),
            },
            _ => Selection::NoUsableKey {
                detail: format!(
                    "several published keys share the kid {kid:?} and can verify {alg}"
                ),
            },
        }
    }
}

/// Checks one JWKS entry and converts it. The error states why the entry cannot be used.
fn usable_key(entry: &Value) -> Result<PublishedKey, String> {
    let Some(object) = entry.as_object() else {
        return Err("the entry is not a JSON object".into());
    };
    let text = |name: &str| object.get(name).and_then(Value::as_str);

    // 1. Only signature keys: RFC 7517 §4.2 `use`, §4.3 `key_ops`.
    if let Some(key_use) = object.get("use")
        && key_use.as_str() != Some("sig")
    {
        return Err(format!("use is {key_use}, not \"sig\""));
    }
    if let Some(operations) = object.get("key_ops") {
        let verifies = operations
            .as_array()
            .is_some_and(|list| list.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    if object.get("kid").is_some_and(|kid| !kid.is_string()) {
        return Err("kid is not a string".into());
    }

    // 2. Key types and curves that `openidconnect` can verify, with their parameters.
    let family = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => KeyFamily::Rsa,
        (Some("EC"), Some("P-256")) => KeyFamily::P256,
        (Some("EC"), Some("P-384")) => KeyFamily::P384,
        (Some("OKP"), Some("Ed25519")) => KeyFamily::Ed25519,
        (kty, crv) => return Err(format!("unsupported key type {kty:?} with curve {crv:?}")),
    };
    let parameters: &[&str] = match family {
        KeyFamily::Rsa => &["n", "e"],
        KeyFamily::P256 | KeyFamily::P384 => &["x", "y"],
        KeyFamily::Ed25519 => &["x"],
    };
    for name in parameters {
        let decoded = text(name).map(|value| URL_SAFE_NO_PAD.decode(value));
        if !matches!(decoded, Some(Ok(bytes)) if !bytes.is_empty()) {
            return Err(format!("parameter {name} is missing or not base64url"));
        }
    }

    // 3. An `alg` on the key must be an asymmetric signature algorithm.
    let alg = match object.get("alg") {
        None => None,
        Some(Value::String(alg)) if is_asymmetric_signature(alg) => Some(alg.clone()),
        Some(other) => {
            return Err(format!(
                "alg {other} is not an asymmetric signature algorithm"
            ));
        }
    };

    let jwk: CoreJsonWebKey = serde_json::from_value(entry.clone())
        .map_err(|error| format!("not a valid JSON Web Key: {error}"))?;
    Ok(PublishedKey {
        kid: text("kid").map(str::to_owned),
        family,
        alg,
        jwk,
    })
}

fn is_asymmetric_signature(alg: &str) -> bool {
    signing_algorithm(alg).is_some()
}

/// Maps a JOSE algorithm name to `openidconnect`'s; symmetric algorithms and `none` map to
/// nothing, so they can never be configured.
pub fn signing_algorithm(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    match name {
        "RS256" => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        "RS384" => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384),
        "RS512" => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512),
        "PS256" => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha256),
        "PS384" => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha384),
        "PS512" => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha512),
        "ES256" => Some(CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        "ES384" => Some(CoreJwsSigningAlgorithm::EcdsaP384Sha384),
        "EdDSA" => Some(CoreJwsSigningAlgorithm::EdDsa),
        _ => None,
    }
}

/// Limits of the key cache's fetches and lifetimes of its sets.
#[derive(Debug, Clone, Copy)]
pub struct KeyCacheSettings {
    /// Largest JWKS document accepted, in bytes.
    pub max_bytes: usize,
    /// How long a fetched set is used before it is fetched again.
    pub ttl: TimeDelta,
    /// Minimum time between two fetches of one set when a `kid` is unknown.
    pub min_refresh_interval: TimeDelta,
}

#[derive(Debug, Default)]
struct Slot {
    keys: Option<Arc<KeySet>>,
    /// When the set was last fetched, also when that fetch failed.
    last_fetch: Option<DateTime<Utc>>,
}

/// Key sets by JWKS URL.
#[derive(Debug)]
pub struct KeyCache {
    http: reqwest::Client,
    settings: KeyCacheSettings,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl KeyCache {
    pub fn new(http: reqwest::Client, settings: KeyCacheSettings) -> Self {
        Self {
            http,
            settings,
            slots: Mutex::default(),
        }
    }

    /// Returns the cached set of `jwks_uri`, fetching it when there is none or it is older
    /// than the TTL.
    pub async fn current(
        &self,
        jwks_uri: &Url,
        now: DateTime<Utc>,
    ) -> Result<Arc<KeySet>, Rejection> {
        let slot = self.slot(jwks_uri);
        let mut slot = slot.lock().await;
        if let Some(keys) = &slot.keys
            && now - keys.fetched_at < self.settings.ttl
        {
            return Ok(keys.clone());
        }
        self.fetch_into(&mut slot, jwks_uri, now).await
    }

    /// Fetches the set again because a token named a `kid` that `stale` lacks. Returns the
    /// newer set when another caller fetched one meanwhile, and `stale` itself when the
    /// last fetch is more recent than the refresh interval.
    pub async fn refresh(
        &self,
        jwks_uri: &Url,
        now: DateTime<Utc>,
        stale: &Arc<KeySet>,
    ) -> Result<Arc<KeySet>, Rejection> {
        let slot = self.slot(jwks_uri);
        let mut slot = slot.lock().await;

        // Single flight: the previous holder of the lock may have fetched the set already.
        if let Some(keys) = &slot.keys
            && !Arc::ptr_eq(keys, stale)
        {
            return Ok(keys.clone());
        }

        // Rate limit: a made-up kid must not cost the provider a request each time.
        if let Some(last) = slot.last_fetch
            && now - last < self.settings.min_refresh_interval
        {
            tracing::info!(jwks_uri = %jwks_uri, "JWKS refresh skipped: fetched too recently");
            return Ok(stale.clone());
        }
        self.fetch_into(&mut slot, jwks_uri, now).await
    }

    fn slot(&self, jwks_uri: &Url) -> Arc<tokio::sync::Mutex<Slot>> {
        // The map only grows by whole entries, so a poisoned lock still holds a valid map.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(jwks_uri.to_string()).or_default().clone()
    }

    async fn fetch_into(
        &self,
        slot: &mut Slot,
        jwks_uri: &Url,
        now: DateTime<Utc>,
    ) -> Result<Arc<KeySet>, Rejection> {
        slot.last_fetch = Some(now);
        let keys = Arc::new(self.fetch(jwks_uri, now).await?);
        tracing::info!(jwks_uri = %jwks_uri, keys = keys.len(), skipped = keys.skipped(), "JWKS fetched");
        slot.keys = Some(keys.clone());
        Ok(keys)
    }

    async fn fetch(&self, jwks_uri: &Url, now: DateTime<Utc>) -> Result<KeySet, Rejection> {
        let url = jwks_uri.as_str();
        let request = self.http.get(jwks_uri.clone()).header(
            reqwest::header::ACCEPT,
            "application/json, application/jwk-set+json",
        );
        let reply = send_bounded(request, url, self.settings.max_bytes)
            .await
            .map_err(|error| match error {
                FetchError::TooLarge { .. } => {
                    Rejection::new(ReasonCode::ProviderMetadataInvalid, error.to_string())
                }
                FetchError::Timeout { .. } | FetchError::Unreachable { .. } => {
                    Rejection::new(ReasonCode::IdpUnavailable, format!("JWKS: {error}"))
                }
            })?;

        if reply.status.is_server_error() {
            return Err(Rejection::new(
                ReasonCode::IdpUnavailable,
                format!("the JWKS at {url} returned HTTP {}", reply.status),
            ));
        }
        if reply.status != reqwest::StatusCode::OK || !reply.is_json() {
            return Err(Rejection::new(
                ReasonCode::ProviderMetadataInvalid,
                format!(
                    "the JWKS at {url} returned HTTP {} with content type {:?}, expected 200 with JSON",
                    reply.status, reply.media_type
                ),
            ));
        }
        KeySet::parse(&reply.body, url, now).map_err(|detail| {
            Rejection::new(
                ReasonCode::ProviderMetadataInvalid,
                format!("the JWKS at {url} {detail}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "use": "sig", "kid": kid, "n": RSA_N, "e": "AQAB"})
    }

    fn p256(kid: &str) -> Value {
        json!({
            "kty": "EC", "kid": kid, "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        })
    }

    fn parse(keys: Vec<Value>) -> KeySet {
        let body = json!({ "keys": keys }).to_string();
        KeySet::parse(body.as_bytes(), "test", Utc::now()).unwrap_or(KeySet {
            keys: Vec::new(),
            skipped: usize::MAX,
            fetched_at: Utc::now(),
        })
    }

    #[test]
    fn unusable_entries_are_skipped_and_the_rest_kept() {
        let mut encryption = rsa("enc-1");
        encryption["use"] = json!("enc");
        let mut verify_only_not = rsa("ops-1");
        verify_only_not["key_ops"] = json!(["encrypt"]);
        let mut symmetric_alg = rsa("hs-1");
        symmetric_alg["alg"] = json!("HS256");
        let set = parse(vec![
            json!({"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "kid": "incomplete-1"}),
            json!({"kty": "RSA", "kid": "bad-n", "n": 42, "e": "AQAB"}),
            json!({"kty": "EC", "kid": "p521-1", "crv": "P-521", "x": "AAAA", "y": "AAAA"}),
            json!({"kty": "future", "kid": "future-1"}),
            encryption,
            verify_only_not,
            symmetric_alg,
            json!("not a key"),
            rsa("rsa-1"),
            p256("ec-1"),
        ]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.skipped(), 9);
    }

    #[test]
    fn document_without_keys_array_is_invalid() {
        for body in [r#"{"keys": {}}"#, r#"{"key": []}"#, "<html>", "[]"] {
            let result = KeySet::parse(body.as_bytes(), "test", Utc::now());
            assert!(result.is_err(), "{body}");
        }
    }

    #[test]
    fn skipped_key_cannot_be_selected_by_its_kid() {
        let mut encryption = rsa("enc-1");
        encryption["use"] = json!("enc");
        let set = parse(vec![encryption, rsa("rsa-1")]);
        assert!(matches!(
            set.select(Some("enc-1"), "RS256"),
            Selection::UnknownKid
        ));
        assert!(matches!(
            set.select(Some("rsa-1"), "RS256"),
            Selection::Found(_)
        ));
    }

    #[test]
    fn key_of_another_type_is_not_selected() {
        let set = parse(vec![rsa("rsa-1"), p256("ec-1")]);
        assert!(matches!(
            set.select(Some("ec-1"), "RS256"),
            Selection::NoUsableKey { .. }
        ));
        assert!(matches!(
            set.select(Some("ec-1"), "ES256"),
            Selection::Found(_)
        ));
    }

    #[test]
    fn key_with_its_own_alg_verifies_only_that_alg() {
        let mut pss_only = rsa("rsa-1");
        pss_only["alg"] = json!("PS256");
        let set = parse(vec![pss_only]);
        assert!(matches!(
            set.select(Some("rsa-1"), "PS256"),
            Selection::Found(_)
        ));
        assert!(matches!(
            set.select(Some("rsa-1"), "RS256"),
            Selection::NoUsableKey { .. }
        ));
    }

    #[test]
    fn missing_kid_needs_a_single_key() {
        let one = parse(vec![rsa("rsa-1")]);
        assert!(matches!(one.select(None, "RS256"), Selection::Found(_)));

        let several = parse(vec![rsa("rsa-1"), p256("ec-1")]);
        assert!(matches!(
            several.select(None, "RS256"),
            Selection::KidRequired { keys: 2 }
        ));
    }

    #[test]
    fn duplicate_kids_are_not_guessed_between() {
        let set = parse(vec![rsa("rsa-1"), rsa("rsa-1")]);
        assert!(matches!(
            set.select(Some("rsa-1"), "RS256"),
            Selection::NoUsableKey { .. }
        ));
    }

    #[test]
    fn symmetric_and_none_algorithms_have_no_mapping() {
        for name in ["HS256", "HS384", "HS512", "none", "rs256", ""] {
            assert!(signing_algorithm(name).is_none(), "{name}");
        }
    }
}
