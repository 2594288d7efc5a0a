//! The admin API's one error-to-response path: a JSON body with a machine code, a sentence
//! that names the field and the fix, and every problem found.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stepup_oidc::provider::FieldProblem;
use stepup_registry::RegistryError;

/// A failed admin request.
#[derive(Debug)]
pub enum ApiError {
    /// The request is not authorized; `reason` says why, without echoing the token.
    Unauthorized {
        code: &'static str,
        message: String,
    },
    /// The admin API is off because no token is configured.
    Disabled,
    /// The body is not valid JSON or has fields of the wrong type.
    InvalidJson(String),
    /// The input is invalid; every problem is listed.
    Invalid(Vec<FieldProblem>),
    NotFound(String),
    Conflict {
        code: &'static str,
        message: String,
    },
    /// An internal fault, logged once here and answered with a generic message.
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldProblem]>::is_empty")]
    problems: &'a [FieldProblem],
}

impl ApiError {
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldProblem::new(field, code, message)])
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound { what } => {
                Self::NotFound(format!("{what}: check the name, or list what exists"))
            }
            RegistryError::Exists { what } => Self::Conflict {
                code: "already_exists",
                message: format!("{what}: choose another name, or update it with PUT"),
            },
            RegistryError::Contended { what } => Self::Conflict {
                code: "concurrent_change",
                message: format!("{what} changed while it was saved: send the request again"),
            },
            RegistryError::Crypto(stepup_registry::CryptoError::NoKey) => Self::invalid(
                "client_secret",
                "encryption_key_missing",
                stepup_registry::CryptoError::NoKey.to_string(),
            ),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, problems) = match &self {
            Self::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, *code, message.clone(), &[][..]),
            Self::Disabled => (
                StatusCode::SERVICE_UNAVAILABLE,
                "admin_api_disabled",
                "the admin API is off: set challenge.admin_token (a value, env:NAME or file:/path) and restart the challenge service".to_owned(),
                &[][..],
            ),
            Self::InvalidJson(detail) => (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not valid: {detail}; see services/challenge/openapi.yaml for the fields"),
                &[][..],
            ),
            Self::Invalid(problems) => {
                let first = problems.first();
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                let code = first.map_or("invalid_request", |problem| problem.code);
                let message = first.map_or_else(|| "the request is invalid".to_owned(), |problem| problem.message.clone());
                (status, code, message, problems.as_slice())
            }
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message.clone(), &[][..]),
            Self::Conflict { code, message } => (StatusCode::CONFLICT, *code, message.clone(), &[][..]),
            Self::Internal(error) => {
                tracing::error!(%error, "admin request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the challenge service failed; try again, and check its log if it persists".to_owned(),
                    &[][..],
                )
            }
        };
        let field = match &self {
            Self::Invalid(problems) => problems.first().map(|problem| problem.field.as_str()),
            _ => None,
        };
        let body = ErrorBody {
            code,
            message: &message,
            field,
            problems,
        };
        (status, Json(body)).into_response()
    }
}
