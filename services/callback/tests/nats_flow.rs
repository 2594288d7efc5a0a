//! The callback service against a real `nats-server`: a scripted challenge service replies on
//! the request/reply subjects, and a scripted verifier responds to
//! `stepup.auth.code_received` with an outcome event, which must reach the waiting callback page.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use chrono::{Duration as TimeDelta, Utc};
use futures::StreamExt;
use stepup_bus::rpc::{RpcFault, serve};
use stepup_bus::{Bus, NatsSettings};
use stepup_callback::Config;
use stepup_e2e::nats::NatsServer;
use stepup_events::data::{ApprovalCompleted, Approver, AuthCodeReceived};
use stepup_events::rpc::{
    AuthorizationParams, CallbackReply, CallbackRequest, ChallengeStatus, StartReply, StartRequest,
    fault,
};
use stepup_events::{Envelope, subject};
use tokio_util::sync::CancellationToken;

/// Serves start and callback requests for challenge `ch-1` only.
async fn serve_challenge_service(bus: Bus, issuer: String, shutdown: CancellationToken) {
    let start_bus = bus.clone();
    let start_shutdown = shutdown.clone();
    tokio::spawn(async move {
        serve(
            &start_bus,
            subject::RPC_CHALLENGE_START,
            "challenge",
            start_shutdown,
            move |request: StartRequest| {
                let issuer = issuer.clone();
                async move {
                    if request.challenge_id != "ch-1" {
                        return Err(RpcFault::new(fault::NOT_FOUND, "no such challenge"));
                    }
                    Ok(StartReply {
                        challenge_id: "ch-1".into(),
                        approval_id: "apr-1".into(),
                        provider: "dev".into(),
                        status: ChallengeStatus::Started,
                        authorization: Some(AuthorizationParams {
                            issuer,
                            client_id: "stepup".into(),
                            redirect_uri: "http://127.0.0.1/auth/callback".into(),
                            scope: "openid".into(),
                            state: "state-1".into(),
                            nonce: "nonce-1".into(),
                            code_challenge: "cc".into(),
                            acr_values: Vec::new(),
                            max_age: None,
                            prompt_login: false,
                            login_hint: None,
                            claims: None,
                        }),
                        outcome: None,
                        expires_at: Utc::now() + TimeDelta::minutes(5),
                        traceparent: None,
                    })
                }
            },
        )
        .await
    });
    tokio::spawn(async move {
        serve(
            &bus,
            subject::RPC_CHALLENGE_CALLBACK,
            "challenge",
            shutdown,
            |request: CallbackRequest| async move {
                if request.state != "state-1" || request.browser_binding_sha256.is_none() {
                    return Err(RpcFault::new(fault::NOT_FOUND, "no such state"));
                }
                Ok(CallbackReply {
                    challenge_id: "ch-1".into(),
                    approval_id: "apr-1".into(),
                    provider: "dev".into(),
                    status: ChallengeStatus::Verifying,
                    accepted: true,
                    outcome: None,
                    return_url: None,
                    resource: None,
                    traceparent: None,
                })
            },
        )
        .await
    });
}

/// Publishes `stepup.approval.completed` for each `stepup.auth.code_received`.
async fn serve_verifier(bus: Bus) {
    let mut codes = bus
        .client()
        .subscribe(subject::AUTH_CODE_RECEIVED)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(message) = codes.next().await {
            let event: AuthCodeReceived = Envelope::from_json(&message.payload)
                .unwrap()
                .data()
                .unwrap();
            let completed = ApprovalCompleted {
                approval_id: event.approval_id,
                step_id: "step-1".into(),
                challenge_id: Some(event.challenge_id),
                approver: Approver {
                    id: "u1".into(),
                    email: "alice@example.com".into(),
                    idp_subject: None,
                },
                evidence: None,
            };
            bus.publish(&completed).await.unwrap();
        }
    });
}

#[tokio::test]
async fn approver_sees_outcome_delivered_over_nats() {
    let nats = NatsServer::start().await.expect("nats-server starts");
    let nats_settings = NatsSettings {
        url: nats.url(),
        ..NatsSettings::default()
    };
    let shutdown = CancellationToken::new();
    let issuer = spawn_discovery_server().await;

    let peer = Bus::connect(&nats_settings, "test").await.unwrap();
    serve_challenge_service(peer.clone(), issuer.clone(), shutdown.clone()).await;
    serve_verifier(peer).await;

    let config = Config {
        nats: nats_settings,
        listen: "127.0.0.1:0".parse().unwrap(),
        outcome_wait_ms: 5_000,
        ..Config::default()
    };
    let started = stepup_callback::start(config, shutdown.clone())
        .await
        .expect("service starts");
    let base = format!("http://{}", started.http_addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_for_challenge_service(&nats_settings_of(&nats)).await;

    // Opening the link redirects to the IdP and sets the binding cookie.
    let response = http
        .get(format!("{base}/stepup/ch-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{issuer}/authorize?")),
        "{location}"
    );
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    let binding = cookie.split(';').next().unwrap().to_owned();

    // An unknown challenge gets the not-found page.
    let response = http
        .get(format!("{base}/stepup/ch-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);

    // The callback waits until the outcome event arrives.
    let response = http
        .get(format!("{base}/auth/callback?state=state-1&code=code-1"))
        .header("cookie", binding)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(body.contains("Approval complete"), "{body}");

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), started.wait())
        .await
        .expect("service stops after shutdown")
        .expect("service stops cleanly");
}

fn nats_settings_of(nats: &NatsServer) -> NatsSettings {
    NatsSettings {
        url: nats.url(),
        ..NatsSettings::default()
    }
}

/// Polls until the scripted challenge service replies, at most 50 times.
async fn wait_for_challenge_service(settings: &NatsSettings) {
    let bus = Bus::connect(settings, "probe").await.unwrap();
    let probe = StartRequest {
        challenge_id: "probe".into(),
        browser_binding_sha256: String::new(),
    };
    for _ in 0..50 {
        let reply: Result<StartReply, _> = stepup_bus::rpc::request(
            &bus,
            subject::RPC_CHALLENGE_START,
            &probe,
            Duration::from_secs(1),
        )
        .await;
        if matches!(reply, Err(stepup_bus::rpc::RequestError::Fault(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the scripted challenge service did not start");
}

/// Serves a discovery document on a loopback port and returns the issuer URL.
async fn spawn_discovery_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
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
