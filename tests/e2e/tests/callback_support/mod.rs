//! Helpers of the callback tests: sign in at the development IdP and stop right before the
//! browser follows the redirect to `/auth/callback`, so a test can change or repeat that
//! request, then check what was published and audited.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use stepup_e2e::browser::{Browser, Page};
use stepup_e2e::idp::IdpUser;
use stepup_events::data::{ApprovalRequested, ChallengeFailed};
use stepup_events::{ReasonCode, subject};
use url::Url;

use crate::support::{System, step_up_url};

/// A sign-in that reached the IdP's redirect back to the callback, not yet followed.
pub struct AtCallback {
    pub browser: Browser,
    /// The callback URL with `code`, `state` and `iss`, as the IdP sent it.
    pub callback: Url,
    pub approval_id: String,
}

impl AtCallback {
    /// The `Cookie` header the browser sends to the callback (the binding cookie).
    pub fn cookie(&self) -> String {
        self.browser
            .cookie_header(&self.callback)
            .expect("the step-up link set the binding cookie")
    }

    /// The callback URL with its query rebuilt by `edit`, which gets the IdP's parameters.
    pub fn callback_with(&self, edit: impl FnOnce(&mut Vec<(String, String)>)) -> Url {
        let mut pairs: Vec<(String, String)> = self
            .callback
            .query_pairs()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        edit(&mut pairs);
        let mut url = self.callback.clone();
        url.query_pairs_mut().clear().extend_pairs(&pairs);
        url
    }
}

/// Publishes `approval`, opens its step-up link and signs in as `user` with the one-time
/// code, stopping before the redirect to the callback. `before_sign_in` runs while the
/// browser shows the IdP's login form.
pub async fn sign_in_until_callback(
    system: &System,
    approval: &ApprovalRequested,
    user: &IdpUser,
    before_sign_in: Duration,
) -> AtCallback {
    system.request(approval).await.unwrap();
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;

    let mut browser = Browser::new().unwrap();
    let login_page = browser.get(step_up_url(&required)).await.unwrap();
    assert!(
        login_page.body.contains("id=\"login\""),
        "expected the IdP's login form, got {}",
        login_page.status
    );
    tokio::time::sleep(before_sign_in).await;

    browser.stop_before(Some(&format!("{}/auth/callback", system.callback_url)));
    let otp = user.otp.clone().unwrap_or_default();
    let redirect = browser
        .submit_form(
            &login_page,
            "login",
            &[
                ("login", &user.login),
                ("password", &user.password),
                ("otp", &otp),
            ],
        )
        .await
        .unwrap();
    let callback = redirect
        .location()
        .expect("the IdP redirected to the callback");
    browser.stop_before(None);

    AtCallback {
        browser,
        callback,
        approval_id: approval.approval_id.clone(),
    }
}

/// Requests `url` with exactly the `Cookie` header given (or none), as another browser.
pub async fn get_with_cookie(url: &Url, cookie: Option<&str>) -> Page {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let mut request = client.get(url.clone());
    if let Some(cookie) = cookie {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    Page {
        status,
        url: url.clone(),
        headers,
        body,
        redirects: vec![url.clone()],
    }
}

/// Asserts that the challenge failed with `reason`, that the rejection is in the audit log,
/// and that the approval was not completed and the code never went to the verifier.
pub async fn assert_rejected(system: &System, approval_id: &str, reason: ReasonCode) {
    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, approval_id)
        .await;
    let data: ChallengeFailed = failed.envelope.data().unwrap();
    assert_eq!(data.reason_code, reason);

    let audited = system.audit_types(approval_id, 4).await;
    assert!(
        audited.contains(&subject::CHALLENGE_FAILED.to_owned()),
        "the audit log lacks the rejection: {audited:?}"
    );
    assert_not_completed(system, approval_id).await;
    assert!(
        !audited.contains(&subject::AUTH_CODE_RECEIVED.to_owned()),
        "the code reached the verifier: {audited:?}"
    );
}

/// Asserts, after the flow had time to settle, that no completion was published.
pub async fn assert_not_completed(system: &System, approval_id: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(system.count(subject::APPROVAL_COMPLETED, approval_id), 0);
}

/// Asserts that `page` is the failure page of `reason`.
pub fn assert_failure_page(page: &Page, reason: ReasonCode) {
    assert!(
        page.body
            .contains(&format!("Reason code: {}", reason.as_str())),
        "expected the {} page, got {}: {}",
        reason.as_str(),
        page.status,
        page.body
    );
    assert!(!page.body.contains("Approval complete"), "{}", page.body);
}
