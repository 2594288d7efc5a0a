//! Request limits of the public routes: caps on the query and header sizes, and rate limits
//! per client address and per challenge.
//!
//! The step-up link and the callback are the only routes a stranger can reach. Each request
//! costs a NATS round trip and sometimes an IdP discovery fetch, so a client over its budget
//! gets `429 Too Many Requests` with a `Retry-After` header before any of that work is done.
//! Health endpoints are not limited.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::pages;
use crate::routes::AppState;

/// After this many checks the limiters forget keys whose buckets are full again, so that
/// a flood of distinct keys (random states) does not grow memory without bound.
const CLEANUP_EVERY: u64 = 1024;

/// The rate limiters, one keyed by client address and one by challenge.
#[derive(Debug)]
pub(crate) struct RateLimits {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    per_challenge: DefaultKeyedRateLimiter<ChallengeKey>,
    checks: AtomicU64,
}

/// What a per-challenge limit counts: a challenge id from `/stepup/{id}`, or the SHA-256 of
/// the `state` of a callback, so the state value itself is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ChallengeKey {
    Id(String),
    StateSha256([u8; 32]),
}

/// Why a request was refused before it reached its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    QueryTooLong,
    HeadersTooLarge,
    TooManyRequests { retry_after: Duration },
}

impl RateLimits {
    pub(crate) fn new(per_client: NonZeroU32, per_challenge: NonZeroU32) -> Self {
        Self {
            per_client: RateLimiter::keyed(Quota::per_minute(per_client)),
            per_challenge: RateLimiter::keyed(Quota::per_minute(per_challenge)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request from `client` for `challenge`, and returns how long to wait when
    /// either budget is used up.
    fn check(&self, client: IpAddr, challenge: Option<&ChallengeKey>) -> Result<(), Duration> {
        self.clean_up_now_and_then();

        let clock = DefaultClock::default();
        self.per_client
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))?;
        if let Some(challenge) = challenge {
            self.per_challenge
                .check_key(challenge)
                .map_err(|not_until| not_until.wait_time_from(clock.now()))?;
        }
        Ok(())
    }

    fn clean_up_now_and_then(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            self.per_client.retain_recent();
            self.per_client.shrink_to_fit();
            self.per_challenge.retain_recent();
            self.per_challenge.shrink_to_fit();
        }
    }
}

/// Enforces the limits on `/stepup/...` and `/auth/callback`: the size caps first, because
/// they cost nothing, then the rate limits.
pub(crate) async fn enforce(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, &request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::info!(
                path = request.uri().path(),
                decision = "refused",
                reason = refusal.as_str(),
                "request refused by a limit"
            );
            refusal.into_response()
        }
    }
}

fn check(state: &AppState, request: &Request) -> Result<(), Refusal> {
    let limits: &Limits = &state.settings.limits;

    // 1. Sizes: a query or headers bigger than any real authorization response are refused.
    let query = request.uri().query().unwrap_or_default();
    if query.len() > limits.max_query_bytes {
        return Err(Refusal::QueryTooLong);
    }
    if header_bytes(request.headers()) > limits.max_header_bytes {
        return Err(Refusal::HeadersTooLarge);
    }

    // 2. Rates: per client address, and per challenge when the request names one.
    let client = client_address(request);
    let challenge = challenge_key(request.uri().path(), query);
    state
        .rate_limits
        .check(client, challenge.as_ref())
        .map_err(|retry_after| Refusal::TooManyRequests { retry_after })
}

/// Adds up the sizes of the header names and values, as the client sent them.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// Returns the address of the TCP peer.
// NOTE: behind a reverse proxy this is the proxy's address, so every client shares one
// budget. Reading the client from a forwarded header needs a list of trusted proxies,
// which this service does not have yet.
fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// The challenge a request is about: the id in `/stepup/{id}`, or the `state` of a callback.
fn challenge_key(path: &str, query: &str) -> Option<ChallengeKey> {
    if let Some(id) = path.strip_prefix("/stepup/") {
        return (!id.is_empty()).then(|| ChallengeKey::Id(id.to_owned()));
    }
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "state")
        .filter(|(_, value)| !value.is_empty())
        .map(|(_, value)| ChallengeKey::StateSha256(Sha256::digest(value.as_bytes()).into()))
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::QueryTooLong => "query_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::TooManyRequests { .. } => "rate_limited",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::QueryTooLong => pages::error(
                StatusCode::URI_TOO_LONG,
                "Link too long",
                "This link is longer than any approval or sign-in link. Start again from the approval link.",
                None,
            ),
            Self::HeadersTooLarge => pages::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request too large",
                "Your browser sent more data than this page accepts. Clear the cookies of this site, then start again from the approval link.",
                None,
            ),
            Self::TooManyRequests { retry_after } => {
                // Whole seconds, rounded up, so that a retry at that time succeeds.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut response = pages::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    "There were too many attempts from your network or for this approval. Wait a minute, then reload this page.",
                    None,
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_client: u32, per_challenge: u32) -> RateLimits {
        RateLimits::new(
            NonZeroU32::new(per_client).unwrap_or(NonZeroU32::MIN),
            NonZeroU32::new(per_challenge).unwrap_or(NonZeroU32::MIN),
        )
    }

    #[test]
    fn client_budget_runs_out() {
        let limits = limits(3, 100);
        let client = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..3 {
            assert_eq!(limits.check(client, None), Ok(()));
        }
        let wait = limits.check(client, None).err();
        assert!(wait.is_some_and(|wait| wait > Duration::ZERO), "{wait:?}");

        let other = IpAddr::from([192, 0, 2, 2]);
        assert_eq!(limits.check(other, None), Ok(()));
    }

    #[test]
    fn challenge_budget_is_shared_by_all_clients() {
        let limits = limits(100, 2);
        let key = ChallengeKey::Id("ch-1".into());
        assert_eq!(
            limits.check(IpAddr::from([192, 0, 2, 1]), Some(&key)),
            Ok(())
        );
        assert_eq!(
            limits.check(IpAddr::from([192, 0, 2, 2]), Some(&key)),
            Ok(())
        );
        assert!(
            limits
                .check(IpAddr::from([192, 0, 2, 3]), Some(&key))
                .is_err()
        );

        let other = ChallengeKey::Id("ch-2".into());
        assert_eq!(
            limits.check(IpAddr::from([192, 0, 2, 3]), Some(&other)),
            Ok(())
        );
    }

    #[test]
    fn challenge_key_from_path_or_state() {
        assert_eq!(
            challenge_key("/stepup/ch-1", ""),
            Some(ChallengeKey::Id("ch-1".into()))
        );
        assert_eq!(challenge_key("/stepup/", ""), None);
        assert_eq!(challenge_key("/auth/callback", "code=c"), None);
        assert_eq!(challenge_key("/auth/callback", "state=&code=c"), None);

        let key = challenge_key("/auth/callback", "code=c&state=s%2B1");
        let expected: [u8; 32] = Sha256::digest(b"s+1").into();
        assert_eq!(key, Some(ChallengeKey::StateSha256(expected)));
    }

    #[test]
    fn too_many_requests_has_retry_after_in_whole_seconds() {
        let response = Refusal::TooManyRequests {
            retry_after: Duration::from_millis(2_100),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
    }
}
