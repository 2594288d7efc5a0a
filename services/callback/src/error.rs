//! The one error type of the HTTP handlers and the page each error becomes.
//!
//! Client mistakes get a 4xx page with a fixed text. Internal failures get a generic 5xx
//! page, and the error itself goes only to the log, once, inside the request's span.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stepup_bus::PublishError;
use stepup_bus::rpc::RequestError;
use stepup_events::ReasonCode;
use stepup_oidc::authorize::DiscoveryError;
use thiserror::Error;

use crate::pages::{self, IdpError};

/// A failure of a request to `/stepup/...` or `/auth/callback` that ends without a result
/// page.
#[derive(Debug, Error)]
pub enum PageError {
    #[error("challenge id is malformed or unknown")]
    ChallengeNotFound,
    #[error("authorization response has no state parameter")]
    MissingState { idp: IdpError },
    #[error("authorization response repeats the {name} parameter")]
    RepeatedParameter { name: String },
    #[error("authorization response has neither code nor error")]
    IncompleteResponse,
    #[error("authorization response state matches no open challenge")]
    UnknownState { idp: IdpError },
    #[error("challenge service request failed: {0}")]
    ChallengeService(#[source] RequestError),
    #[error("authorization endpoint discovery failed: {0}")]
    Discovery(#[source] DiscoveryError),
    #[error("the challenge service could not reach the identity provider to check the response")]
    IdpUnavailable,
    #[error("publishing an event failed: {0}")]
    Publish(#[source] PublishError),
    #[error("challenge service reply is unusable: {0}")]
    UnexpectedReply(&'static str),
}

impl PageError {
    /// Logs the error at the level its kind deserves. Call inside the request's span.
    pub fn log(&self) {
        match self {
            Self::ChallengeNotFound
            | Self::MissingState { .. }
            | Self::RepeatedParameter { .. }
            | Self::IncompleteResponse
            | Self::UnknownState { .. } => {
                tracing::info!(error = %self, decision = "rejected", reason = self.reason(), "request rejected");
            }
            Self::Discovery(_) | Self::IdpUnavailable => {
                tracing::warn!(error = %self, "identity provider unavailable");
            }
            Self::ChallengeService(_) | Self::Publish(_) | Self::UnexpectedReply(_) => {
                tracing::error!(error = %self, "request failed");
            }
        }
    }
}

impl PageError {
    /// The reason code of a rejected request, for the decision log.
    fn reason(&self) -> &'static str {
        match self {
            Self::ChallengeNotFound => "challenge_not_found",
            Self::MissingState { .. } | Self::UnknownState { .. } => {
                ReasonCode::StateInvalid.as_str()
            }
            Self::RepeatedParameter { .. } | Self::IncompleteResponse => "invalid_request",
            _ => "internal",
        }
    }
}

const START_AGAIN: &str = "Start again from the approval link.";

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::ChallengeNotFound => pages::error(
                StatusCode::NOT_FOUND,
                "Approval link not found",
                "This approval link is not valid or no longer exists. Open the link in the approval request again, or ask for the approval to be sent again.",
                None,
            ),
            Self::MissingState { idp } => pages::rejected(
                StatusCode::BAD_REQUEST,
                "Sign-in response incomplete",
                ReasonCode::StateInvalid,
                Some(&idp),
            ),
            Self::RepeatedParameter { .. } | Self::IncompleteResponse => pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in response not valid",
                START_AGAIN,
                None,
            ),
            Self::UnknownState { idp } => pages::rejected(
                StatusCode::BAD_REQUEST,
                "Sign-in response not recognized",
                ReasonCode::StateInvalid,
                Some(&idp),
            ),
            Self::Discovery(_) | Self::IdpUnavailable => pages::rejected(
                StatusCode::BAD_GATEWAY,
                "Identity provider unavailable",
                ReasonCode::IdpUnavailable,
                None,
            ),
            Self::ChallengeService(_) | Self::Publish(_) | Self::UnexpectedReply(_) => {
                pages::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Approval service unavailable",
                    "The approval could not be processed right now. Wait a minute, then start again from the approval link.",
                    None,
                )
            }
        }
    }
}
