//! Providers saved through the admin API, end to end: the Okta-like and Entra-like
//! development IdPs in every mode, one policy whose steps use different providers, and
//! provider tests.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod registry_support;

use registry_support::{
    Idps, RegistrySystem, TWO_FACTOR, TestResult, approval, reason_of, sign_in,
};
use reqwest::Method;
use stepup_e2e::browser::Browser;
use stepup_events::subject;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn okta_two_factor_passes_and_password_fails() -> TestResult {
    let system = RegistrySystem::start(Idps {
        okta: true,
        ..Idps::default()
    })
    .await?;
    system.create_provider(system.okta_provider("okta")).await;
    system.put_policy("prod", "security", "okta").await;

    let passed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), true)
        .await?;
    assert_eq!(
        passed.event_type(),
        subject::APPROVAL_COMPLETED,
        "{:?}",
        passed.data_json()
    );
    let evidence = &passed.data_json().unwrap()["evidence"];
    assert_eq!(evidence["acr"], TWO_FACTOR);
    assert_eq!(evidence["amr"], serde_json::json!(["pwd", "otp"]));

    let failed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), false)
        .await?;
    assert_eq!(reason_of(&failed).as_deref(), Some("acr_not_satisfied"));

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entra_oidc_mode_passes_without_acr() -> TestResult {
    let system = RegistrySystem::start(Idps {
        entra: true,
        ..Idps::default()
    })
    .await?;
    let saved = system
        .create_provider(system.entra_provider("entra", "oidc"))
        .await;
    assert_eq!(saved["provider"]["binding"], "oid");
    assert_eq!(saved["provider"]["requirement"]["max_age"], 0);
    assert_eq!(saved["provider"]["requirement"]["prompt_login"], true);
    system.put_policy("prod", "security", "entra").await;

    // Entra v2 ID tokens carry no acr or amr, and mode oidc requires neither.
    let passed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), false)
        .await?;
    assert_eq!(
        passed.event_type(),
        subject::APPROVAL_COMPLETED,
        "{:?}",
        passed.data_json()
    );
    let evidence = &passed.data_json().unwrap()["evidence"];
    assert!(evidence.get("acr").is_none(), "{evidence}");
    assert_eq!(evidence["amr"], serde_json::json!([]));
    assert!(evidence["auth_time"].is_string());

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entra_oidc_mode_rejects_session_older_than_challenge() -> TestResult {
    let system = RegistrySystem::start(Idps {
        entra: true,
        entra_ignores_max_age: true,
        ..Idps::default()
    })
    .await?;
    system
        .create_provider(system.entra_provider("entra", "oidc"))
        .await;
    system.put_policy("prod", "security", "entra").await;

    // The first approval signs in; the IdP keeps the session.
    let mut browser = Browser::new()?;
    let first = system
        .approve(&mut browser, &approval("prod", "security"), false)
        .await?;
    assert_eq!(first.event_type(), subject::APPROVAL_COMPLETED);

    // The IdP ignores max_age=0 and prompt=login, so the second challenge gets the old
    // auth_time back, from before the challenge (beyond the two seconds of skew).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let second = system
        .approve(&mut browser, &approval("prod", "security"), false)
        .await?;
    assert_eq!(reason_of(&second).as_deref(), Some("auth_too_old"));

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entra_acrs_mode_needs_the_context() -> TestResult {
    let system = RegistrySystem::start(Idps {
        entra: true,
        ..Idps::default()
    })
    .await?;
    system
        .create_provider(system.entra_provider("entra-c1", "acrs"))
        .await;
    system.put_policy("prod", "security", "entra-c1").await;

    // With the one-time code the IdP satisfies c1 and lists it in acrs.
    let passed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), true)
        .await?;
    assert_eq!(
        passed.event_type(),
        subject::APPROVAL_COMPLETED,
        "{:?}",
        passed.data_json()
    );
    assert_eq!(
        passed.data_json().unwrap()["evidence"]["acrs"],
        serde_json::json!(["c1"])
    );

    // With the password alone the IdP leaves acrs out.
    let failed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), false)
        .await?;
    assert_eq!(reason_of(&failed).as_deref(), Some("acrs_missing"));
    let message = failed.data_json().unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("Conditional Access"), "{message}");

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entra_acrs_mode_rejects_unsatisfied_context() -> TestResult {
    let system = RegistrySystem::start(Idps {
        entra: true,
        ..Idps::default()
    })
    .await?;
    let mut provider = system.entra_provider("entra-c2", "acrs");
    provider["auth_context"] = "c2".into();
    system.create_provider(provider).await;
    system.put_policy("prod", "security", "entra-c2").await;

    // Alice's one-time code satisfies c1 only, so the IdP returns no acrs for c2.
    let failed = system
        .approve(&mut Browser::new()?, &approval("prod", "security"), true)
        .await?;
    assert_eq!(reason_of(&failed).as_deref(), Some("acrs_missing"));

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steps_of_one_policy_use_two_providers() -> TestResult {
    let system = RegistrySystem::start(Idps {
        okta: true,
        entra: true,
        ..Idps::default()
    })
    .await?;
    system.create_provider(system.okta_provider("okta")).await;
    system
        .create_provider(system.entra_provider("entra", "acrs"))
        .await;
    system.put_policy("change", "security", "okta").await;
    system.put_policy("change", "finance", "entra").await;

    let security = approval("change", "security");
    let first = system
        .approve(&mut Browser::new()?, &security, true)
        .await?;
    assert_eq!(first.event_type(), subject::APPROVAL_COMPLETED);
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &security.approval_id)
        .await;
    assert_eq!(required.data_json().unwrap()["provider"], "okta");
    assert_eq!(
        first.data_json().unwrap()["evidence"]["issuer"],
        system.okta_issuer()
    );

    let finance = approval("change", "finance");
    let second = system.approve(&mut Browser::new()?, &finance, true).await?;
    assert_eq!(second.event_type(), subject::APPROVAL_COMPLETED);
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &finance.approval_id)
        .await;
    assert_eq!(required.data_json().unwrap()["provider"], "entra");
    assert_eq!(
        second.data_json().unwrap()["evidence"]["issuer"],
        system.entra_issuer()
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_test_reports_pass_and_failure() -> TestResult {
    let system = RegistrySystem::start(Idps {
        okta: true,
        ..Idps::default()
    })
    .await?;
    system.create_provider(system.okta_provider("okta")).await;
    let body = serde_json::json!({"approver_email": "alice@example.com"});

    // A pass: the report lists what was requested and received, and the time is recorded.
    let (status, started) = system
        .admin(
            Method::POST,
            "/admin/providers/okta/test",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let url = started["url"].as_str().unwrap().to_owned();
    sign_in(&mut Browser::new()?, &url, true).await?;
    let tested = system.wait_for(subject::PROVIDER_TESTED, "okta").await;
    let report = tested.data_json().unwrap().clone();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["test_id"], started["test_id"]);
    assert_eq!(
        report["requested"]["acr_values"],
        serde_json::json!([TWO_FACTOR])
    );
    assert_eq!(report["received"]["acr"], TWO_FACTOR);
    assert_eq!(report["received"]["amr"], serde_json::json!(["pwd", "otp"]));
    let (_, provider) = system
        .admin(Method::GET, "/admin/providers/okta", None)
        .await;
    assert!(provider["last_tested_at"].is_string(), "{provider}");

    // A failure names the check and what to change.
    let (_, started) = system
        .admin(Method::POST, "/admin/providers/okta/test", Some(body))
        .await;
    let url = started["url"].as_str().unwrap().to_owned();
    let test_id = started["test_id"].as_str().unwrap().to_owned();
    sign_in(&mut Browser::new()?, &url, false).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let failure = loop {
        let (_, challenge) = system
            .admin(Method::GET, &format!("/admin/challenges/{test_id}"), None)
            .await;
        if challenge["status"] == "failed" {
            break challenge;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "test challenge did not fail: {challenge}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(failure["reason_code"], "acr_not_satisfied");
    let report = loop {
        let reports: Vec<_> = system
            .find_all(subject::PROVIDER_TESTED, "okta")
            .into_iter()
            .filter_map(|e| e.data_json().cloned())
            .filter(|data| data["test_id"] == test_id.as_str())
            .collect();
        if let Some(report) = reports.into_iter().next() {
            break report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed test report"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(report["passed"], false);
    assert_eq!(report["failure"]["check"], "acr");
    assert_eq!(report["failure"]["reason_code"], "acr_not_satisfied");

    system.stop().await;
    Ok(())
}
