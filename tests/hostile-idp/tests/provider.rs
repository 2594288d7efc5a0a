//! The provider's own contract: valid responses where no defect is scripted, and the checks
//! a real provider makes at its token endpoint.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hostile_idp::{AuthorizationRequest, Defect, HostileIdp, Script};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/callback";
const VERIFIER: &str = "a-pkce-verifier-of-sufficient-length-0123456789";

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn code(idp: &HostileIdp) -> Result<String, hostile_idp::Error> {
    idp.authorize(&AuthorizationRequest {
        client_id: idp.client_id(),
        redirect_uri: REDIRECT_URI,
        state: "state-1",
        nonce: "nonce-1",
        code_verifier: VERIFIER,
    })
    .await
}

async fn token_request(
    idp: &HostileIdp,
    code: &str,
    basic: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(format!("{}/token", idp.issuer()))
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
}

fn payload(id_token: &str) -> Value {
    let part = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn serves_discovery_and_keys() -> TestResult {
    let idp = HostileIdp::start(Script::default()).await?;
    let discovery: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer()))
            .await?
            .json()
            .await?;
    assert_eq!(discovery["issuer"], idp.issuer());
    let jwks: Value = reqwest::get(discovery["jwks_uri"].as_str().unwrap())
        .await?
        .json()
        .await?;
    let types: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kty"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["RSA", "EC", "OKP"]);
    Ok(())
}

#[tokio::test]
async fn token_endpoint_issues_scripted_token() -> TestResult {
    let idp = HostileIdp::start(Script::default()).await?;
    let code = code(&idp).await?;
    let basic = STANDARD.encode(format!(
        "{}:{}",
        encode(idp.client_id()),
        encode(idp.client_secret())
    ));
    let response: Value = token_request(&idp, &code, &basic).await?.json().await?;
    let claims = payload(response["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["iss"], idp.issuer());
    let seen = idp.last_client_auth().unwrap();
    assert_eq!(seen.method, "client_secret_basic");
    assert!(seen.matched);
    Ok(())
}

#[tokio::test]
async fn unencoded_basic_credentials_are_rejected() -> TestResult {
    let idp = HostileIdp::start(Script::default()).await?;
    let code = code(&idp).await?;
    let raw = STANDARD.encode(format!("{}:{}", idp.client_id(), idp.client_secret()));
    let response = token_request(&idp, &code, &raw).await?;
    assert_eq!(response.status(), 401);
    assert_eq!(idp.last_client_auth().map(|seen| seen.matched), Some(false));
    Ok(())
}

#[tokio::test]
async fn code_is_single_use() -> TestResult {
    let idp = HostileIdp::start(Script::default()).await?;
    let code = code(&idp).await?;
    let basic = STANDARD.encode(format!(
        "{}:{}",
        encode(idp.client_id()),
        encode(idp.client_secret())
    ));
    assert_eq!(token_request(&idp, &code, &basic).await?.status(), 200);
    assert_eq!(token_request(&idp, &code, &basic).await?.status(), 400);
    Ok(())
}

#[tokio::test]
async fn no_id_token_defect_omits_it() -> TestResult {
    let idp = HostileIdp::start(Script::defect(Defect::NoIdToken)).await?;
    let code = code(&idp).await?;
    let basic = STANDARD.encode(format!(
        "{}:{}",
        encode(idp.client_id()),
        encode(idp.client_secret())
    ));
    let response: Value = token_request(&idp, &code, &basic).await?.json().await?;
    assert!(response.get("id_token").is_none());
    assert!(response.get("access_token").is_some());
    Ok(())
}

#[tokio::test]
async fn jwks_outage_ends_when_script_is_replaced() -> TestResult {
    let idp = HostileIdp::start(Script::defect(Defect::JwksServerError)).await?;
    let jwks_uri = format!("{}/jwks", idp.issuer());
    assert_eq!(reqwest::get(&jwks_uri).await?.status(), 503);

    idp.set_script(Script::default());
    let response = reqwest::get(&jwks_uri).await?;
    assert_eq!(response.status(), 200);
    let keys: Value = response.json().await?;
    assert!(keys["keys"].as_array().is_some_and(|keys| !keys.is_empty()));
    assert_eq!(idp.requests().jwks, 2);
    Ok(())
}
