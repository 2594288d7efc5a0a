//! The HTTP client used toward identity providers.

use std::time::Duration;

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
