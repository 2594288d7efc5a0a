//! Defects of the authorization response, end to end with the development IdP: each one
//! fails closed with its own reason code, no approval completes, and the rejection is in the
//! audit log. The browser stops before the IdP's redirect to the callback, so each test can
//! change, drop or repeat that request.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod callback_support;
mod support;

use std::time::Duration;

use callback_support::{
    assert_failure_page, assert_not_completed, assert_rejected, get_with_cookie,
    sign_in_until_callback,
};
use stepup_events::{ReasonCode, subject};
use support::{Options, STEP_UP_STEP, System, TestResult, alice, approval};

const NO_WAIT: Duration = Duration::ZERO;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idp_error_fails_challenge_and_is_shown_escaped() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;

    // The IdP's answer becomes an error response with hostile text.
    let description = r#"<script>alert("x")</script> <a href='javascript:alert(1)'>x</a>"#;
    let url = at.callback_with(|pairs| {
        pairs.retain(|(name, _)| name != "code");
        pairs.push(("error".into(), "access_denied".into()));
        pairs.push(("error_description".into(), description.into()));
    });
    let page = get_with_cookie(&url, Some(&at.cookie())).await;

    assert_failure_page(&page, ReasonCode::IdpError);
    assert!(page.body.contains("access_denied"), "{}", page.body);
    for raw in ["<script", "<a href", "href='javascript"] {
        assert!(!page.body.contains(raw), "{raw} reached the page");
    }
    assert!(page.body.contains("&#60;script&#62;") || page.body.contains("&lt;script&gt;"));
    assert_rejected(&system, &at.approval_id, ReasonCode::IdpError).await;

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_or_unknown_state_is_rejected_and_changes_nothing() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;
    let cookie = at.cookie();

    let without_state = at.callback_with(|pairs| pairs.retain(|(name, _)| name != "state"));
    let unknown_state = at.callback_with(|pairs| {
        for (name, value) in pairs.iter_mut() {
            if name == "state" {
                *value = "forged-state-value".into();
            }
        }
    });
    for url in [without_state, unknown_state] {
        let page = get_with_cookie(&url, Some(&cookie)).await;
        assert_eq!(page.status, reqwest::StatusCode::BAD_REQUEST);
        assert!(
            page.body.contains(&format!(
                "Reason code: {}",
                ReasonCode::StateInvalid.as_str()
            )),
            "{}",
            page.body
        );
    }

    // NOTE: a response that names no challenge has no approval to audit it under; it is
    // only logged. The challenge itself is untouched, so the real response still works.
    assert_eq!(
        system.count(subject::AUTH_CODE_RECEIVED, &at.approval_id),
        0
    );
    assert_eq!(system.count(subject::CHALLENGE_FAILED, &at.approval_id), 0);
    let mut browser = at.browser;
    let page = browser.get(at.callback.as_str()).await?;
    assert!(page.body.contains("Approval complete"), "{}", page.body);

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_without_binding_cookie_fails_browser_mismatch() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;

    let page = get_with_cookie(&at.callback, None).await;

    assert_failure_page(&page, ReasonCode::BrowserMismatch);
    assert_rejected(&system, &at.approval_id, ReasonCode::BrowserMismatch).await;

    // The browser that started the challenge sees the same outcome, not a success.
    let mut browser = at.browser;
    let page = browser.get(at.callback.as_str()).await?;
    assert_failure_page(&page, ReasonCode::BrowserMismatch);
    assert_not_completed(&system, &at.approval_id).await;

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_with_other_binding_cookie_fails_browser_mismatch() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;

    let forged = "stepup_binding=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_ne!(at.cookie(), forged);
    let page = get_with_cookie(&at.callback, Some(forged)).await;

    assert_failure_page(&page, ReasonCode::BrowserMismatch);
    assert_rejected(&system, &at.approval_id, ReasonCode::BrowserMismatch).await;

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_iss_fails_issuer_mismatch() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;
    let issuer = system.idp.issuer().to_owned();
    assert_eq!(
        at.callback
            .query_pairs()
            .find(|(name, _)| name == "iss")
            .map(|(_, value)| value.into_owned()),
        Some(issuer.clone()),
        "the development IdP sends iss"
    );

    let url = at.callback_with(|pairs| {
        for (name, value) in pairs.iter_mut() {
            if name == "iss" {
                *value = format!("{issuer}/other-tenant");
            }
        }
    });
    let page = get_with_cookie(&url, Some(&at.cookie())).await;

    assert_failure_page(&page, ReasonCode::IssuerMismatch);
    assert_rejected(&system, &at.approval_id, ReasonCode::IssuerMismatch).await;

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_iss_fails_when_provider_promises_it() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;

    let url = at.callback_with(|pairs| pairs.retain(|(name, _)| name != "iss"));
    let page = get_with_cookie(&url, Some(&at.cookie())).await;

    assert_failure_page(&page, ReasonCode::IssuerMismatch);
    assert_rejected(&system, &at.approval_id, ReasonCode::IssuerMismatch).await;

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopened_callback_shows_first_outcome() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;
    let mut browser = at.browser;

    let first = browser.get(at.callback.as_str()).await?;
    let second = browser.get(at.callback.as_str()).await?;

    for page in [&first, &second] {
        assert_eq!(page.status, reqwest::StatusCode::OK);
        assert!(page.body.contains("Approval complete"), "{}", page.body);
    }
    system
        .wait_for(subject::APPROVAL_COMPLETED, &at.approval_id)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        system.count(subject::AUTH_CODE_RECEIVED, &at.approval_id),
        1
    );
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &at.approval_id),
        1
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callbacks_redeem_code_once() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &alice(), NO_WAIT).await;
    let cookie = at.cookie();

    let (first, second) = tokio::join!(
        get_with_cookie(&at.callback, Some(&cookie)),
        get_with_cookie(&at.callback, Some(&cookie)),
    );

    for page in [&first, &second] {
        assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Approval complete"), "{}", page.body);
    }
    system
        .wait_for(subject::APPROVAL_COMPLETED, &at.approval_id)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        system.count(subject::AUTH_CODE_RECEIVED, &at.approval_id),
        1
    );
    assert_eq!(system.count(subject::AUTH_VERIFIED, &at.approval_id), 1);
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &at.approval_id),
        1
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenge_expired_at_idp_is_rejected_before_redemption() -> TestResult {
    let ttl = 2;
    let system = System::start_with(Options {
        challenge_ttl_secs: Some(ttl),
        ..Options::default()
    })
    .await?;
    let approval = approval(STEP_UP_STEP);

    // The approver lingers at the IdP's login form past the challenge's lifetime.
    let linger = Duration::from_secs(ttl) + Duration::from_millis(1_500);
    let at = sign_in_until_callback(&system, &approval, &alice(), linger).await;
    let mut browser = at.browser;
    let page = browser.get(at.callback.as_str()).await?;

    assert_failure_page(&page, ReasonCode::Expired);
    system
        .wait_for(subject::CHALLENGE_EXPIRED, &at.approval_id)
        .await;
    let audited = system.audit_types(&at.approval_id, 4).await;
    assert!(
        audited.contains(&subject::CHALLENGE_EXPIRED.to_owned()),
        "{audited:?}"
    );
    assert!(
        !audited.contains(&subject::AUTH_CODE_RECEIVED.to_owned()),
        "the code of an expired challenge reached the verifier: {audited:?}"
    );
    assert_not_completed(&system, &at.approval_id).await;

    system.stop().await;
    Ok(())
}
