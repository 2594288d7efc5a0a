//! The HTTP client used toward identity providers, and bounded reads of their answers.

use std::time::Duration;

use thiserror::Error;

/// Builds the client for discovery, JWKS and token requests. It never follows redirects:
/// an IdP endpoint that redirects is misconfigured, and following would let a response
/// steer our requests (and the client secret) elsewhere.
pub fn idp_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("stepup/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An IdP's answer, read in full up to a size limit.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    /// The media type without parameters, in lowercase (`application/json`).
    pub media_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Whether the body is declared as JSON (`application/json` or a `+json` type).
    pub fn is_json(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|media| media == "application/json" || media.ends_with("+json"))
    }
}

/// A request to an IdP got no complete answer.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{url} did not answer within the timeout")]
    Timeout { url: String },
    #[error("{url} could not be reached: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} returned more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

/// Sends `request` and reads the whole body, failing once it passes `limit` bytes so that
/// an endless or huge answer costs bounded memory.
pub async fn send_bounded(
    request: reqwest::RequestBuilder,
    url: &str,
    limit: usize,
) -> Result<Reply, FetchError> {
    let failed = |source: reqwest::Error| {
        if source.is_timeout() {
            FetchError::Timeout {
                url: url.to_owned(),
            }
        } else {
            FetchError::Unreachable {
                url: url.to_owned(),
                source,
            }
        }
    };
    let too_large = || FetchError::TooLarge {
        url: url.to_owned(),
        limit,
    };

    let mut response = request.send().await.map_err(failed)?;
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let status = response.status();
    let media_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase());

    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        media_type,
        body,
    })
}

/// Returns `text` cut to `max` characters with control characters replaced, for quoting an
/// IdP's error text in a log line or rejection detail.
pub fn quote_untrusted(text: &str, max: usize) -> String {
    let mut quoted: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        quoted.push('…');
    }
    quoted
}
