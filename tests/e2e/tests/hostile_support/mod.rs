//! The whole system with the hostile OpenID provider in place of the development IdP, and
//! the assertions every rejection test makes.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use hostile_idp::{HostileIdp, Script};
use stepup_e2e::browser::{Browser, Page};
use stepup_events::data::{ApprovalRequested, ChallengeFailed};
use stepup_events::{ReasonCode, subject};

use crate::support::{Options, STEP_UP_STEP, System, approval, step_up_url};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a browser navigation may take in total, the callback's wait included.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A system whose only provider is a hostile IdP.
pub struct HostileSystem {
    pub system: System,
    pub idp: HostileIdp,
}

/// What a test changes from the defaults of [`HostileSystem::start`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub script: Script,
    /// The verifier's timeout for each request to the IdP.
    pub idp_timeout_ms: u64,
    pub challenge_ttl_secs: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            script: Script::default(),
            idp_timeout_ms: 2_000,
            challenge_ttl_secs: None,
        }
    }
}

impl HostileSystem {
    pub async fn start(settings: Settings) -> Result<Self, BoxError> {
        let idp = HostileIdp::start(settings.script).await?;
        // Other suites add fields to `Options`; their defaults apply here.
        #[allow(clippy::needless_update)]
        let options = Options {
            challenge_ttl_secs: settings.challenge_ttl_secs,
            provider: Some(serde_json::json!({
                "issuer": idp.issuer(),
                "client_id": idp.client_id(),
                "client_secret": idp.client_secret(),
            })),
            // One retry of a transient failure, seconds later rather than after the
            // production backoff. JetStream also uses the first backoff as the ack wait of
            // the first delivery, so it must exceed the longest a verification can take
            // here, or the code would be redelivered while it is still being redeemed.
            verifier: Some(serde_json::json!({
                "idp_timeout_ms": settings.idp_timeout_ms,
                "consumer": {"max_deliver": 2, "backoff_ms": [settings.idp_timeout_ms + 2_000]},
            })),
            ..Options::default()
        };
        let system = System::start_with(options).await?;
        Ok(Self { system, idp })
    }

    /// Publishes a step-up approval for alice and returns it with its step-up link.
    pub async fn request_step_up(&self) -> Result<(ApprovalRequested, String), BoxError> {
        let approval = approval(STEP_UP_STEP);
        self.system.request(&approval).await?;
        let required = self
            .system
            .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
            .await;
        Ok((approval, step_up_url(&required)))
    }

    pub async fn stop(self) {
        self.system.stop().await;
    }
}

/// Opens the step-up link in a new browser. The hostile IdP signs the user in at once, so
/// the navigation ends on the callback's result page.
pub async fn open_link(link: &str) -> Result<Page, BoxError> {
    let mut browser = Browser::new()?;
    let page = tokio::time::timeout(NAVIGATION_TIMEOUT, browser.get(link)).await??;
    Ok(page)
}

/// Asserts that the approval failed with `reason`: the result page names it, the
/// challenge failed with it, nothing completed, and the audit log records the verifier's
/// rejection with it.
pub async fn assert_rejected(
    system: &System,
    approval_id: &str,
    page: &Page,
    reason: ReasonCode,
    case: &str,
) {
    assert!(
        page.body.contains(reason.as_str()),
        "{case}: the result page does not name {reason}: {}",
        page.body
    );

    let failed = system
        .wait_for(subject::CHALLENGE_FAILED, approval_id)
        .await;
    let data: ChallengeFailed = failed.envelope.data().expect("challenge.failed data");
    assert_eq!(data.reason_code, reason, "{case}");
    assert_eq!(data.message, reason.message(), "{case}");
    assert_eq!(
        system.count(subject::APPROVAL_COMPLETED, approval_id),
        0,
        "{case}: an approval completed"
    );

    let records = audit_records(system, approval_id, subject::AUTH_REJECTED).await;
    assert!(
        records
            .iter()
            .any(|record| record["reason_code"] == reason.as_str()),
        "{case}: no audited {} with {reason}: {records:?}",
        subject::AUTH_REJECTED
    );
}

/// Waits until the audit log contains a record of `event_type` for `approval_id`, and returns
/// all such records.
pub async fn audit_records(
    system: &System,
    approval_id: &str,
    event_type: &str,
) -> Vec<serde_json::Value> {
    let url = format!("{}/audit/approvals/{approval_id}", system.audit_url);
    let deadline = tokio::time::Instant::now() + crate::support::EVENT_TIMEOUT;
    loop {
        let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let records: Vec<serde_json::Value> = body["records"]
            .as_array()
            .map(|records| {
                records
                    .iter()
                    .filter(|record| record["event_type"] == event_type)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !records.is_empty() || tokio::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `count` events of `event_type` about `approval_id` were recorded.
pub async fn wait_for_count(system: &System, event_type: &str, approval_id: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + crate::support::EVENT_TIMEOUT;
    while system.count(event_type, approval_id) < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {count} {event_type} for {approval_id} within {:?}",
            crate::support::EVENT_TIMEOUT
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
