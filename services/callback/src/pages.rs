//! The HTML pages shown to the approver.
//!
//! Templates live in `templates/` and are compiled in by askama, which HTML-escapes every
//! value because the templates end in `.html`. Values from the IdP or the URL reach a page
//! only through template variables, never as pre-built HTML.

use askama::Template;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use stepup_events::ReasonCode;
use stepup_events::rpc::ChallengeOutcome;

/// The `error` and `error_description` of an authorization error response (RFC 6749,
/// section 4.1.2.1), shown as the IdP sent them.
#[derive(Debug, Clone, Default)]
pub struct IdpError {
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[derive(Template)]
#[template(path = "success.html")]
struct SuccessPage<'a> {
    resource: Option<&'a str>,
    return_url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage<'a> {
    message: &'a str,
    reason_code: Option<&'a str>,
    idp_error: Option<&'a str>,
    idp_error_description: Option<&'a str>,
    return_url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pending.html")]
struct PendingPage;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    reason_code: Option<&'a str>,
    idp_error: Option<&'a str>,
    idp_error_description: Option<&'a str>,
}

/// Renders the page for a finished challenge: success when the outcome has no reason code.
/// `resource` names what was approved; `return_url` must already be checked against the
/// allowed origins.
pub fn outcome(
    outcome: &ChallengeOutcome,
    idp: &IdpError,
    resource: Option<&str>,
    return_url: Option<&str>,
) -> Response {
    match outcome.reason_code {
        None => render(
            StatusCode::OK,
            &SuccessPage {
                resource,
                return_url,
            },
        ),
        Some(reason) => render(
            StatusCode::OK,
            &FailurePage {
                message: reason.message(),
                reason_code: Some(reason.as_str()),
                idp_error: idp.error.as_deref(),
                idp_error_description: idp.error_description.as_deref(),
                return_url,
            },
        ),
    }
}

/// Renders the page shown while the verification has not finished yet.
pub fn pending() -> Response {
    render(StatusCode::ACCEPTED, &PendingPage)
}

/// Renders an error page with a fixed title and message.
pub fn error(status: StatusCode, title: &str, message: &str, idp: Option<&IdpError>) -> Response {
    let page = ErrorPage {
        title,
        message,
        reason_code: None,
        idp_error: idp.and_then(|idp| idp.error.as_deref()),
        idp_error_description: idp.and_then(|idp| idp.error_description.as_deref()),
    };
    render(status, &page)
}

/// Renders an error page for a request rejected with `reason`, which names no challenge:
/// the reason's sentence and its code.
pub fn rejected(
    status: StatusCode,
    title: &str,
    reason: ReasonCode,
    idp: Option<&IdpError>,
) -> Response {
    let page = ErrorPage {
        title,
        message: reason.message(),
        reason_code: Some(reason.as_str()),
        idp_error: idp.and_then(|idp| idp.error.as_deref()),
        idp_error_description: idp.and_then(|idp| idp.error_description.as_deref()),
    };
    render(status, &page)
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Something went wrong on our side. Start again from the approval link.",
            )
                .into_response()
        }
    }
}
