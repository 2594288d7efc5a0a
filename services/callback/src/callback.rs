//! `GET /auth/callback`: the IdP sent the approver's browser back with an authorization
//! response.
//!
//! The handler passes the response to the challenge service, which checks `state`, `iss`
//! and the browser binding. When the challenge service accepts the code, this handler
//! announces it to the verifier and waits, for a bounded time, for the challenge's outcome.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use stepup_bus::rpc::RequestError;
use stepup_events::data::{AuthCodeReceived, Resource};
use stepup_events::rpc::{
    CallbackReply, CallbackRequest, ChallengeOutcome, ChallengeStatus, fault,
};
use stepup_telemetry::metrics::WaitOutcome;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::cookie;
use crate::error::PageError;
use crate::pages::{self, IdpError};
use crate::routes::AppState;
use crate::start::final_outcome;

/// The longest IdP error text shown on a page; longer text is cut.
const MAX_IDP_TEXT_CHARS: usize = 300;

/// The authorization response parameters this service reads (RFC 6749 section 4.1.2 and
/// RFC 9207). Holds the code and state, so it has no `Debug`.
#[derive(Default)]
struct AuthorizationResponse {
    state: Option<String>,
    code: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[tracing::instrument(skip_all, fields(challenge.id = Empty, approval.id = Empty, provider = Empty))]
pub(crate) async fn callback(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = match parse_query(query.as_deref()) {
        Ok(response) => handle(&state, response, &headers).await,
        Err(error) => Err(error),
    };
    result.unwrap_or_else(|error| {
        error.log();
        error.into_response()
    })
}

async fn handle(
    state: &AppState,
    response: AuthorizationResponse,
    headers: &HeaderMap,
) -> Result<Response, PageError> {
    // 1. Without `state` nothing links the response to a challenge.
    let idp = IdpError {
        error: response.error.as_deref().map(shorten),
        error_description: response.error_description.as_deref().map(shorten),
    };
    let Some(oauth_state) = response.state else {
        return Err(PageError::MissingState { idp });
    };
    if response.code.is_none() && response.error.is_none() {
        return Err(PageError::IncompleteResponse);
    }

    // 2. The challenge service checks state, iss and the browser binding, and decides.
    let request = CallbackRequest {
        state: oauth_state,
        code: response.code,
        error: response.error,
        error_description: response.error_description,
        iss: response.iss,
        browser_binding_sha256: cookie::from_headers(headers).map(cookie::hash),
    };
    let reply = state
        .backend
        .callback(request)
        .await
        .map_err(|error| match &error {
            RequestError::Fault(fault) if fault.code == fault::NOT_FOUND => {
                PageError::UnknownState { idp: idp.clone() }
            }
            RequestError::Fault(fault) if fault.code == fault::INVALID_REQUEST => {
                PageError::IncompleteResponse
            }
            RequestError::Fault(fault) if fault.code == fault::IDP_UNAVAILABLE => {
                PageError::IdpUnavailable
            }
            _ => PageError::ChallengeService(error),
        })?;
    let span = tracing::Span::current();
    span.record("challenge.id", reply.challenge_id.as_str());
    span.record("approval.id", reply.approval_id.as_str());
    span.record("provider", reply.provider.as_str());
    // The browser's request is its own trace; the link leads to the approval's.
    stepup_telemetry::link_to_traceparent(&span, reply.traceparent.as_deref());

    // 3. Show the result now, or wait for it.
    let outcome = match (reply.status.is_final(), reply.accepted, reply.status) {
        (true, _, status) => Some(final_outcome(status, reply.outcome.as_ref())),
        (false, true, _) => wait_after_announcing(state, &reply).await?,
        (false, false, ChallengeStatus::Verifying) => {
            // Another request handed the code over already (a reload); wait for the same
            // outcome.
            let waiter = state.waiters.register(&reply.challenge_id);
            waiter.wait(state.settings.outcome_wait).await
        }
        (false, false, _) => Some(reply.outcome.clone().ok_or(PageError::UnexpectedReply(
            "callback reply is neither accepted nor final",
        ))?),
    };

    Ok(render(state, &reply, &idp, outcome))
}

/// Registers a waiter, announces the code to the verifier, and waits for the outcome.
async fn wait_after_announcing(
    state: &AppState,
    reply: &CallbackReply,
) -> Result<Option<ChallengeOutcome>, PageError> {
    // The waiter must exist before the event: the verifier may finish very quickly.
    let waiter = state.waiters.register(&reply.challenge_id);

    let event = AuthCodeReceived {
        approval_id: reply.approval_id.clone(),
        challenge_id: reply.challenge_id.clone(),
        provider: reply.provider.clone(),
        received_at: Utc::now(),
    };
    // NOTE: when both publish attempts fail, the challenge stays `verifying` until it
    // expires, because nothing else announces the code to the verifier.
    // The browser's request carries no trace; the event joins the approval's trace instead.
    let span = tracing::info_span!("code_received", challenge.id = %reply.challenge_id);
    stepup_telemetry::set_parent_from_traceparent(&span, reply.traceparent.as_deref());
    let waiting_since = std::time::Instant::now();
    state
        .backend
        .publish_code_received(event)
        .instrument(span)
        .await
        .map_err(PageError::Publish)?;
    tracing::info!("authorization code accepted, waiting for verification");

    let outcome = waiter.wait(state.settings.outcome_wait).await;
    let waited = match &outcome {
        None => WaitOutcome::TimedOut,
        Some(outcome) if outcome.reason_code.is_none() => WaitOutcome::Satisfied,
        Some(_) => WaitOutcome::Failed,
    };
    stepup_telemetry::metrics::record_callback_wait(waiting_since.elapsed(), waited);
    Ok(outcome)
}

fn render(
    state: &AppState,
    reply: &CallbackReply,
    idp: &IdpError,
    outcome: Option<ChallengeOutcome>,
) -> Response {
    let Some(outcome) = outcome else {
        tracing::info!("outcome not known yet, showing the pending page");
        return pages::pending();
    };

    let decision = if outcome.reason_code.is_none() {
        "satisfied"
    } else {
        "failed"
    };
    let reason = outcome.reason_code.map(|code| code.as_str());
    tracing::info!(decision, reason, "showing the challenge outcome");

    let resource = reply.resource.as_ref().map(describe_resource);
    let return_url = state.allowed_return_url(reply.return_url.as_deref());
    if reply.return_url.is_some() && return_url.is_none() {
        tracing::info!("return_url is not on an allowed origin, so the page shows no link");
    }
    pages::outcome(&outcome, idp, resource.as_deref(), return_url.as_deref())
}

fn describe_resource(resource: &Resource) -> String {
    match &resource.display_name {
        Some(name) => name.clone(),
        None => format!("{} {}", resource.kind, resource.id),
    }
}

/// Reads the authorization response from the query string. RFC 6749 section 3.1 forbids
/// repeating a parameter, and a repeated `state` or `code` would be ambiguous, so it is
/// rejected. Empty values count as absent; unknown parameters (such as `session_state`)
/// are ignored.
fn parse_query(query: Option<&str>) -> Result<AuthorizationResponse, PageError> {
    let mut response = AuthorizationResponse::default();
    let Some(query) = query else {
        return Ok(response);
    };

    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "state" => &mut response.state,
            "code" => &mut response.code,
            "iss" => &mut response.iss,
            "error" => &mut response.error,
            "error_description" => &mut response.error_description,
            _ => continue,
        };
        if slot.is_some() {
            return Err(PageError::RepeatedParameter {
                name: name.into_owned(),
            });
        }
        *slot = Some(value.into_owned());
    }

    for slot in [
        &mut response.state,
        &mut response.code,
        &mut response.iss,
        &mut response.error,
        &mut response.error_description,
    ] {
        if slot.as_deref() == Some("") {
            *slot = None;
        }
    }
    Ok(response)
}

/// Cuts IdP text to [`MAX_IDP_TEXT_CHARS`] characters for display.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_IDP_TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_reads_known_parameters() {
        let response = parse_query(Some(
            "code=c%2B1&state=s&iss=https%3A%2F%2Fidp&session_state=x",
        ));
        let response = response.ok();
        assert_eq!(
            response.as_ref().and_then(|r| r.code.as_deref()),
            Some("c+1")
        );
        assert_eq!(
            response.as_ref().and_then(|r| r.state.as_deref()),
            Some("s")
        );
        assert_eq!(
            response.as_ref().and_then(|r| r.iss.as_deref()),
            Some("https://idp")
        );
    }

    #[test]
    fn query_rejects_repeated_state() {
        let result = parse_query(Some("state=a&state=b"));
        assert!(matches!(result, Err(PageError::RepeatedParameter { name }) if name == "state"));
    }

    #[test]
    fn query_treats_empty_state_as_missing() {
        let response = parse_query(Some("state=&code=c")).ok();
        assert!(response.is_some_and(|r| r.state.is_none()));
    }

    #[test]
    fn shorten_cuts_long_text() {
        let text = "x".repeat(MAX_IDP_TEXT_CHARS + 10);
        assert_eq!(shorten(&text).chars().count(), MAX_IDP_TEXT_CHARS + 1);
        assert_eq!(shorten("short"), "short");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any query string, also invalid UTF-8 after percent-decoding, is read or
            /// rejected without a panic, and no read value is empty.
            #[test]
            fn any_query_parses_without_panic(query in ".{0,400}") {
                if let Ok(response) = parse_query(Some(&query)) {
                    for value in [
                        &response.state,
                        &response.code,
                        &response.iss,
                        &response.error,
                        &response.error_description,
                    ] {
                        prop_assert!(value.as_deref() != Some(""));
                    }
                }
            }

            /// Raw bytes with `%`, `&`, `=` and `+` in any order parse without a panic.
            #[test]
            fn percent_soup_parses_without_panic(
                query in proptest::collection::vec(
                    prop_oneof![Just('%'), Just('&'), Just('='), Just('+'), any::<char>()],
                    0..200,
                )
            ) {
                let query: String = query.into_iter().collect();
                let _ = parse_query(Some(&query));
            }

            /// Values encoded as a browser would encode them come back unchanged.
            #[test]
            fn encoded_values_round_trip(
                state in ".{1,80}",
                code in ".{1,80}",
                iss in ".{1,80}",
            ) {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", &state)
                    .append_pair("code", &code)
                    .append_pair("iss", &iss)
                    .finish();
                let response = parse_query(Some(&query));
                let response = response.ok();
                prop_assert_eq!(response.as_ref().and_then(|r| r.state.as_deref()), Some(state.as_str()));
                prop_assert_eq!(response.as_ref().and_then(|r| r.code.as_deref()), Some(code.as_str()));
                prop_assert_eq!(response.as_ref().and_then(|r| r.iss.as_deref()), Some(iss.as_str()));
            }

            /// Any text is cut at a character boundary to at most the display limit.
            #[test]
            fn shorten_never_panics(text in ".{0,600}") {
                let short = shorten(&text);
                prop_assert!(short.chars().count() <= MAX_IDP_TEXT_CHARS + 1);
            }
        }
    }
}
