//! The token request (RFC 6749 §4.1.3 with PKCE, RFC 7636 §4.5) and a strict reading of
//! its response.
//!
//! The request is built here rather than by `openidconnect` so that every way the response
//! can be wrong has its own reason: an OAuth error body, a server error, HTML, a body over
//! the size limit, no answer within the timeout, or a response without `id_token` (which
//! `openidconnect` reports as a missing optional field, not as an error).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use stepup_events::ReasonCode;
use url::Url;

use crate::http::{FetchError, quote_untrusted, send_bounded};
use crate::provider::TokenAuthMethod;
use crate::verify::Rejection;

/// Maximum length of an IdP's error text quoted in a rejection detail, in characters.
const MAX_QUOTED: usize = 200;

/// One authorization code to redeem.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    pub endpoint: &'a Url,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub auth_method: TokenAuthMethod,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub pkce_verifier: &'a str,
}

/// Returns the `Authorization` header value for `client_secret_basic`. RFC 6749 §2.3.1:
/// the client id and the secret are each `application/x-www-form-urlencoded` before they
/// are joined with `:` and base64-encoded, so a `:` or `%` in the secret survives.
pub fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// Sends the token request and returns the ID token's compact serialization.
pub async fn request_id_token(
    http: &reqwest::Client,
    request: &TokenRequest<'_>,
    max_bytes: usize,
) -> Result<String, Rejection> {
    // 1. The form with the code, its redirect URI and the PKCE verifier; the client
    //    authenticates as configured.
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", request.code),
        ("redirect_uri", request.redirect_uri),
        ("code_verifier", request.pkce_verifier),
    ];
    let mut builder = http
        .post(request.endpoint.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    match request.auth_method {
        TokenAuthMethod::ClientSecretBasic => {
            builder = builder.header(
                reqwest::header::AUTHORIZATION,
                basic_credentials(request.client_id, request.client_secret),
            );
        }
        TokenAuthMethod::ClientSecretPost => {
            form.push(("client_id", request.client_id));
            form.push(("client_secret", request.client_secret));
        }
    }
    let url = request.endpoint.as_str();
    let reply = send_bounded(builder.form(&form), url, max_bytes)
        .await
        .map_err(|error| match error {
            FetchError::TooLarge { .. } => {
                Rejection::new(ReasonCode::TokenResponseInvalid, error.to_string())
            }
            // A connection that was never made cannot have spent the code, so the same
            // redemption may be tried again; after a timeout the IdP may have used it.
            FetchError::Unreachable { ref source, .. } if source.is_connect() => {
                Rejection::transient(
                    ReasonCode::IdpUnavailable,
                    format!("token endpoint: {error}"),
                )
            }
            FetchError::Timeout { .. } | FetchError::Unreachable { .. } => Rejection::new(
                ReasonCode::IdpUnavailable,
                format!("token endpoint: {error}"),
            ),
        })?;

    // 2. Errors: an OAuth error body (§5.2), a server failure, anything else unexpected.
    //    502, 503 and 504 say the authorization server did not handle the request, so a
    //    retry may succeed; if it did use the code, the retry fails with invalid_grant.
    if reply.status.is_server_error() {
        let detail = format!("the token endpoint {url} returned HTTP {}", reply.status);
        let unavailable = [
            reqwest::StatusCode::BAD_GATEWAY,
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            reqwest::StatusCode::GATEWAY_TIMEOUT,
        ];
        return Err(if unavailable.contains(&reply.status) {
            Rejection::transient(ReasonCode::IdpUnavailable, detail)
        } else {
            Rejection::new(ReasonCode::IdpUnavailable, detail)
        });
    }
    let body = if reply.is_json() {
        serde_json::from_slice::<Value>(&reply.body).ok()
    } else {
        None
    };
    if reply.status != reqwest::StatusCode::OK {
        return Err(error_response(url, reply.status, body.as_ref()));
    }
    let Some(Value::Object(body)) = body else {
        return Err(Rejection::new(
            ReasonCode::TokenResponseInvalid,
            format!(
                "the token endpoint {url} returned HTTP 200 with content type {:?} and no JSON object; expected application/json",
                reply.media_type
            ),
        ));
    };

    // 3. The ID token must be there: without the openid scope an IdP returns none.
    match body.get("id_token") {
        Some(Value::String(id_token)) if !id_token.is_empty() => Ok(id_token.clone()),
        None | Some(Value::Null) => Err(Rejection::new(
            ReasonCode::IdTokenMissing,
            "the token response has no id_token: request the openid scope; for Entra, enable ID tokens in the app registration",
        )),
        Some(_) => Err(Rejection::new(
            ReasonCode::TokenResponseInvalid,
            "the token response's id_token is not a non-empty string",
        )),
    }
}

/// Maps a non-200, non-5xx response: an OAuth error body is the IdP refusing the code, any
/// other body is not a token response at all.
fn error_response(url: &str, status: reqwest::StatusCode, body: Option<&Value>) -> Rejection {
    let error = body
        .and_then(|body| body.get("error"))
        .and_then(Value::as_str);
    let Some(error) = error else {
        return Rejection::new(
            ReasonCode::TokenResponseInvalid,
            format!("the token endpoint {url} returned HTTP {status} without an OAuth error body"),
        );
    };
    let description = body
        .and_then(|body| body.get("error_description"))
        .and_then(Value::as_str)
        .map(|text| format!(": {}", quote_untrusted(text, MAX_QUOTED)))
        .unwrap_or_default();
    Rejection::new(
        ReasonCode::TokenExchangeFailed,
        format!(
            "the token endpoint {url} returned HTTP {status}, error {}{description}",
            quote_untrusted(error, MAX_QUOTED)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_form_encode_each_part() {
        // "+" and "/" and ":" and "%" and space are each escaped before base64.
        let header = basic_credentials("client:1", "s3cret +/:%x");
        let encoded = header.strip_prefix("Basic ").unwrap_or_default();
        let decoded = STANDARD.decode(encoded).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&decoded),
            "client%3A1:s3cret+%2B%2F%3A%25x"
        );
    }
}
