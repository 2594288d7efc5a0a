//! `GET /stepup/{challenge_id}`: the approver opened the step-up link.
//!
//! The handler binds the challenge to this browser with a random cookie, requests the
//! authorization request parameters from the challenge service, and redirects the browser
//! to the IdP.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use stepup_bus::rpc::RequestError;
use stepup_events::ReasonCode;
use stepup_events::data::ChallengeStarted;
use stepup_events::rpc::{ChallengeOutcome, ChallengeStatus, StartReply, StartRequest, fault};
use stepup_oidc::authorize::authorization_url;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::cookie;
use crate::error::PageError;
use crate::outcomes;
use crate::pages::{self, IdpError};
use crate::routes::AppState;

/// The maximum length of a challenge id. Ids are UUIDs or similar tokens, far shorter.
const MAX_CHALLENGE_ID_LEN: usize = 64;

#[tracing::instrument(skip_all, fields(challenge.id = Empty, approval.id = Empty, provider = Empty))]
pub(crate) async fn start(
    State(state): State<AppState>,
    challenge_id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = match challenge_id {
        Ok(Path(challenge_id)) => start_challenge(&state, &challenge_id).await,
        Err(_) => Err(PageError::ChallengeNotFound),
    };
    result.unwrap_or_else(|error| {
        error.log();
        error.into_response()
    })
}

async fn start_challenge(state: &AppState, challenge_id: &str) -> Result<Response, PageError> {
    // 1. Anything that cannot be a challenge id ends here, before it reaches a log or NATS.
    if !is_valid_challenge_id(challenge_id) {
        return Err(PageError::ChallengeNotFound);
    }
    let span = tracing::Span::current();
    span.record("challenge.id", challenge_id);

    // 2. A fresh binding value for this browser. The challenge service gets only its hash.
    let binding = cookie::new_value();
    let request = StartRequest {
        challenge_id: challenge_id.to_owned(),
        browser_binding_sha256: cookie::hash(&binding),
    };
    let reply = state
        .backend
        .start(request)
        .await
        .map_err(|error| match &error {
            RequestError::Fault(fault) if fault.code == fault::NOT_FOUND => {
                PageError::ChallengeNotFound
            }
            _ => PageError::ChallengeService(error),
        })?;
    span.record("approval.id", reply.approval_id.as_str());
    span.record("provider", reply.provider.as_str());
    stepup_telemetry::link_to_traceparent(&span, reply.traceparent.as_deref());

    // 3. A finished challenge shows its outcome; one being verified shows the wait page.
    if reply.status.is_final() {
        tracing::info!(status = reply.status.as_str(), "challenge already finished");
        let outcome = final_outcome(reply.status, reply.outcome.as_ref());
        return Ok(pages::outcome(&outcome, &IdpError::default(), None, None));
    }
    if reply.status == ChallengeStatus::Verifying {
        return Ok(pages::pending());
    }

    // 4. Build the authorization request and send the browser on its way.
    let location = authorization_location(state, &reply).await?;
    publish_started(state, &reply).await;
    tracing::info!("challenge started, redirecting to the identity provider");

    let max_age = (reply.expires_at - Utc::now()).to_std().unwrap_or_default();
    let set_cookie = cookie::set_cookie(&binding, max_age, state.settings.secure_cookies);
    Ok(redirect(&location, &set_cookie))
}

/// Checks whether `id` looks like a challenge id: 1 to 64 ASCII letters, digits, `-` or `_`. This
/// also makes it a valid NATS subject token.
pub(crate) fn is_valid_challenge_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CHALLENGE_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Returns the outcome to show for a final `status`, preferring the one the challenge service sent.
pub(crate) fn final_outcome(
    status: ChallengeStatus,
    outcome: Option<&ChallengeOutcome>,
) -> ChallengeOutcome {
    match (outcome, status) {
        (Some(outcome), _) => outcome.clone(),
        (None, ChallengeStatus::Satisfied) => outcomes::satisfied(),
        (None, ChallengeStatus::Expired) => outcomes::failed(ReasonCode::Expired),
        (None, _) => outcomes::failed(ReasonCode::AlreadyUsed),
    }
}

async fn authorization_location(state: &AppState, reply: &StartReply) -> Result<String, PageError> {
    let params = reply
        .authorization
        .as_ref()
        .ok_or(PageError::UnexpectedReply(
            "start reply has no authorization parameters",
        ))?;
    let endpoint = state
        .endpoints
        .authorization_endpoint(&params.issuer)
        .await
        .map_err(PageError::Discovery)?;
    Ok(authorization_url(&endpoint, params).into())
}

async fn publish_started(state: &AppState, reply: &StartReply) {
    let event = ChallengeStarted {
        approval_id: reply.approval_id.clone(),
        challenge_id: reply.challenge_id.clone(),
        provider: reply.provider.clone(),
        started_at: Utc::now(),
    };
    // The event is for the audit trail; the approver is not held up when it fails.
    let span = tracing::info_span!("challenge_started", challenge.id = %reply.challenge_id);
    stepup_telemetry::set_parent_from_traceparent(&span, reply.traceparent.as_deref());
    let published = state.backend.publish_started(event).instrument(span).await;
    if let Err(error) = published {
        tracing::warn!(%error, "publishing stepup.challenge.started failed");
    }
}

fn redirect(location: &str, set_cookie: &str) -> Response {
    let headers = (
        HeaderValue::from_str(location),
        HeaderValue::from_str(set_cookie),
    );
    match headers {
        (Ok(location), Ok(set_cookie)) => (
            StatusCode::FOUND,
            [(LOCATION, location), (SET_COOKIE, set_cookie)],
        )
            .into_response(),
        // `Url` serializes to ASCII and the cookie is base64url, so this is not reached.
        _ => PageError::UnexpectedReply("redirect headers are not valid header values")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_id_accepts_uuid_and_tokens() {
        for good in ["0190f6d2-6b7e-7c4a-9d1e-3f2a1b0c9d8e", "ch_1", "A"] {
            assert!(is_valid_challenge_id(good), "{good} was rejected");
        }
    }

    #[test]
    fn challenge_id_rejects_odd_values() {
        let long = "a".repeat(65);
        for bad in [
            "",
            "a.b",
            "a*",
            "a>",
            "a b",
            "<script>",
            "a/b",
            "é",
            long.as_str(),
        ] {
            assert!(!is_valid_challenge_id(bad), "{bad:?} was accepted");
        }
    }
}
