//! Router tests without NATS: a fake backend replaces the challenge service and the
//! bus, and the only server started is a loopback discovery endpoint.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use chrono::{Duration as TimeDelta, Utc};
use futures::future::BoxFuture;
use stepup_bus::PublishError;
use stepup_bus::rpc::{RequestError, RpcFault};
use stepup_callback::{AppState, Backend, Config, Waiters, router};
use stepup_events::ReasonCode;
use stepup_events::data::{AuthCodeReceived, ChallengeStarted};
use stepup_events::rpc::{
    AuthorizationParams, CallbackReply, CallbackRequest, ChallengeOutcome, ChallengeStatus,
    StartReply, StartRequest, fault,
};
use tower::ServiceExt;

/// The challenge service and bus as the tests script them.
#[derive(Default)]
struct FakeBackend {
    start_reply: Option<StartReply>,
    callback_reply: Option<CallbackReply>,
    /// Returned by `callback` instead of `callback_reply` when set.
    callback_fault: Option<RpcFault>,
    /// Sent to the waiters when `stepup.auth.code_received` is published, as the verifier
    /// and challenge service would.
    outcome_on_publish: Option<ChallengeOutcome>,
    waiters: Option<Arc<Waiters>>,
    start_requests: Mutex<Vec<StartRequest>>,
    callback_requests: Mutex<Vec<CallbackRequest>>,
    started_events: Mutex<Vec<ChallengeStarted>>,
    code_events: Mutex<Vec<AuthCodeReceived>>,
}

fn not_found() -> RequestError {
    RequestError::Fault(RpcFault::new(fault::NOT_FOUND, "no such challenge"))
}

impl Backend for FakeBackend {
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<StartReply, RequestError>> {
        self.start_requests.lock().unwrap().push(request);
        let reply = self.start_reply.clone().ok_or_else(not_found);
        Box::pin(async move { reply })
    }

    fn callback(
        &self,
        request: CallbackRequest,
    ) -> BoxFuture<'_, Result<CallbackReply, RequestError>> {
        self.callback_requests.lock().unwrap().push(request);
        let reply = match &self.callback_fault {
            Some(fault) => Err(RequestError::Fault(fault.clone())),
            None => self.callback_reply.clone().ok_or_else(not_found),
        };
        Box::pin(async move { reply })
    }

    fn publish_started(&self, event: ChallengeStarted) -> BoxFuture<'_, Result<(), PublishError>> {
        self.started_events.lock().unwrap().push(event);
        Box::pin(async { Ok(()) })
    }

    fn publish_code_received(
        &self,
        event: AuthCodeReceived,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        if let (Some(outcome), Some(waiters)) = (&self.outcome_on_publish, &self.waiters) {
            waiters.notify(&event.challenge_id, outcome);
        }
        self.code_events.lock().unwrap().push(event);
        Box::pin(async { Ok(()) })
    }

    fn is_ready(&self) -> bool {
        true
    }
}

struct Harness {
    backend: Arc<FakeBackend>,
    waiters: Arc<Waiters>,
    app: axum::Router,
}

fn test_config() -> Config {
    Config {
        outcome_wait_ms: 100,
        allowed_return_origins: vec!["https://tickets.example.com".into()],
        ..Config::default()
    }
}

fn harness(backend: FakeBackend) -> Harness {
    harness_with(backend, test_config())
}

fn harness_with(mut backend: FakeBackend, config: Config) -> Harness {
    let waiters = Waiters::new();
    backend.waiters = Some(Arc::clone(&waiters));
    let backend = Arc::new(backend);
    let state =
        AppState::new(&config, backend.clone(), Arc::clone(&waiters)).expect("valid config");
    Harness {
        backend,
        waiters,
        app: router(state),
    }
}

async fn get(app: &axum::Router, uri: &str, cookie: Option<&str>) -> Response<Body> {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).expect("valid request"))
        .await
        .expect("the router is infallible")
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body reads");
    String::from_utf8(bytes.to_vec()).expect("body is UTF-8")
}

fn assert_security_headers(response: &Response<Body>) {
    let headers = response.headers();
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(value(header::REFERRER_POLICY), Some("no-referrer"));
    assert_eq!(
        value(header::CONTENT_SECURITY_POLICY),
        Some(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
        )
    );
    assert_eq!(value(header::X_FRAME_OPTIONS), Some("DENY"));
    assert_eq!(value(header::CACHE_CONTROL), Some("no-store"));
}

fn callback_reply(status: ChallengeStatus, accepted: bool) -> CallbackReply {
    CallbackReply {
        challenge_id: "ch-1".into(),
        approval_id: "apr-1".into(),
        provider: "okta".into(),
        status,
        accepted,
        outcome: None,
        return_url: Some("https://tickets.example.com/requests/42".into()),
        resource: None,
        traceparent: None,
    }
}

fn start_reply(status: ChallengeStatus, issuer: &str) -> StartReply {
    StartReply {
        challenge_id: "ch-1".into(),
        approval_id: "apr-1".into(),
        provider: "okta".into(),
        status,
        authorization: Some(AuthorizationParams {
            issuer: issuer.into(),
            client_id: "stepup".into(),
            redirect_uri: "http://127.0.0.1:8080/auth/callback".into(),
            scope: "openid email".into(),
            state: "state-value".into(),
            nonce: "nonce-value".into(),
            code_challenge: "challenge".into(),
            acr_values: vec!["phr".into()],
            max_age: Some(0),
            prompt_login: true,
            login_hint: Some("alice@example.com".into()),
            claims: None,
        }),
        outcome: None,
        expires_at: Utc::now() + TimeDelta::minutes(10),
        traceparent: None,
    }
}

#[tokio::test]
async fn start_rejects_malformed_challenge_id() {
    let harness = harness(FakeBackend::default());

    for uri in ["/stepup/a.b", "/stepup/%3Cscript%3E", "/stepup/a%20b"] {
        let response = get(&harness.app, uri, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_security_headers(&response);
    }
    assert!(harness.backend.start_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn start_unknown_challenge_shows_not_found_page() {
    let harness = harness(FakeBackend::default());

    let response = get(&harness.app, "/stepup/ch-unknown", None).await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&response);
    assert!(
        body_text(response)
            .await
            .contains("Approval link not found")
    );
}

#[tokio::test]
async fn start_of_finished_challenge_shows_outcome() {
    let mut reply = start_reply(ChallengeStatus::Expired, "http://127.0.0.1:1");
    reply.authorization = None;
    let harness = harness(FakeBackend {
        start_reply: Some(reply),
        ..FakeBackend::default()
    });

    let response = get(&harness.app, "/stepup/ch-1", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        body_text(response)
            .await
            .contains(ReasonCode::Expired.message())
    );
}

#[tokio::test]
async fn start_redirects_to_idp_with_binding_cookie() {
    let issuer = spawn_discovery_server().await;
    let harness = harness(FakeBackend {
        start_reply: Some(start_reply(ChallengeStatus::Started, &issuer)),
        ..FakeBackend::default()
    });

    let response = get(&harness.app, "/stepup/ch-1", None).await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_security_headers(&response);
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{issuer}/authorize?")),
        "{location}"
    );
    assert!(location.contains("state=state-value"), "{location}");
    assert!(location.contains("prompt=login"), "{location}");

    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("stepup_binding="), "{cookie}");
    assert!(
        cookie.contains("; Path=/auth/callback; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(
        cookie.contains("Max-Age=59"),
        "expected about 10 minutes: {cookie}"
    );

    // The challenge service got the hash of the cookie value, not the value.
    let value = cookie["stepup_binding=".len()..].split(';').next().unwrap();
    let sent = harness.backend.start_requests.lock().unwrap()[0]
        .browser_binding_sha256
        .clone();
    assert_eq!(sent.len(), 64);
    assert_ne!(sent, value);
    assert_eq!(harness.backend.started_events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn callback_without_state_shows_error_page() {
    let harness = harness(FakeBackend::default());

    let response = get(&harness.app, "/auth/callback?code=abc", None).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_security_headers(&response);
    assert!(
        body_text(response)
            .await
            .contains("Sign-in response incomplete")
    );
    assert!(harness.backend.callback_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn callback_escapes_idp_error_description() {
    let harness = harness(FakeBackend::default());

    let uri =
        "/auth/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let response = get(&harness.app, uri, None).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_security_headers(&response);
    let body = body_text(response).await;
    assert!(
        body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("access_denied"), "{body}");
}

#[tokio::test]
async fn callback_rejects_repeated_state() {
    let harness = harness(FakeBackend::default());

    let response = get(&harness.app, "/auth/callback?state=a&state=b&code=c", None).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(harness.backend.callback_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn callback_with_unknown_state_shows_error_page() {
    let harness = harness(FakeBackend::default());

    let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_security_headers(&response);
    assert!(
        body_text(response)
            .await
            .contains(ReasonCode::StateInvalid.message())
    );
}

#[tokio::test]
async fn callback_accepted_waits_for_outcome() {
    let harness = harness(FakeBackend {
        callback_reply: Some(callback_reply(ChallengeStatus::Verifying, true)),
        outcome_on_publish: Some(ChallengeOutcome {
            reason_code: None,
            message: "done".into(),
        }),
        ..FakeBackend::default()
    });

    let response = get(
        &harness.app,
        "/auth/callback?state=s&code=c&iss=https%3A%2F%2Fidp",
        Some("stepup_binding=abc"),
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response);
    let body = body_text(response).await;
    assert!(body.contains("Approval complete"), "{body}");
    assert!(
        body.contains(r#"href="https://tickets.example.com/requests/42""#),
        "{body}"
    );

    let requests = harness.backend.callback_requests.lock().unwrap();
    assert_eq!(requests[0].code.as_deref(), Some("c"));
    assert_eq!(requests[0].iss.as_deref(), Some("https://idp"));
    assert_eq!(
        requests[0].browser_binding_sha256.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(harness.backend.code_events.lock().unwrap().len(), 1);
    assert_eq!(harness.waiters.waiting_challenges(), 0);
}

#[tokio::test]
async fn callback_shows_pending_page_on_timeout() {
    let harness = harness(FakeBackend {
        callback_reply: Some(callback_reply(ChallengeStatus::Verifying, true)),
        ..FakeBackend::default()
    });

    let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(body_text(response).await.contains("Reload this page"));
    assert_eq!(harness.waiters.waiting_challenges(), 0);
}

#[tokio::test]
async fn callback_final_failure_shows_reason_without_foreign_link() {
    let mut reply = callback_reply(ChallengeStatus::Failed, false);
    reply.outcome = Some(ChallengeOutcome {
        reason_code: Some(ReasonCode::IdpError),
        message: "ignored".into(),
    });
    reply.return_url = Some("https://evil.example.net/x".into());
    let harness = harness(FakeBackend {
        callback_reply: Some(reply),
        ..FakeBackend::default()
    });

    let uri = "/auth/callback?state=s&error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E";
    let response = get(&harness.app, uri, None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = body_text(response).await;
    assert!(body.contains(ReasonCode::IdpError.message()), "{body}");
    assert!(body.contains("access_denied"), "{body}");
    assert!(!body.contains("<b>"), "{body}");
    assert!(!body.contains("evil.example.net"), "{body}");
    assert!(!body.contains("Return to the request"), "{body}");
    assert!(harness.backend.code_events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn health_endpoints_answer() {
    let harness = harness(FakeBackend::default());

    assert_eq!(
        get(&harness.app, "/healthz", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&harness.app, "/readyz", None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn readyz_reports_unavailable_once_shutdown_begins() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = AppState::new(
        &test_config(),
        Arc::new(FakeBackend::default()),
        Waiters::new(),
    )
    .expect("valid config")
    .with_shutdown(shutdown.clone());
    let app = router(state);
    assert_eq!(get(&app, "/readyz", None).await.status(), StatusCode::OK);

    shutdown.cancel();
    assert_eq!(
        get(&app, "/readyz", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&app, "/healthz", None).await.status(), StatusCode::OK);
}

/// Serves a discovery document on a loopback port and returns the issuer URL.
async fn spawn_discovery_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let issuer = format!("http://{}", listener.local_addr().expect("local address"));
    let document = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
    });
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

async fn get_from(
    app: &axum::Router,
    uri: &str,
    client: [u8; 4],
    headers: &[(&str, &str)],
) -> Response<Body> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).expect("valid request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((client, 40000))));
    app.clone()
        .oneshot(request)
        .await
        .expect("the router is infallible")
}

fn failed_reply(return_url: &str) -> CallbackReply {
    let mut reply = callback_reply(ChallengeStatus::Failed, false);
    reply.outcome = Some(ChallengeOutcome {
        reason_code: Some(ReasonCode::IdpError),
        message: ReasonCode::IdpError.message().into(),
    });
    reply.return_url = Some(return_url.into());
    reply
}

#[tokio::test]
async fn idp_text_with_markup_and_quotes_is_escaped() {
    let harness = harness(FakeBackend {
        callback_reply: Some(failed_reply("https://tickets.example.com/r/1")),
        ..FakeBackend::default()
    });
    let description = r#"<script>alert("x")</script> <a href='javascript:alert(1)'>retry</a> <img src=x onerror=alert(1)>"#;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("state", "s")
        .append_pair("error", "access_denied\"><svg onload=alert(1)>")
        .append_pair("error_description", description)
        .finish();

    for uri in [
        format!("/auth/callback?{query}"),
        // Without state the error page shows the IdP's text too.
        format!("/auth/callback?{}", query.replacen("state=s&", "", 1)),
    ] {
        let response = get(&harness.app, &uri, None).await;
        assert_security_headers(&response);
        let body = body_text(response).await;

        for raw in ["<script", "<a href='", "<img", "<svg", "href='javascript:"] {
            assert!(!body.contains(raw), "{raw} reached the page: {body}");
        }
        assert!(
            body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
            "{body}"
        );
        assert!(body.contains("&#34;") || body.contains("&quot;"), "{body}");
        assert!(body.contains("&#39;") || body.contains("&#x27;"), "{body}");
        assert!(!body.contains("href=\"javascript"), "{body}");
    }
}

#[tokio::test]
async fn return_url_off_allowed_origins_gets_no_link() {
    let tricks = [
        "https://tickets.example.com.evil.test/requests/42",
        "https://evil.test/https://tickets.example.com/",
        "//evil.test/requests/42",
        "/requests/42",
        "javascript:alert(document.domain)",
        "JavaScript://tickets.example.com/%0Aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://tickets.example.com@evil.test/",
        "https://user:pass@tickets.example.com/",
        "http://tickets.example.com/requests/42",
        "https://tickets.example.com:8443/requests/42",
        "https:evil.test",
        "https://evil.test\\@tickets.example.com/",
        "",
    ];
    for trick in tricks {
        let harness = harness(FakeBackend {
            callback_reply: Some(failed_reply(trick)),
            ..FakeBackend::default()
        });

        let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

        let body = body_text(response).await;
        assert!(!body.contains("Return to the request"), "{trick}: {body}");
        assert!(!body.contains("evil.test"), "{trick}: {body}");
        assert!(!body.contains("href="), "{trick}: {body}");
    }
}

#[tokio::test]
async fn return_url_on_allowed_origin_is_linked_as_parsed() {
    let harness = harness(FakeBackend {
        callback_reply: Some(failed_reply(
            "https://TICKETS.example.com/requests/42?tab=\"x\"",
        )),
        ..FakeBackend::default()
    });

    let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

    let body = body_text(response).await;
    assert!(
        body.contains(r#"href="https://tickets.example.com/requests/42?tab=%22x%22""#),
        "{body}"
    );
}

#[tokio::test]
async fn internal_failure_text_stays_off_the_page() {
    let secret = "sqlx error: password authentication failed for user stepup at 10.0.0.5";
    let harness = harness(FakeBackend {
        callback_fault: Some(RpcFault::new(fault::INTERNAL, secret)),
        ..FakeBackend::default()
    });

    let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers(&response);
    let body = body_text(response).await;
    for detail in ["sqlx", "password", "10.0.0.5", "internal"] {
        assert!(!body.contains(detail), "{detail} reached the page: {body}");
    }
}

#[tokio::test]
async fn unreachable_idp_during_iss_check_shows_reason() {
    let harness = harness(FakeBackend {
        callback_fault: Some(RpcFault::new(fault::IDP_UNAVAILABLE, "discovery failed")),
        ..FakeBackend::default()
    });

    let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = body_text(response).await;
    assert!(body.contains(ReasonCode::IdpUnavailable.as_str()), "{body}");
    assert!(!body.contains("discovery failed"), "{body}");
}

#[tokio::test]
async fn response_without_code_or_error_is_rejected() {
    let harness = harness(FakeBackend::default());

    let response = get(&harness.app, "/auth/callback?state=s&iss=x", None).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(harness.backend.callback_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_state_page_names_reason_code() {
    let harness = harness(FakeBackend::default());

    let response = get(&harness.app, "/auth/callback?state=s&code=c", None).await;

    let body = body_text(response).await;
    assert!(body.contains(ReasonCode::StateInvalid.as_str()), "{body}");
}

#[tokio::test]
async fn https_public_url_makes_binding_cookie_secure() {
    let issuer = spawn_discovery_server().await;
    let config = Config {
        public_url: "https://approve.example.com".into(),
        ..test_config()
    };
    let harness = harness_with(
        FakeBackend {
            start_reply: Some(start_reply(ChallengeStatus::Started, &issuer)),
            ..FakeBackend::default()
        },
        config,
    );

    let response = get(&harness.app, "/stepup/ch-1", None).await;

    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(cookie.contains("; HttpOnly;"), "{cookie}");
    assert!(cookie.contains("; SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("; Path=/auth/callback;"), "{cookie}");
}

#[tokio::test]
async fn client_over_rate_limit_gets_429_with_retry_after() {
    let config = Config {
        rate_limit_per_client_per_minute: 3,
        ..test_config()
    };
    let harness = harness_with(FakeBackend::default(), config);

    for attempt in 0..3 {
        let uri = format!("/auth/callback?state=s{attempt}&code=c");
        let response = get_from(&harness.app, &uri, [192, 0, 2, 1], &[]).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "attempt {attempt}"
        );
    }
    let response = get_from(&harness.app, "/stepup/ch-9", [192, 0, 2, 1], &[]).await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_security_headers(&response);
    let retry_after = response.headers()[header::RETRY_AFTER].to_str().unwrap();
    assert!(
        retry_after
            .parse::<u64>()
            .is_ok_and(|s| (1..=60).contains(&s)),
        "{retry_after}"
    );
    assert_eq!(harness.backend.callback_requests.lock().unwrap().len(), 3);
    assert!(harness.backend.start_requests.lock().unwrap().is_empty());

    // Another client still gets through, and health checks are never limited.
    let response = get_from(&harness.app, "/stepup/ch-9", [192, 0, 2, 2], &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = get_from(&harness.app, "/healthz", [192, 0, 2, 1], &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn challenge_over_rate_limit_gets_429_from_any_client() {
    let config = Config {
        rate_limit_per_challenge_per_minute: 2,
        ..test_config()
    };
    let harness = harness_with(FakeBackend::default(), config);

    for client in [[192, 0, 2, 1], [192, 0, 2, 2]] {
        let response = get_from(&harness.app, "/auth/callback?state=s&code=c", client, &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let response = get_from(
        &harness.app,
        "/auth/callback?code=c&state=s",
        [192, 0, 2, 3],
        &[],
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));

    for client in [[192, 0, 2, 1], [192, 0, 2, 2]] {
        let response = get_from(&harness.app, "/stepup/ch-1", client, &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let response = get_from(&harness.app, "/stepup/ch-1", [192, 0, 2, 3], &[]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(harness.backend.callback_requests.lock().unwrap().len(), 2);
    assert_eq!(harness.backend.start_requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn oversized_query_gets_414() {
    let harness = harness(FakeBackend::default());
    let uri = format!("/auth/callback?state=s&code={}", "c".repeat(9 * 1024));

    let response = get(&harness.app, &uri, None).await;

    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    assert_security_headers(&response);
    assert!(harness.backend.callback_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let harness = harness(FakeBackend::default());
    let padding = "p".repeat(4 * 1024);
    let headers: Vec<(String, String)> = (0..5)
        .map(|index| (format!("x-padding-{index}"), padding.clone()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();

    let response = get_from(
        &harness.app,
        "/auth/callback?state=s&code=c",
        [192, 0, 2, 1],
        &headers,
    )
    .await;

    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(harness.backend.callback_requests.lock().unwrap().is_empty());
}
