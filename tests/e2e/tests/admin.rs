//! The admin API end to end: the bearer token, input checks with their machine codes,
//! secrets absent from every response and from the bucket, policies and challenge lookups,
//! and a provider change reaching the running verifier without a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod registry_support;

use registry_support::{
    ADMIN_TOKEN, CLIENT_SECRET, Idps, RegistrySystem, TestResult, approval, reason_of,
};
use reqwest::Method;
use stepup_e2e::browser::Browser;
use stepup_events::subject;

fn okta_only() -> Idps {
    Idps {
        okta: true,
        ..Idps::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_or_wrong_token_is_rejected() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    for path in ["/admin/providers", "/admin/policies", "/admin/challenges/x"] {
        let (status, body) = system.admin_with(Method::GET, path, None, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], "missing_token");

        let (status, body) = system
            .admin_with(Method::GET, path, None, Some("not-the-token"))
            .await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], "invalid_token");
    }

    // A rejected write changes nothing.
    let provider = system.okta_provider("okta");
    let (status, _) = system
        .admin_with(
            Method::POST,
            "/admin/providers",
            Some(provider),
            Some("nope"),
        )
        .await;
    assert_eq!(status, 401);
    let (_, listed) = system.admin(Method::GET, "/admin/providers", None).await;
    assert_eq!(listed, serde_json::json!([]));

    let (status, _) = system
        .admin_with(Method::GET, "/admin/providers", None, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_provider_input_names_field_and_code() -> TestResult {
    let system = RegistrySystem::start(Idps {
        okta: true,
        entra: true,
        ..Idps::default()
    })
    .await?;
    let unreachable = format!("http://127.0.0.1:{}", stepup_e2e::free_port()?);
    let mut cases = Vec::new();

    let mut body = system.okta_provider("p1");
    body["kind"] = "saml".into();
    cases.push((body, "kind", "unknown_kind"));

    let mut body = system.okta_provider("p2");
    body["issuer"] = "not a url".into();
    cases.push((body, "issuer", "invalid_issuer"));

    let mut body = system.okta_provider("p3");
    body["issuer"] = unreachable.clone().into();
    cases.push((body, "issuer", "discovery_failed"));

    let mut body = system.okta_provider("p4");
    body.as_object_mut().unwrap().remove("client_secret");
    cases.push((body, "client_secret", "missing_client_secret"));

    let mut body = system.entra_provider("p5", "acrs");
    body["auth_context"] = "c100".into();
    cases.push((body, "auth_context", "invalid_auth_context"));

    let mut body = system.okta_provider("p6");
    body["issuer"] = format!("{}/", system.okta_issuer()).into();
    cases.push((body, "issuer", "issuer_mismatch"));

    for (body, field, code) in cases {
        let (status, answer) = system
            .admin(Method::POST, "/admin/providers", Some(body))
            .await;
        assert_eq!(status, 422, "{code}: {answer}");
        assert_eq!(answer["code"], code, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) || message.contains("discovery"),
            "{message}"
        );
    }

    // An unknown field is a JSON error, not silently ignored.
    let mut body = system.okta_provider("p7");
    body["acr_value"] = "typo".into();
    let (status, answer) = system
        .admin(Method::POST, "/admin/providers", Some(body))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_json");

    // None of them was stored.
    let (_, listed) = system.admin(Method::GET, "/admin/providers", None).await;
    assert_eq!(listed, serde_json::json!([]));
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsupported_acr_value_is_a_warning() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    let mut body = system.okta_provider("okta");
    body["acr_values"] = serde_json::json!(["urn:okta:loa:2fa:any", "urn:example:unknown"]);
    let saved = system.create_provider(body).await;
    let warnings = saved["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{saved}");
    assert_eq!(warnings[0]["code"], "acr_value_not_supported");
    assert_eq!(warnings[0]["field"], "acr_values");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_absent_from_responses_and_bucket() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    let saved = system.create_provider(system.okta_provider("okta")).await;
    assert_eq!(saved["provider"]["client_secret"]["source"], "encrypted");
    system.put_policy("prod", "security", "okta").await;

    // Every route that shows a provider, after every kind of change.
    let mut update = system.okta_provider("okta");
    update["client_secret"] = format!("{CLIENT_SECRET}-rotated").into();
    system
        .admin(Method::PUT, "/admin/providers/okta", Some(update))
        .await;
    let mut keep = system.okta_provider("okta");
    keep.as_object_mut().unwrap().remove("client_secret");
    let (status, kept) = system
        .admin(Method::PUT, "/admin/providers/okta", Some(keep))
        .await;
    assert_eq!(status, 200, "{kept}");
    system.admin(Method::GET, "/admin/providers", None).await;
    system
        .admin(Method::GET, "/admin/providers/okta", None)
        .await;
    system
        .admin(Method::POST, "/admin/providers/okta/disable", None)
        .await;
    system
        .admin(Method::POST, "/admin/providers/okta/enable", None)
        .await;
    let test = serde_json::json!({"approver_email": "alice@example.com"});
    system
        .admin(Method::POST, "/admin/providers/okta/test", Some(test))
        .await;
    system.admin(Method::GET, "/admin/policies", None).await;

    let responses = system.responses.lock().unwrap().clone();
    assert!(responses.len() >= 9);
    for body in &responses {
        assert!(
            !body.contains(CLIENT_SECRET),
            "a response shows the secret: {body}"
        );
        assert!(
            !body.contains("ciphertext"),
            "a response shows the ciphertext: {body}"
        );
    }

    // The bucket holds only ciphertext.
    let kv = async_nats::jetstream::new(system.bus.client().clone())
        .get_key_value("stepup_providers")
        .await?;
    let stored = kv.get("okta").await?.expect("the provider is stored");
    let stored = String::from_utf8_lossy(&stored);
    assert!(!stored.contains(CLIENT_SECRET), "{stored}");
    assert!(stored.contains("ciphertext"), "{stored}");

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_verifier_sees_provider_change() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    let mut wrong = system.okta_provider("okta");
    wrong["client_secret"] = "not-the-registered-secret".into();
    system.create_provider(wrong).await;
    system.put_policy("prod", "security", "okta").await;

    // The IdP rejects the wrong secret at the token endpoint.
    let failed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), true)
        .await?;
    assert_eq!(reason_of(&failed).as_deref(), Some("token_exchange_failed"));

    // The fix reaches the running verifier through the store, without a restart.
    let (status, answer) = system
        .admin(
            Method::PUT,
            "/admin/providers/okta",
            Some(system.okta_provider("okta")),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let passed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), true)
        .await?;
    assert_eq!(
        passed.event_type(),
        subject::APPROVAL_COMPLETED,
        "{:?}",
        passed.data_json()
    );

    // Disabling it takes effect for the next approval too.
    system
        .admin(Method::POST, "/admin/providers/okta/disable", None)
        .await;
    let next = approval("prod", "security");
    system.request(&next).await;
    let rejected = system.outcome(&next.approval_id).await;
    assert_eq!(reason_of(&rejected).as_deref(), Some("provider_unknown"));

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_disabled_mid_challenge_fails_it() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    system.create_provider(system.okta_provider("okta")).await;
    system.put_policy("prod", "security", "okta").await;

    // The challenge is issued while the provider is enabled ...
    let approval = approval("prod", "security");
    system.request(&approval).await;
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;
    let url = required.data_json().unwrap()["step_up_url"]
        .as_str()
        .unwrap()
        .to_owned();

    // ... and the verifier refuses to redeem its code once the provider is disabled.
    let (status, _) = system
        .admin(Method::POST, "/admin/providers/okta/disable", None)
        .await;
    assert_eq!(status, 200);
    registry_support::sign_in(&mut Browser::new()?, &url, true).await?;
    let failed = system.outcome(&approval.approval_id).await;
    assert_eq!(reason_of(&failed).as_deref(), Some("provider_unknown"));

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_and_challenge_lookups() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    system.create_provider(system.okta_provider("okta")).await;

    // A policy must name an existing provider.
    let body = serde_json::json!({"provider": "missing"});
    let (status, answer) = system
        .admin(Method::PUT, "/admin/policies/prod/security", Some(body))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "unknown_provider");

    // Without a policy the step is rejected; a default policy then covers it.
    let lonely = approval("prod", "security");
    system.request(&lonely).await;
    assert_eq!(
        reason_of(&system.outcome(&lonely.approval_id).await).as_deref(),
        Some("no_policy")
    );
    let (status, _) = system
        .admin(
            Method::PUT,
            "/admin/policies/*/*",
            Some(serde_json::json!({"provider": "okta"})),
        )
        .await;
    assert_eq!(status, 201);
    let covered = approval("prod", "security");
    system.request(&covered).await;
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &covered.approval_id)
        .await;
    let challenge_id = required.data_json().unwrap()["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The challenge by id and by approval, without its secrets.
    let (status, challenge) = system
        .admin(
            Method::GET,
            &format!("/admin/challenges/{challenge_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(challenge["approval_id"], covered.approval_id.as_str());
    assert_eq!(challenge["status"], "issued");
    for secret in ["state", "nonce", "pkce_verifier", "authorization_code"] {
        assert!(
            challenge.get(secret).is_none(),
            "{secret} shown: {challenge}"
        );
    }
    let path = format!("/admin/approvals/{}/challenges", covered.approval_id);
    let (_, by_approval) = system.admin(Method::GET, &path, None).await;
    assert_eq!(by_approval[0]["id"], challenge_id.as_str());
    let (status, _) = system
        .admin(Method::GET, "/admin/challenges/nope", None)
        .await;
    assert_eq!(status, 404);

    // A provider in use cannot be deleted; after its policy goes, it can.
    let (status, answer) = system
        .admin(Method::DELETE, "/admin/providers/okta", None)
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "provider_in_use");
    let (status, _) = system
        .admin(Method::DELETE, "/admin/policies/*/*", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = system
        .admin(Method::DELETE, "/admin/providers/okta", None)
        .await;
    assert_eq!(status, 204);

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_and_automated_approvals_are_rejected() -> TestResult {
    let system = RegistrySystem::start(okta_only()).await?;
    system.create_provider(system.okta_provider("okta")).await;
    system.put_policy("prod", "security", "okta").await;

    let mut from_slack = approval("prod", "security");
    from_slack.channel = stepup_events::data::Channel::Slack;
    system.request(&from_slack).await;
    let rejected = system.outcome(&from_slack.approval_id).await;
    assert_eq!(
        reason_of(&rejected).as_deref(),
        Some("channel_not_supported")
    );
    let message = rejected.data_json().unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("browser"), "{message}");

    let mut automated = approval("prod", "security");
    automated.automated = true;
    system.request(&automated).await;
    let rejected = system.outcome(&automated.approval_id).await;
    assert_eq!(
        reason_of(&rejected).as_deref(),
        Some("automated_approval_not_allowed")
    );

    system.stop().await;
    Ok(())
}
