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
    #[error("authorization response state matches no open challenge")]
    UnknownState { idp: IdpError },
    #[error("challenge service request failed: {0}")]
    ChallengeService(#[source] RequestError),
    #[error("authorization endpoint discovery failed: {0}")]
    Discovery(#[source] DiscoveryError),
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
            | Self::UnknownState { .. } => {
                tracing::info!(error = %self, "request rejected");
            }
            Self::Discovery(_) => tracing::warn!(error = %self, "identity provider unavailable"),
            Self::ChallengeService(_) | Self::Publish(_) | Self::UnexpectedReply(_) => {
                tracing::error!(error = %self, "request failed");
            }
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
            Self::MissingState { idp } => pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in response incomplete",
                "This page was opened without the data that links it to an approval. Start again from the approval link.",
                Some(&idp),
            ),
            Self::RepeatedParameter { .. } => pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in response not valid",
                START_AGAIN,
                None,
            ),
            Self::UnknownState { idp } => pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in response not recognized",
                ReasonCode::StateInvalid.message(),
                Some(&idp),
            ),
            Self::Discovery(_) => pages::error(
                StatusCode::BAD_GATEWAY,
                "Identity provider unavailable",
                ReasonCode::IdpUnavailable.message(),
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
