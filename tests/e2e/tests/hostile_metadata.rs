//! The whole system against a provider whose key set is broken from the start: the
//! verifier reads the JWKS before it spends the code, so the approval fails with the
//! key set's reason and the code is never sent.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod hostile_support;
mod support;

use hostile_idp::{Defect, Script};
use hostile_support::{HostileSystem, Settings, assert_rejected, open_link};
use stepup_events::ReasonCode;
use support::TestResult;

async fn assert_key_set_defect(defect: Defect, reason: ReasonCode) -> TestResult {
    let hostile = HostileSystem::start(Settings {
        script: Script::defect(defect.clone()),
        ..Settings::default()
    })
    .await?;
    let (approval, link) = hostile.request_step_up().await?;
    let page = open_link(&link).await?;
    let case = format!("{defect:?}");
    assert_rejected(&hostile.system, &approval.approval_id, &page, reason, &case).await;
    assert_eq!(hostile.idp.requests().token, 0, "the code was sent");
    hostile.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_jwks_fails_closed() -> TestResult {
    assert_key_set_defect(Defect::JwksGarbage, ReasonCode::ProviderMetadataInvalid).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_jwks_fails_after_retries() -> TestResult {
    assert_key_set_defect(Defect::JwksUnreachable, ReasonCode::IdpUnavailable).await
}
