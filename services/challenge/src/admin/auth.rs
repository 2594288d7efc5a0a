//! The admin API's bearer token check.
//!
//! Both tokens are hashed with SHA-256 before the constant-time comparison, so neither the
//! content nor the length of the configured token shows in the time a check takes.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::AdminState;
use super::error::ApiError;

/// Rejects requests without the configured bearer token.
pub async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.token_sha256 else {
        return Err(ApiError::Disabled);
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let Some(presented) = presented else {
        tracing::info!(path = %request.uri().path(), decision = "rejected", reason = "missing_token", "admin request without bearer token");
        return Err(ApiError::Unauthorized {
            code: "missing_token",
            message:
                "the request has no admin token: send Authorization: Bearer <challenge.admin_token>"
                    .into(),
        });
    };
    if !token_matches(presented, expected) {
        tracing::info!(path = %request.uri().path(), decision = "rejected", reason = "invalid_token", "admin request with wrong bearer token");
        return Err(ApiError::Unauthorized {
            code: "invalid_token",
            message: "the admin token is wrong: send the value configured as challenge.admin_token"
                .into(),
        });
    }
    Ok(next.run(request).await)
}

/// Returns the token of an `Authorization: Bearer <token>` header value (RFC 6750 section 2.1,
/// where the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Returns the SHA-256 of a token, the form it is kept and compared in.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn token_matches(presented: &str, expected: &[u8; 32]) -> bool {
    token_digest(presented).ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn only_the_configured_token_matches() {
        let expected = token_digest("right-token");
        assert!(token_matches("right-token", &expected));
        assert!(!token_matches("wrong-token", &expected));
        assert!(!token_matches("right-token ", &expected));
        assert!(!token_matches("", &expected));
    }
}
