//! The provider's HTTP endpoints: discovery, JWKS, authorization and token.
//!
//! Every endpoint is valid except where the current [`Script`] requests a defect. The token
//! endpoint checks what a real provider checks (client authentication as RFC 6749 §2.3.1
//! encodes it, a single-use code, the redirect URI and PKCE S256), so a relying party that
//! gets those wrong fails here too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::keys::{self, KeyPair, SigningAlg};
use crate::script::{AuthorizationIss, ClaimEdit, Defect, Script};

/// The keys the provider signs with. `foreign` is never published.
#[derive(Debug)]
pub struct Keys {
    pub rsa: KeyPair,
    pub rotated: KeyPair,
    /// Not in the JWKS, but carries the `kid` of `rsa`.
    pub foreign: KeyPair,
    /// Not in the JWKS, under a `kid` the JWKS never has.
    pub unknown: KeyPair,
    pub p256: KeyPair,
    pub ed25519: KeyPair,
}

/// How the client authenticated at the token endpoint, as the provider decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthSeen {
    /// `client_secret_basic` or `client_secret_post`.
    pub method: &'static str,
    /// Whether the decoded id and secret are the registered ones.
    pub matched: bool,
}

/// Requests served, per endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub discovery: AtomicUsize,
    pub jwks: AtomicUsize,
    pub authorize: AtomicUsize,
    pub token: AtomicUsize,
}

#[derive(Debug)]
struct Grant {
    redirect_uri: String,
    nonce: String,
    code_challenge: String,
}

/// State shared by the handlers and the [`crate::HostileIdp`] handle.
#[derive(Debug)]
pub struct Shared {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub keys: Arc<Keys>,
    /// A URL on a port nothing listens on.
    pub closed_url: String,
    pub script: Mutex<Script>,
    pub counters: Counters,
    pub client_auth: Mutex<Option<ClientAuthSeen>>,
    grants: Mutex<HashMap<String, Grant>>,
}

impl Shared {
    pub fn new(
        issuer: String,
        client_id: String,
        client_secret: String,
        keys: Arc<Keys>,
        closed_url: String,
        script: Script,
    ) -> Self {
        Self {
            issuer,
            client_id,
            client_secret,
            keys,
            closed_url,
            script: Mutex::new(script),
            counters: Counters::default(),
            client_auth: Mutex::new(None),
            grants: Mutex::new(HashMap::new()),
        }
    }

    pub fn script(&self) -> Script {
        lock(&self.script).clone()
    }
}

/// Locks a mutex, using the data even when a holder panicked: every value stays valid.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(shared)
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.counters.discovery.fetch_add(1, Ordering::SeqCst);
    let script = shared.script();
    let issuer = match script.defect {
        Defect::DiscoveryGarbage => return html("<html><body>Sign in</body></html>"),
        Defect::DiscoveryIssuerMismatch => format!("{}/", shared.issuer),
        _ => shared.issuer.clone(),
    };
    let jwks_uri = match script.defect {
        Defect::JwksUnreachable => format!("{}/jwks", shared.closed_url),
        _ => format!("{}/jwks", shared.issuer),
    };
    let mut algorithms = vec!["RS256", "PS256", "ES256", "EdDSA"];
    if script.defect.lists_hs256() {
        algorithms.push("HS256");
    }
    let document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}/authorize", shared.issuer),
        "token_endpoint": format!("{}/token", shared.issuer),
        "jwks_uri": jwks_uri,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "email", "email_verified"],
    });
    json_response(StatusCode::OK, &document)
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.counters.jwks.fetch_add(1, Ordering::SeqCst);
    let script = shared.script();
    let keys = &shared.keys;
    let published = match script.defect {
        Defect::JwksGarbage => return html("<html><body>Not found</body></html>"),
        Defect::JwksServerError => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
        Defect::NoKidOneKey => vec![keys.rsa.jwk()],
        Defect::RotatedKey => vec![
            keys.rsa.jwk(),
            keys.p256.jwk(),
            keys.ed25519.jwk(),
            keys.rotated.jwk(),
        ],
        Defect::UnusableKeysInJwks => {
            let mut all = unusable_keys(keys);
            all.extend([keys.rsa.jwk(), keys.p256.jwk(), keys.ed25519.jwk()]);
            all
        }
        _ => vec![keys.rsa.jwk(), keys.p256.jwk(), keys.ed25519.jwk()],
    };
    json_response(StatusCode::OK, &json!({ "keys": published }))
}

/// Entries a JWKS may contain that a relying party must skip rather than fail on.
fn unusable_keys(keys: &Keys) -> Vec<Value> {
    let mut encryption = keys.rotated.jwk();
    encryption["use"] = json!("enc");
    encryption["kid"] = json!("enc-1");
    vec![
        json!({"kty": "oct", "kid": "hmac-1", "k": URL_SAFE_NO_PAD.encode(b"shared secret")}),
        json!({"kty": "RSA", "kid": "incomplete-1"}),
        json!({"kty": "future-kty", "kid": "future-1", "x": "AAAA"}),
        json!({"kty": "EC", "kid": "p521-1", "crv": "P-521", "x": "AAAA", "y": "AAAA"}),
        json!({"kty": "RSA", "kid": "bad-n", "n": 42, "e": "AQAB"}),
        encryption,
        json!("not a key"),
        json!(42),
    ]
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.counters.authorize.fetch_add(1, Ordering::SeqCst);
    let param = |name: &str| query.get(name).filter(|value| !value.is_empty());

    // 1. A well-formed code request with PKCE S256 from the registered client.
    let (Some(redirect_uri), Some(state), Some(nonce), Some(challenge)) = (
        param("redirect_uri"),
        param("state"),
        param("nonce"),
        param("code_challenge"),
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "redirect_uri, state, nonce and code_challenge are required",
        );
    };
    if param("response_type").map(String::as_str) != Some("code")
        || param("code_challenge_method").map(String::as_str) != Some("S256")
        || param("client_id") != Some(&shared.client_id)
    {
        return text(
            StatusCode::BAD_REQUEST,
            "expected response_type=code, code_challenge_method=S256 and the registered client_id",
        );
    }
    let Ok(mut location) = url::Url::parse(redirect_uri) else {
        return text(StatusCode::BAD_REQUEST, "redirect_uri is not a URL");
    };

    // 2. Sign the user in at once and remember what the token request must match.
    let code = random_token();
    lock(&shared.grants).insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            nonce: nonce.clone(),
            code_challenge: challenge.clone(),
        },
    );

    // 3. Send the browser back with the code, the state and, when scripted, `iss`.
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("code", &code).append_pair("state", state);
        match shared.script().authorization_iss {
            AuthorizationIss::Issuer => {
                pairs.append_pair("iss", &shared.issuer);
            }
            AuthorizationIss::Other(other) => {
                pairs.append_pair("iss", &other);
            }
            AuthorizationIss::Omitted => {}
        }
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.counters.token.fetch_add(1, Ordering::SeqCst);
    if matches!(shared.script().defect, Defect::TokenServiceUnavailable) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();

    // 1. Client authentication, decoded as RFC 6749 §2.3.1 requires.
    let seen = client_auth(&shared, &headers, &form);
    *lock(&shared.client_auth) = Some(seen.clone());
    if !seen.matched {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    // 2. A code issued here, used once, with its redirect URI and PKCE verifier.
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let grant = form
        .get("code")
        .and_then(|code| lock(&shared.grants).remove(code));
    let Some(grant) = grant else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let verifier_matches = form
        .get("code_verifier")
        .is_some_and(|verifier| crate::code_challenge(verifier) == grant.code_challenge);
    if form.get("redirect_uri") != Some(&grant.redirect_uri) || !verifier_matches {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }

    // 3. The scripted response.
    let script = shared.script();
    match &script.defect {
        Defect::OAuthError => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant", "error_description": "the authorization code was already used"}),
        ),
        Defect::ServerError => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        Defect::HtmlBody => html("<html><body>Maintenance</body></html>"),
        Defect::NoIdToken => json_response(
            StatusCode::OK,
            &json!({"access_token": random_token(), "token_type": "Bearer", "expires_in": 300}),
        ),
        defect => {
            if let Defect::Slow { seconds } = defect {
                tokio::time::sleep(Duration::from_secs(*seconds)).await;
            }
            valid_response(&shared, &script, &grant.nonce)
        }
    }
}

fn valid_response(shared: &Shared, script: &Script, nonce: &str) -> Response {
    match id_token(shared, script, nonce) {
        Ok(id_token) => {
            let mut response = json!({
                "access_token": random_token(),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            });
            if let Defect::OversizedBody { bytes } = script.defect {
                response["padding"] = json!("x".repeat(bytes));
            }
            json_response(StatusCode::OK, &response)
        }
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

fn client_auth(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> ClientAuthSeen {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "));
    let Some(encoded) = basic else {
        let matched = form.get("client_id") == Some(&shared.client_id)
            && form.get("client_secret") == Some(&shared.client_secret);
        return ClientAuthSeen {
            method: "client_secret_post",
            matched,
        };
    };
    let decoded = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let matched = decoded
        .as_deref()
        .and_then(|text| text.split_once(':'))
        .and_then(|(id, secret)| Some((form_decode(id)?, form_decode(secret)?)))
        .is_some_and(|(id, secret)| id == shared.client_id && secret == shared.client_secret);
    ClientAuthSeen {
        method: "client_secret_basic",
        matched,
    }
}

/// Decodes one `application/x-www-form-urlencoded` value, or returns `None` when it contains a raw `=`
/// or `&`, which an encoder would have escaped.
fn form_decode(text: &str) -> Option<String> {
    let mut pairs = url::form_urlencoded::parse(text.as_bytes());
    match (pairs.next(), pairs.next()) {
        (None, _) => Some(String::new()),
        (Some((name, value)), None) if value.is_empty() && !text.contains('=') => {
            Some(name.into_owned())
        }
        _ => None,
    }
}

/// Builds and signs the scripted ID token.
fn id_token(shared: &Shared, script: &Script, nonce: &str) -> Result<String, keys::KeyError> {
    let claims = claims(shared, script, nonce);
    let keys = &shared.keys;
    let (key, kid) = match script.defect {
        Defect::ForeignKey => (&keys.foreign, Some(keys.foreign.kid())),
        Defect::UnknownKid => (&keys.unknown, Some(keys.unknown.kid())),
        Defect::RotatedKey => (&keys.rotated, Some(keys.rotated.kid())),
        Defect::NoKid | Defect::NoKidOneKey => (&keys.rsa, None),
        _ => {
            let key = match script.alg {
                SigningAlg::Rs256 | SigningAlg::Ps256 => &keys.rsa,
                SigningAlg::Es256 => &keys.p256,
                SigningAlg::EdDsa => &keys.ed25519,
            };
            (key, Some(key.kid()))
        }
    };

    match script.defect {
        Defect::AlgNone => {
            let input = keys::signing_input(&json!({"alg": "none", "typ": "JWT"}), &claims);
            Ok(format!("{input}."))
        }
        Defect::Unsigned => {
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": keys.rsa.kid()});
            Ok(keys::signing_input(&header, &claims))
        }
        Defect::Hs256WithClientSecret => {
            let input = keys::signing_input(&json!({"alg": "HS256", "typ": "JWT"}), &claims);
            let signature = keys::hs256(shared.client_secret.as_bytes(), input.as_bytes());
            Ok(keys::compact(&input, &signature))
        }
        Defect::Hs256WithRsaPublicKey => {
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": keys.rsa.kid()});
            let input = keys::signing_input(&header, &claims);
            let pem = keys.rsa.rsa_public_pem()?;
            Ok(keys::compact(
                &input,
                &keys::hs256(pem.as_bytes(), input.as_bytes()),
            ))
        }
        _ => {
            let mut header = json!({"alg": script.alg.name(), "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let input = keys::signing_input(&header, &claims);
            let signature = key.sign(script.alg, input.as_bytes())?;
            Ok(keys::compact(&input, &signature))
        }
    }
}

/// The claims of a valid ID token for the script's user, then the script's edits.
fn claims(shared: &Shared, script: &Script, nonce: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": shared.issuer,
        "sub": script.subject,
        "aud": shared.client_id,
        "exp": now + 300,
        "iat": now,
        "auth_time": now,
        "nonce": nonce,
        "amr": script.amr,
    });
    if let Some(acr) = &script.acr {
        claims["acr"] = json!(acr);
    }
    if let Some(email) = &script.email {
        claims["email"] = json!(email);
        claims["email_verified"] = json!(true);
    }
    if let Defect::Claims(edits) = &script.defect {
        for edit in edits {
            apply(&mut claims, edit, now);
        }
    }
    claims
}

fn apply(claims: &mut Value, edit: &ClaimEdit, now: i64) {
    let Some(object) = claims.as_object_mut() else {
        return;
    };
    match edit {
        ClaimEdit::Set(name, value) => {
            object.insert(name.clone(), value.clone());
        }
        ClaimEdit::Remove(name) => {
            object.remove(name);
        }
        ClaimEdit::SecondsFromNow(name, offset) => {
            object.insert(name.clone(), json!(now + offset));
        }
        ClaimEdit::MillisFromNow(name, offset) => {
            object.insert(name.clone(), json!((now + offset) * 1000));
        }
    }
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    json_response(status, &json!({ "error": error }))
}

fn html(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_owned(),
    )
        .into_response()
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
