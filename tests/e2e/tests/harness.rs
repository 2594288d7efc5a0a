//! Self-tests of the end-to-end harness: a real nats-server, the development
//! IdP from `tests/idp` and the scripted browser logging in at it.
//!
//! They need `scripts/install-deps.sh` to have run.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::error::Error;
use std::net::SocketAddr;

use async_nats::jetstream::{self, consumer::pull, stream};
use axum::Router;
use axum::routing::get;
use stepup_e2e::{Browser, DevIdp, IdpClient, IdpConfig, IdpError, IdpUser, NatsServer, Profile};
use tokio::net::{TcpListener, TcpStream};

type TestResult = Result<(), Box<dyn Error>>;

const TENANT: &str = "9f5b1c3e-2d4a-4b6f-8e7d-0a1b2c3d4e5f";
const CLIENT_ID: &str = "stepup-test";
const CLIENT_SECRET: &str = "test-secret";

// PKCE pair from RFC 7636, appendix B.
const CODE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM";

fn alice() -> IdpUser {
    IdpUser {
        login: "alice@example.com".to_owned(),
        password: "alice-password".to_owned(),
        otp: Some("123456".to_owned()),
        sub: "00u1alice".to_owned(),
        oid: Some("11111111-1111-1111-1111-111111111111".to_owned()),
        email: Some("alice@example.com".to_owned()),
        email_verified: Some(true),
        name: Some("Alice".to_owned()),
        contexts: vec!["c1".to_owned()],
    }
}

/// Serves `GET /cb` on a free loopback port, standing in for a client's
/// redirect URI, and returns its address.
async fn start_redirect_target() -> Result<SocketAddr, Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/cb", get(|| async { "callback reached" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn start_idp(profile: Profile, redirect_uri: &str) -> Result<DevIdp, Box<dyn Error>> {
    let config = IdpConfig {
        profile,
        tenant: TENANT.to_owned(),
        users: vec![alice()],
        clients: vec![IdpClient::new(CLIENT_ID, CLIENT_SECRET, redirect_uri)],
        ignore_max_age: false,
    };
    Ok(DevIdp::start(config).await?)
}

async fn authorization_endpoint(
    browser: &mut Browser,
    idp: &DevIdp,
) -> Result<String, Box<dyn Error>> {
    let page = browser.get(idp.discovery_url()).await?;
    let discovery: serde_json::Value = serde_json::from_str(&page.body)?;
    let endpoint = discovery["authorization_endpoint"]
        .as_str()
        .ok_or("discovery has no authorization_endpoint")?;
    Ok(endpoint.to_owned())
}

fn authorization_url(
    endpoint: &str,
    redirect_uri: &str,
    state: &str,
) -> Result<url::Url, Box<dyn Error>> {
    let url = url::Url::parse_with_params(
        endpoint,
        [
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", CODE_CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    )?;
    Ok(url)
}

#[tokio::test]
async fn nats_server_accepts_client_and_stops() -> TestResult {
    let mut server = NatsServer::start().await?;
    let client = async_nats::connect(server.url()).await?;

    client.publish("harness.check", "hello".into()).await?;
    client.flush().await?;
    drop(client);
    server.stop().await?;

    assert!(!server.is_running());
    let connect_result = TcpStream::connect(("127.0.0.1", server.port())).await;
    assert!(
        connect_result.is_err(),
        "port {} still accepts connections",
        server.port()
    );
    Ok(())
}

#[tokio::test]
async fn nats_server_supports_several_filter_subjects() -> TestResult {
    let server = NatsServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client);

    let stream = js
        .create_stream(stream::Config {
            name: "HARNESS".to_owned(),
            subjects: vec!["harness.>".to_owned()],
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("two-filters".to_owned()),
            filter_subjects: vec!["harness.a".to_owned(), "harness.b".to_owned()],
            ..Default::default()
        })
        .await;

    assert!(
        consumer.is_ok(),
        "consumer rejected: {:?}\n{}",
        consumer.err(),
        server.log()
    );
    Ok(())
}

#[tokio::test]
async fn nats_restart_keeps_jetstream_store() -> TestResult {
    let mut server = NatsServer::start().await?;
    let js = jetstream::new(async_nats::connect(server.url()).await?);
    js.create_stream(stream::Config {
        name: "KEPT".to_owned(),
        subjects: vec!["kept.>".to_owned()],
        ..Default::default()
    })
    .await?;
    js.publish("kept.one", "1".into()).await?.await?;
    let port = server.port();

    server.restart_keeping_store().await?;

    assert_eq!(server.port(), port);
    let js = jetstream::new(async_nats::connect(server.url()).await?);
    let stream = js.get_stream("KEPT").await?;
    assert_eq!(stream.cached_info().state.messages, 1, "{}", server.log());
    Ok(())
}

#[tokio::test]
async fn nats_servers_get_separate_ports() -> TestResult {
    let first = NatsServer::start().await?;
    let second = NatsServer::start().await?;

    assert_ne!(first.port(), second.port());
    assert_ne!(first.store_dir(), second.store_dir());
    Ok(())
}

#[tokio::test]
async fn idp_serves_discovery_for_okta() -> TestResult {
    let idp = start_idp(Profile::Okta, "http://127.0.0.1:9/cb").await?;
    let mut browser = Browser::new()?;

    let page = browser.get(idp.discovery_url()).await?;

    assert_eq!(page.status, 200, "{}", idp.log());
    let discovery: serde_json::Value = serde_json::from_str(&page.body)?;
    assert_eq!(discovery["issuer"], idp.issuer());
    assert_eq!(idp.issuer(), format!("http://127.0.0.1:{}", idp.port()));
    Ok(())
}

#[tokio::test]
async fn idp_puts_tenant_in_entra_issuer() -> TestResult {
    let idp = start_idp(Profile::Entra, "http://127.0.0.1:9/cb").await?;
    let mut browser = Browser::new()?;

    let page = browser.get(idp.discovery_url()).await?;

    assert_eq!(page.status, 200, "{}", idp.log());
    let discovery: serde_json::Value = serde_json::from_str(&page.body)?;
    assert_eq!(discovery["issuer"], idp.issuer());
    assert!(idp.issuer().ends_with(&format!("/{TENANT}/v2.0")));
    Ok(())
}

#[tokio::test]
async fn browser_logs_in_and_brings_code_back() -> TestResult {
    let target = start_redirect_target().await?;
    let redirect_uri = format!("http://{target}/cb");
    let idp = start_idp(Profile::Okta, &redirect_uri).await?;
    let mut browser = Browser::new()?;
    let endpoint = authorization_endpoint(&mut browser, &idp).await?;

    let login = browser
        .get(authorization_url(&endpoint, &redirect_uri, "st-123")?)
        .await?;
    assert_eq!(login.status, 200, "{}", idp.log());
    assert!(
        login.redirects.len() >= 2,
        "authorization request redirected to the login page"
    );

    let done = browser
        .submit_form(
            &login,
            "login",
            &[
                ("login", "alice@example.com"),
                ("password", "alice-password"),
            ],
        )
        .await?;

    assert_eq!(done.status, 200, "{}", idp.log());
    assert_eq!(done.url.path(), "/cb");
    assert_eq!(done.body, "callback reached");
    assert_eq!(done.query_param("state").as_deref(), Some("st-123"));
    assert_eq!(done.query_param("iss").as_deref(), Some(idp.issuer()));
    assert!(
        done.query_param("code")
            .is_some_and(|code| !code.is_empty())
    );
    assert!(done.query_param("error").is_none());
    assert_eq!(browser.redirect_chain(), done.redirects.as_slice());
    assert_eq!(browser.redirect_chain().last(), Some(&done.url));
    Ok(())
}

#[tokio::test]
async fn browser_reuses_idp_session_cookie() -> TestResult {
    let target = start_redirect_target().await?;
    let redirect_uri = format!("http://{target}/cb");
    let idp = start_idp(Profile::Okta, &redirect_uri).await?;
    let mut browser = Browser::new()?;
    let endpoint = authorization_endpoint(&mut browser, &idp).await?;
    let login = browser
        .get(authorization_url(&endpoint, &redirect_uri, "first")?)
        .await?;
    browser
        .submit_form(
            &login,
            "login",
            &[
                ("login", "alice@example.com"),
                ("password", "alice-password"),
            ],
        )
        .await?;

    let again = browser
        .get(authorization_url(&endpoint, &redirect_uri, "second")?)
        .await?;

    assert_eq!(again.url.path(), "/cb", "{}", idp.log());
    assert_eq!(again.query_param("state").as_deref(), Some("second"));
    assert!(browser.cookie_header(idp.issuer_url()).is_some());
    Ok(())
}

#[tokio::test]
async fn browser_sees_login_form_again_after_wrong_password() -> TestResult {
    let target = start_redirect_target().await?;
    let redirect_uri = format!("http://{target}/cb");
    let idp = start_idp(Profile::Okta, &redirect_uri).await?;
    let mut browser = Browser::new()?;
    let endpoint = authorization_endpoint(&mut browser, &idp).await?;
    let login = browser
        .get(authorization_url(&endpoint, &redirect_uri, "st")?)
        .await?;

    let retry = browser
        .submit_form(
            &login,
            "login",
            &[("login", "alice@example.com"), ("password", "wrong")],
        )
        .await?;

    assert_ne!(retry.url.path(), "/cb");
    assert!(retry.body.contains(r#"id="login""#), "{}", retry.body);
    Ok(())
}

#[tokio::test]
async fn browser_without_redirects_returns_first_response() -> TestResult {
    let target = start_redirect_target().await?;
    let redirect_uri = format!("http://{target}/cb");
    let idp = start_idp(Profile::Okta, &redirect_uri).await?;
    let mut browser = Browser::new()?;
    let endpoint = authorization_endpoint(&mut browser, &idp).await?;

    let first = browser
        .get_without_redirects(authorization_url(&endpoint, &redirect_uri, "st")?)
        .await?;

    assert!(first.is_redirect(), "status {}", first.status);
    let location = first.location().ok_or("redirect without Location")?;
    assert!(
        location.path().contains("/interaction/"),
        "{}",
        location.path()
    );
    assert_eq!(browser.redirect_chain().len(), 1);
    Ok(())
}

#[tokio::test]
async fn idp_start_reports_config_error_with_log() -> TestResult {
    let user = IdpUser {
        oid: None,
        ..alice()
    };
    let config = IdpConfig {
        profile: Profile::Entra,
        tenant: TENANT.to_owned(),
        users: vec![user],
        clients: vec![IdpClient::new(
            CLIENT_ID,
            CLIENT_SECRET,
            "http://127.0.0.1:9/cb",
        )],
        ignore_max_age: false,
    };

    let error = DevIdp::start(config)
        .await
        .expect_err("Entra users need an oid");

    assert!(matches!(error, IdpError::ExitedEarly { .. }), "{error}");
    assert!(error.to_string().contains("oid"), "{error}");
    Ok(())
}
