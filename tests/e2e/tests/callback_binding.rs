//! Approver binding and the approver-facing surface, end to end: the wrong user, the
//! requester approving their own request, an unverified email, and the headers, cookie,
//! return link and rate limit that a real browser sees.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod callback_support;
mod support;

use std::time::Duration;

use callback_support::{assert_failure_page, sign_in_until_callback};
use stepup_e2e::browser::Browser;
use stepup_events::data::{ApprovalRejected, Approver, Requester};
use stepup_events::{ReasonCode, subject};
use support::{STEP_UP_STEP, System, TestResult, approval, bob, carol, step_up_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_user_fails_subject_mismatch_and_is_audited() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &approval, &bob(), Duration::ZERO).await;
    let mut browser = at.browser;

    let page = browser.get(at.callback.as_str()).await?;

    assert_failure_page(&page, ReasonCode::SubjectMismatch);
    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, &at.approval_id)
        .await;
    let data: stepup_events::data::ChallengeFailed = failed.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::SubjectMismatch);
    let audited = system.audit_types(&at.approval_id, 6).await;
    assert!(audited.contains(&subject::CHALLENGE_FAILED.to_owned()));
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &at.approval_id),
        0
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requester_approving_own_request_is_rejected() -> TestResult {
    let system = System::start().await?;
    let mut approval = approval(STEP_UP_STEP);
    approval.requester = Some(Requester {
        id: approval.approver.id.clone(),
        email: None,
        display_name: Some("Alice".into()),
    });
    system.request(&approval).await?;

    let rejected = system
        .wait_for(subject::APPROVAL_REJECTED, &approval.approval_id)
        .await;
    let data: ApprovalRejected = rejected.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::SelfApproval);
    assert_eq!(data.message, ReasonCode::SelfApproval.message());

    let audited = system.audit_types(&approval.approval_id, 2).await;
    assert!(
        audited.contains(&subject::APPROVAL_REJECTED.to_owned()),
        "{audited:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        system.count(subject::STEPUP_REQUIRED, &approval.approval_id),
        0
    );
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &approval.approval_id),
        0
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unverified_email_fails_email_not_verified() -> TestResult {
    let system = System::start().await?;
    let mut approval = approval(STEP_UP_STEP);
    approval.approver = Approver {
        id: "carol".into(),
        email: "carol@example.com".into(),
        idp_subject: None,
    };
    let at = sign_in_until_callback(&system, &approval, &carol(), Duration::ZERO).await;
    let mut browser = at.browser;

    let page = browser.get(at.callback.as_str()).await?;

    assert_failure_page(&page, ReasonCode::EmailNotVerified);
    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, &at.approval_id)
        .await;
    let data: stepup_events::data::ChallengeFailed = failed.envelope.data()?;
    assert_eq!(data.reason_code, ReasonCode::EmailNotVerified);
    let audited = system.audit_types(&at.approval_id, 6).await;
    assert!(audited.contains(&subject::CHALLENGE_FAILED.to_owned()));
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, &at.approval_id),
        0
    );

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approver_pages_send_security_headers_and_narrow_cookie() -> TestResult {
    let system = System::start().await?;
    let approval = approval(STEP_UP_STEP);
    system.request(&approval).await?;
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;

    // The step-up link sets the binding cookie and redirects to the IdP.
    let mut browser = Browser::new()?;
    let start = browser
        .get_without_redirects(step_up_url(&required))
        .await?;
    assert_eq!(start.status, reqwest::StatusCode::FOUND);
    let cookie = start.header("set-cookie").unwrap_or_default().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/auth/callback"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "http public URL: {cookie}");
    let max_age: u64 = cookie
        .split("; ")
        .find_map(|part| part.strip_prefix("Max-Age="))
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!((1..=900).contains(&max_age), "{cookie}");

    // The callback page: security headers, and no link to an origin that only looks allowed.
    let other = support::approval(STEP_UP_STEP);
    let at = sign_in_until_callback(&system, &other, &bob(), Duration::ZERO).await;
    let mut browser = at.browser;
    let page = browser.get(at.callback.as_str()).await?;
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookalike_return_url_gets_no_link() -> TestResult {
    let system = System::start().await?;
    let mut approval = approval(STEP_UP_STEP);
    approval.return_url = Some("https://access.example.com.evil.test/requests/42".into());
    let at = sign_in_until_callback(&system, &approval, &bob(), Duration::ZERO).await;
    let mut browser = at.browser;

    let page = browser.get(at.callback.as_str()).await?;

    assert_failure_page(&page, ReasonCode::SubjectMismatch);
    assert!(!page.body.contains("evil.test"), "{}", page.body);
    assert!(
        !page.body.contains("Return to the request"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("href="), "{}", page.body);

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flooding_client_gets_429_with_retry_after() -> TestResult {
    let system = System::start().await?;
    let mut browser = Browser::new()?;

    // The default budget is 60 requests a minute per client address; the loop is bounded.
    // Each request names another challenge, so the per-challenge budget is not what ends it.
    let mut limited = None;
    for attempt in 0..80 {
        let url = format!("{}/stepup/no-such-challenge-{attempt}", system.callback_url);
        let page = browser.get_without_redirects(&url).await?;
        if page.status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            limited = Some((attempt, page));
            break;
        }
        assert_eq!(page.status, reqwest::StatusCode::NOT_FOUND);
    }

    let (attempt, page) = limited.expect("no 429 within 80 requests");
    assert!(attempt >= 50, "limited after only {attempt} requests");
    let retry_after: u64 = page.header("retry-after").unwrap_or_default().parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let health = reqwest::get(format!("{}/healthz", system.callback_url)).await?;
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    system.stop().await;
    Ok(())
}
