//! [`TokenVerifier::redeem`] against the hostile provider: each defect it can inject is
//! rejected with its own reason code, and the valid variants are accepted.

use std::time::Duration;

use hostile_idp::{AuthorizationRequest, ClaimEdit, Defect, HostileIdp, Script, SigningAlg};
use serde_json::json;

use super::*;

const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/callback";
const NONCE: &str = "nonce-of-this-challenge";
const PKCE_VERIFIER: &str = "pkce-verifier-of-this-challenge-0123456789abcdef";
const TWO_FACTOR: &str = "urn:okta:loa:2fa:any";

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A provider, its settings and a verifier that has not cached anything yet.
struct Fixture {
    idp: HostileIdp,
    provider: ProviderSettings,
    verifier: TokenVerifier,
}

impl Fixture {
    async fn start(script: Script) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::start_with(script, &["RS256"], Duration::from_secs(5)).await
    }

    async fn start_with(
        script: Script,
        algorithms: &[&str],
        timeout: Duration,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let idp = HostileIdp::start(script).await?;
        let provider = provider_settings(&idp, algorithms)?;
        let verifier = TokenVerifier::new(crate::http::idp_client(timeout)?, DEFAULT_CLOCK_SKEW);
        Ok(Self {
            idp,
            provider,
            verifier,
        })
    }

    /// Runs one authorization and redeems its code at `now`.
    async fn redeem_at(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Result<Verified, Rejection>, hostile_idp::Error> {
        let code = self.code().await?;
        Ok(self.redeem_code(&code, now).await)
    }

    async fn redeem(&self) -> Result<Result<Verified, Rejection>, hostile_idp::Error> {
        self.redeem_at(Utc::now()).await
    }

    async fn code(&self) -> Result<String, hostile_idp::Error> {
        self.idp
            .authorize(&AuthorizationRequest {
                client_id: &self.provider.client_id,
                redirect_uri: REDIRECT_URI,
                state: "state-1",
                nonce: NONCE,
                code_verifier: PKCE_VERIFIER,
            })
            .await
    }

    async fn redeem_code(&self, code: &str, now: DateTime<Utc>) -> Result<Verified, Rejection> {
        let requirement = self.provider.requirement(None, None);
        let redemption = Redemption {
            provider: &self.provider,
            client_secret: self.idp.client_secret(),
            code,
            pkce_verifier: PKCE_VERIFIER,
            nonce: NONCE,
            redirect_uri: REDIRECT_URI,
            requirement: &requirement,
            challenge_created_at: Utc::now() - TimeDelta::seconds(5),
        };
        self.verifier.redeem(&redemption, now).await
    }
}

fn provider_settings(
    idp: &HostileIdp,
    algorithms: &[&str],
) -> Result<ProviderSettings, serde_json::Error> {
    serde_json::from_value(json!({
        "name": "hostile",
        "kind": "oauth2",
        "issuer": idp.issuer(),
        "client_id": idp.client_id(),
        "client_secret": idp.client_secret(),
        "acr_values": [TWO_FACTOR, "phr"],
        "max_age": 0,
        "id_token_signing_algs": algorithms,
    }))
}

fn reason(result: Result<Verified, Rejection>) -> Option<ReasonCode> {
    result.err().map(|rejection| rejection.reason)
}

/// Starts a provider with `script`, redeems one code and returns the reason.
async fn rejection_of(
    script: Script,
) -> Result<Option<ReasonCode>, Box<dyn std::error::Error + Send + Sync>> {
    let fixture = Fixture::start(script).await?;
    Ok(reason(fixture.redeem().await?))
}

// ---------------------------------------------------------------------------------------
// Valid tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn accepts_each_configured_algorithm() -> TestResult {
    for alg in [
        SigningAlg::Rs256,
        SigningAlg::Ps256,
        SigningAlg::Es256,
        SigningAlg::EdDsa,
    ] {
        let script = Script {
            alg,
            ..Script::default()
        };
        let fixture = Fixture::start_with(script, &[alg.name()], Duration::from_secs(5)).await?;
        let verified = fixture.redeem().await?;
        assert!(verified.is_ok(), "{}: {verified:?}", alg.name());
        let evidence = verified.map(|v| v.evidence).ok();
        assert_eq!(
            evidence.as_ref().and_then(|e| e.acr.as_deref()),
            Some(TWO_FACTOR)
        );
        assert_eq!(
            evidence.map(|e| e.issuer),
            Some(fixture.idp.issuer().to_owned())
        );
    }
    Ok(())
}

#[tokio::test]
async fn basic_auth_encodes_special_characters() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    assert!(
        fixture
            .idp
            .client_secret()
            .contains(['+', '/', ':', '%', ' '])
    );
    let verified = fixture.redeem().await?;
    assert!(verified.is_ok(), "{verified:?}");
    let seen = fixture.idp.last_client_auth();
    assert_eq!(seen.as_ref().map(|s| s.method), Some("client_secret_basic"));
    assert_eq!(seen.map(|s| s.matched), Some(true));
    Ok(())
}

#[tokio::test]
async fn post_auth_sends_credentials_in_body() -> TestResult {
    let mut fixture = Fixture::start(Script::default()).await?;
    fixture.provider.token_auth_method = crate::provider::TokenAuthMethod::ClientSecretPost;
    let verified = fixture.redeem().await?;
    assert!(verified.is_ok(), "{verified:?}");
    let seen = fixture.idp.last_client_auth();
    assert_eq!(seen.as_ref().map(|s| s.method), Some("client_secret_post"));
    assert_eq!(seen.map(|s| s.matched), Some(true));
    Ok(())
}

#[tokio::test]
async fn wrong_client_secret_fails_token_exchange() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    let code = fixture.code().await?;
    let requirement = fixture.provider.requirement(None, None);
    let redemption = Redemption {
        provider: &fixture.provider,
        client_secret: "not the secret",
        code: &code,
        pkce_verifier: PKCE_VERIFIER,
        nonce: NONCE,
        redirect_uri: REDIRECT_URI,
        requirement: &requirement,
        challenge_created_at: Utc::now() - TimeDelta::seconds(5),
    };
    let result = fixture.verifier.redeem(&redemption, Utc::now()).await;
    assert_eq!(reason(result), Some(ReasonCode::TokenExchangeFailed));
    Ok(())
}

#[tokio::test]
async fn extra_audience_with_our_azp_is_accepted() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    let client = fixture.provider.client_id.clone();
    fixture.idp.set_script(Script::claims(vec![
        ClaimEdit::set("aud", json!([client, "https://api.example.com"])),
        ClaimEdit::set("azp", json!(client)),
    ]));
    let verified = fixture.redeem().await?;
    assert!(verified.is_ok(), "{verified:?}");
    Ok(())
}

#[tokio::test]
async fn no_kid_with_one_published_key_is_accepted() -> TestResult {
    let fixture = Fixture::start(Script::defect(Defect::NoKidOneKey)).await?;
    let verified = fixture.redeem().await?;
    assert!(verified.is_ok(), "{verified:?}");
    Ok(())
}

#[tokio::test]
async fn unusable_keys_in_jwks_are_skipped() -> TestResult {
    let fixture = Fixture::start(Script::defect(Defect::UnusableKeysInJwks)).await?;
    let verified = fixture.redeem().await?;
    assert!(verified.is_ok(), "{verified:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Signature and keys
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unsigned_tokens_are_rejected() -> TestResult {
    for defect in [Defect::AlgNone, Defect::Unsigned] {
        let found = rejection_of(Script::defect(defect.clone())).await?;
        assert_eq!(found, Some(ReasonCode::SignatureInvalid), "{defect:?}");
    }
    Ok(())
}

#[tokio::test]
async fn hs256_is_rejected_although_discovery_lists_it() -> TestResult {
    for defect in [Defect::Hs256WithClientSecret, Defect::Hs256WithRsaPublicKey] {
        let found = rejection_of(Script::defect(defect.clone())).await?;
        assert_eq!(found, Some(ReasonCode::AlgorithmNotAllowed), "{defect:?}");
    }
    Ok(())
}

#[tokio::test]
async fn unconfigured_asymmetric_algorithm_is_rejected() -> TestResult {
    let script = Script {
        alg: SigningAlg::Es256,
        ..Script::default()
    };
    assert_eq!(
        rejection_of(script).await?,
        Some(ReasonCode::AlgorithmNotAllowed)
    );
    Ok(())
}

#[tokio::test]
async fn signature_by_unpublished_key_is_rejected() -> TestResult {
    assert_eq!(
        rejection_of(Script::defect(Defect::ForeignKey)).await?,
        Some(ReasonCode::SignatureInvalid)
    );
    Ok(())
}

#[tokio::test]
async fn unknown_kid_refreshes_once_then_rejects() -> TestResult {
    let fixture = Fixture::start(Script::defect(Defect::UnknownKid)).await?;
    let first = fixture.redeem().await?;
    assert_eq!(reason(first), Some(ReasonCode::KeyNotFound));
    assert_eq!(fixture.idp.requests().jwks, 1, "the set was just fetched");

    // Past the refresh interval, one unknown kid costs exactly one more fetch.
    let later = Utc::now() + TimeDelta::seconds(31);
    let second = fixture.redeem_at(later).await?;
    assert_eq!(reason(second), Some(ReasonCode::KeyNotFound));
    assert_eq!(fixture.idp.requests().jwks, 2);

    // Within the interval again, no fetch at all.
    let third = fixture.redeem_at(later + TimeDelta::seconds(1)).await?;
    assert_eq!(reason(third), Some(ReasonCode::KeyNotFound));
    assert_eq!(fixture.idp.requests().jwks, 2);
    Ok(())
}

#[tokio::test]
async fn rotated_key_is_accepted_after_refresh() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    let t0 = Utc::now();
    assert!(fixture.redeem_at(t0).await?.is_ok());
    assert_eq!(fixture.idp.requests().jwks, 1);

    fixture.idp.set_script(Script::defect(Defect::RotatedKey));
    let verified = fixture.redeem_at(t0 + TimeDelta::seconds(31)).await?;
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(fixture.idp.requests().jwks, 2);
    Ok(())
}

#[tokio::test]
async fn concurrent_rotations_share_one_refresh() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    let t0 = Utc::now();
    assert!(fixture.redeem_at(t0).await?.is_ok());

    // Five tokens signed with the new key arrive at once: one fetch serves them all, and
    // those that waited for it use the set it fetched rather than the old one.
    fixture.idp.set_script(Script::defect(Defect::RotatedKey));
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(fixture.code().await?);
    }
    let later = t0 + TimeDelta::seconds(31);
    let results =
        futures::future::join_all(codes.iter().map(|code| fixture.redeem_code(code, later))).await;
    for result in results {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(
        fixture.idp.requests().jwks,
        2,
        "one initial fetch, one refresh"
    );
    Ok(())
}

#[tokio::test]
async fn missing_kid_with_several_keys_is_rejected() -> TestResult {
    assert_eq!(
        rejection_of(Script::defect(Defect::NoKid)).await?,
        Some(ReasonCode::KeyIdMissing)
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_jwks_is_transient_and_spends_no_code() -> TestResult {
    let fixture = Fixture::start(Script::defect(Defect::JwksUnreachable)).await?;
    let result = fixture.redeem().await?;
    let rejection = result.err();
    assert_eq!(
        rejection.as_ref().map(|r| r.reason),
        Some(ReasonCode::IdpUnavailable)
    );
    assert_eq!(rejection.map(|r| r.transient), Some(true));
    assert_eq!(fixture.idp.requests().token, 0);
    Ok(())
}

#[tokio::test]
async fn garbage_jwks_is_rejected() -> TestResult {
    let fixture = Fixture::start(Script::defect(Defect::JwksGarbage)).await?;
    let result = fixture.redeem().await?;
    assert_eq!(reason(result), Some(ReasonCode::ProviderMetadataInvalid));
    assert_eq!(fixture.idp.requests().token, 0);
    Ok(())
}

#[tokio::test]
async fn garbage_discovery_is_rejected() -> TestResult {
    assert_eq!(
        rejection_of(Script::defect(Defect::DiscoveryGarbage)).await?,
        Some(ReasonCode::ProviderMetadataInvalid)
    );
    Ok(())
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_rejected() -> TestResult {
    assert_eq!(
        rejection_of(Script::defect(Defect::DiscoveryIssuerMismatch)).await?,
        Some(ReasonCode::IssuerMismatch)
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_discovery_is_transient() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let mut provider = fixture.provider.clone();
    provider.issuer = format!("http://{closed}");
    let requirement = provider.requirement(None, None);
    let redemption = Redemption {
        provider: &provider,
        client_secret: "unused",
        code: "unused",
        pkce_verifier: PKCE_VERIFIER,
        nonce: NONCE,
        redirect_uri: REDIRECT_URI,
        requirement: &requirement,
        challenge_created_at: Utc::now(),
    };
    let rejection = fixture.verifier.redeem(&redemption, Utc::now()).await.err();
    assert_eq!(
        rejection.as_ref().map(|r| r.reason),
        Some(ReasonCode::IdpUnavailable)
    );
    assert_eq!(rejection.map(|r| r.transient), Some(true));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------

/// Each claim defect with the reason it must produce.
fn claim_cases(issuer: &str) -> Vec<(&'static str, Vec<ClaimEdit>, ReasonCode)> {
    use ClaimEdit as E;
    use ReasonCode as R;
    vec![
        (
            "iss with a trailing slash",
            vec![E::set("iss", json!(format!("{issuer}/")))],
            R::IssuerMismatch,
        ),
        (
            "iss of another issuer",
            vec![E::set("iss", json!("https://evil.example.com"))],
            R::IssuerMismatch,
        ),
        (
            "aud without our client",
            vec![E::set("aud", json!("someone-else"))],
            R::AudienceMismatch,
        ),
        (
            "aud with others and no azp",
            vec![E::set(
                "aud",
                json!([hostile_idp::DEFAULT_CLIENT_ID, "other"]),
            )],
            R::AudienceMismatch,
        ),
        (
            "azp of another client",
            vec![E::set("azp", json!("other"))],
            R::AudienceMismatch,
        ),
        (
            "exp passed",
            vec![E::seconds_from_now("exp", -5)],
            R::TokenExpired,
        ),
        (
            "iat in the future",
            vec![E::seconds_from_now("iat", 600)],
            R::IssuedInFuture,
        ),
        (
            "auth_time in the future",
            vec![E::seconds_from_now("auth_time", 600)],
            R::IssuedInFuture,
        ),
        (
            "nbf in the future",
            vec![E::seconds_from_now("nbf", 600)],
            R::TokenNotYetValid,
        ),
        ("nonce missing", vec![E::remove("nonce")], R::NonceMismatch),
        (
            "nonce of another challenge",
            vec![E::set("nonce", json!("another-challenge"))],
            R::NonceMismatch,
        ),
        (
            "auth_time missing although max_age was sent",
            vec![E::remove("auth_time")],
            R::AuthTimeMissing,
        ),
        (
            "auth_time before the challenge",
            vec![E::seconds_from_now("auth_time", -3600)],
            R::AuthTooOld,
        ),
        ("acr missing", vec![E::remove("acr")], R::AcrMissing),
        (
            "acr not allowed",
            vec![E::set("acr", json!("urn:okta:loa:1fa:any"))],
            R::AcrNotSatisfied,
        ),
        (
            "acr weaker",
            vec![E::set("acr", json!("urn:okta:loa:1fa:pwd"))],
            R::AcrNotSatisfied,
        ),
        (
            "acr extending an allowed value",
            vec![E::set("acr", json!("urn:okta:loa:2fa:any:ifpossible"))],
            R::AcrNotSatisfied,
        ),
        (
            "acr as a number",
            vec![E::set("acr", json!(2))],
            R::MalformedClaim,
        ),
        (
            "aud as a number",
            vec![E::set("aud", json!(42))],
            R::MalformedClaim,
        ),
        (
            "amr as a string",
            vec![E::set("amr", json!("otp"))],
            R::MalformedClaim,
        ),
        (
            "sub as a number",
            vec![E::set("sub", json!(1234))],
            R::MalformedClaim,
        ),
        (
            "email_verified as a string",
            vec![E::set("email_verified", json!("true"))],
            R::MalformedClaim,
        ),
        (
            "exp in milliseconds",
            vec![E::millis_from_now("exp", 300)],
            R::MalformedClaim,
        ),
        (
            "auth_time in milliseconds",
            vec![E::millis_from_now("auth_time", 0)],
            R::MalformedClaim,
        ),
    ]
}

#[tokio::test]
async fn claim_defects_are_rejected_with_their_reason() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    for (case, edits, expected) in claim_cases(fixture.idp.issuer()) {
        fixture.idp.set_script(Script::claims(edits));
        let found = reason(fixture.redeem().await?);
        assert_eq!(found, Some(expected), "{case}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn token_endpoint_defects_are_rejected_with_their_reason() -> TestResult {
    let fixture = Fixture::start(Script::default()).await?;
    let cases = [
        (Defect::NoIdToken, ReasonCode::IdTokenMissing),
        (Defect::OAuthError, ReasonCode::TokenExchangeFailed),
        (Defect::ServerError, ReasonCode::IdpUnavailable),
        (Defect::HtmlBody, ReasonCode::TokenResponseInvalid),
        (
            Defect::OversizedBody { bytes: 512 * 1024 },
            ReasonCode::TokenResponseInvalid,
        ),
    ];
    for (defect, expected) in cases {
        fixture.idp.set_script(Script::defect(defect.clone()));
        let rejection = fixture.redeem().await?.err();
        assert_eq!(
            rejection.as_ref().map(|r| r.reason),
            Some(expected),
            "{defect:?}"
        );
        // The code may have been used, so none of these is retried.
        assert_eq!(rejection.map(|r| r.transient), Some(false), "{defect:?}");
    }
    Ok(())
}

#[tokio::test]
async fn unavailable_token_endpoint_is_transient() -> TestResult {
    let fixture = Fixture::start(Script::defect(Defect::TokenServiceUnavailable)).await?;
    let rejection = fixture.redeem().await?.err();
    assert_eq!(
        rejection.as_ref().map(|r| r.reason),
        Some(ReasonCode::IdpUnavailable)
    );
    assert_eq!(rejection.map(|r| r.transient), Some(true));
    Ok(())
}

#[tokio::test]
async fn token_endpoint_without_answer_times_out() -> TestResult {
    let script = Script::default();
    let fixture = Fixture::start_with(script, &["RS256"], Duration::from_secs(1)).await?;
    // Discovery and keys first, so only the token request meets the slow answer.
    assert!(fixture.redeem().await?.is_ok());
    fixture
        .idp
        .set_script(Script::defect(Defect::Slow { seconds: 10 }));
    let started = std::time::Instant::now();
    let found = reason(fixture.redeem().await?);
    assert_eq!(found, Some(ReasonCode::IdpUnavailable));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the timeout bounds the wait"
    );
    Ok(())
}
