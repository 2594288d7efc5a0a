//! The whole system against a hostile OpenID provider: for each defect in the ID token or
//! the token response, the approval fails with its reason code, the approver's page names
//! it, nothing completes, and the audit log records the rejection.
//!
//! Each test shares one system across its cases; a case sets the provider's script before
//! its approval, so cases do not depend on one another.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod hostile_support;
mod support;

use hostile_idp::{ClaimEdit, DEFAULT_CLIENT_ID, Defect, Script};
use hostile_support::{HostileSystem, Settings, assert_rejected, open_link};
use serde_json::json;
use stepup_events::{ReasonCode, subject};
use support::TestResult;

/// Runs each `(case, script, reason)` as its own approval on one system.
async fn run_cases(hostile: &HostileSystem, cases: Vec<(&str, Script, ReasonCode)>) -> TestResult {
    for (case, script, reason) in cases {
        hostile.idp.set_script(script);
        let (approval, link) = hostile.request_step_up().await?;
        let page = open_link(&link).await?;
        assert_rejected(&hostile.system, &approval.approval_id, &page, reason, case).await;
    }
    Ok(())
}

/// A valid token first: the system works with this provider, so the rejections that follow
/// are the defects' doing.
async fn assert_valid_token_completes(hostile: &HostileSystem) -> TestResult {
    hostile.idp.set_script(Script::default());
    let (approval, link) = hostile.request_step_up().await?;
    let page = open_link(&link).await?;
    assert!(page.body.contains("Approval complete"), "{}", page.body);
    hostile
        .system
        .wait_for(subject::APPROVAL_COMPLETED, &approval.approval_id)
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signature_and_key_defects_fail_closed() -> TestResult {
    let hostile = HostileSystem::start(Settings::default()).await?;
    assert_valid_token_completes(&hostile).await?;

    let cases = vec![
        (
            "alg none",
            Script::defect(Defect::AlgNone),
            ReasonCode::SignatureInvalid,
        ),
        (
            "no signature",
            Script::defect(Defect::Unsigned),
            ReasonCode::SignatureInvalid,
        ),
        (
            "HS256 with the client secret",
            Script::defect(Defect::Hs256WithClientSecret),
            ReasonCode::AlgorithmNotAllowed,
        ),
        (
            "HS256 with the RSA public key",
            Script::defect(Defect::Hs256WithRsaPublicKey),
            ReasonCode::AlgorithmNotAllowed,
        ),
        (
            "signed by an unpublished key",
            Script::defect(Defect::ForeignKey),
            ReasonCode::SignatureInvalid,
        ),
        (
            "unknown kid",
            Script::defect(Defect::UnknownKid),
            ReasonCode::KeyNotFound,
        ),
        (
            "no kid with several keys",
            Script::defect(Defect::NoKid),
            ReasonCode::KeyIdMissing,
        ),
    ];
    run_cases(&hostile, cases).await?;
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_defects_fail_closed() -> TestResult {
    let hostile = HostileSystem::start(Settings::default()).await?;
    assert_valid_token_completes(&hostile).await?;
    let issuer = hostile.idp.issuer().to_owned();
    let claims = |edits: Vec<ClaimEdit>| Script::claims(edits);
    use ClaimEdit as E;
    use ReasonCode as R;

    let cases = vec![
        (
            "iss with a trailing slash",
            claims(vec![E::set("iss", json!(format!("{issuer}/")))]),
            R::IssuerMismatch,
        ),
        (
            "aud without our client",
            claims(vec![E::set("aud", json!("someone-else"))]),
            R::AudienceMismatch,
        ),
        (
            "aud with another audience and no azp",
            claims(vec![E::set("aud", json!([DEFAULT_CLIENT_ID, "other"]))]),
            R::AudienceMismatch,
        ),
        (
            "exp passed",
            claims(vec![E::seconds_from_now("exp", -5)]),
            R::TokenExpired,
        ),
        (
            "iat in the future",
            claims(vec![E::seconds_from_now("iat", 600)]),
            R::IssuedInFuture,
        ),
        (
            "auth_time in the future",
            claims(vec![E::seconds_from_now("auth_time", 600)]),
            R::IssuedInFuture,
        ),
        (
            "nbf in the future",
            claims(vec![E::seconds_from_now("nbf", 600)]),
            R::TokenNotYetValid,
        ),
        (
            "nonce missing",
            claims(vec![E::remove("nonce")]),
            R::NonceMismatch,
        ),
        (
            "nonce of another challenge",
            claims(vec![E::set("nonce", json!("another"))]),
            R::NonceMismatch,
        ),
        (
            "auth_time missing with max_age sent",
            claims(vec![E::remove("auth_time")]),
            R::AuthTimeMissing,
        ),
        (
            "auth_time before the challenge",
            claims(vec![E::seconds_from_now("auth_time", -3600)]),
            R::AuthTooOld,
        ),
        ("acr missing", claims(vec![E::remove("acr")]), R::AcrMissing),
        (
            "acr weaker",
            claims(vec![E::set("acr", json!("urn:okta:loa:1fa:pwd"))]),
            R::AcrNotSatisfied,
        ),
        (
            "acr extending the allowed value",
            claims(vec![E::set(
                "acr",
                json!("urn:okta:loa:2fa:any:ifpossible"),
            )]),
            R::AcrNotSatisfied,
        ),
        (
            "acr as a number",
            claims(vec![E::set("acr", json!(2))]),
            R::MalformedClaim,
        ),
        (
            "amr as a string",
            claims(vec![E::set("amr", json!("otp"))]),
            R::MalformedClaim,
        ),
        (
            "auth_time in milliseconds",
            claims(vec![E::millis_from_now("auth_time", 0)]),
            R::MalformedClaim,
        ),
    ];
    run_cases(&hostile, cases).await?;
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_endpoint_defects_fail_closed() -> TestResult {
    let hostile = HostileSystem::start(Settings {
        idp_timeout_ms: 1_500,
        ..Settings::default()
    })
    .await?;
    assert_valid_token_completes(&hostile).await?;

    let cases = vec![
        (
            "no ID token",
            Script::defect(Defect::NoIdToken),
            ReasonCode::IdTokenMissing,
        ),
        (
            "OAuth error",
            Script::defect(Defect::OAuthError),
            ReasonCode::TokenExchangeFailed,
        ),
        (
            "HTTP 500",
            Script::defect(Defect::ServerError),
            ReasonCode::IdpUnavailable,
        ),
        (
            "HTML body",
            Script::defect(Defect::HtmlBody),
            ReasonCode::TokenResponseInvalid,
        ),
        (
            "oversized body",
            Script::defect(Defect::OversizedBody { bytes: 512 * 1024 }),
            ReasonCode::TokenResponseInvalid,
        ),
        (
            "no answer within the timeout",
            Script::defect(Defect::Slow { seconds: 5 }),
            ReasonCode::IdpUnavailable,
        ),
    ];
    run_cases(&hostile, cases).await?;

    // The code was spent at the first request; the verifier never sent it twice.
    let requests = hostile.idp.requests();
    assert_eq!(requests.token, requests.authorize, "{requests:?}");
    hostile.stop().await;
    Ok(())
}
