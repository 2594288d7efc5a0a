//! The router: which path goes to which handler, the shared state, the security headers
//! on every response, and the health endpoints.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use stepup_oidc::authorize::AuthorizationEndpoints;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use url::{Origin, Url};

use crate::backend::Backend;
use crate::config::Settings;
use crate::error::PageError;
use crate::limits::{self, RateLimits};
use crate::outcomes::Waiters;
use crate::{callback, start};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) endpoints: Arc<AuthorizationEndpoints>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) rate_limits: Arc<RateLimits>,
    /// Cancelled when shutdown begins; `/readyz` reports 503 from then on.
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Checks `config` and builds the state around `backend` and `waiters`.
    pub fn new(
        config: &crate::Config,
        backend: Arc<dyn Backend>,
        waiters: Arc<Waiters>,
    ) -> Result<Self, crate::Error> {
        let settings = config.settings()?;
        let endpoints = AuthorizationEndpoints::new(
            std::time::Duration::from_millis(config.idp_timeout_ms),
            std::time::Duration::from_secs(config.discovery_cache_secs),
        )
        .map_err(crate::Error::HttpClient)?;
        let rate_limits =
            RateLimits::new(settings.limits.per_client, settings.limits.per_challenge);
        Ok(Self {
            backend,
            endpoints: Arc::new(endpoints),
            waiters,
            settings: Arc::new(settings),
            rate_limits: Arc::new(rate_limits),
            shutdown: CancellationToken::new(),
        })
    }

    /// Makes `/readyz` report 503 once `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Returns `url` as the browser will read it, if it is an absolute http(s) URL without
    /// user information on an allowed origin. The page links to the parsed form, not the
    /// raw text, so that what was checked is what the browser follows.
    pub(crate) fn allowed_return_url(&self, url: Option<&str>) -> Option<String> {
        let parsed = Url::parse(url?).ok()?;
        let plain = matches!(parsed.scheme(), "http" | "https")
            && parsed.username().is_empty()
            && parsed.password().is_none();
        let origin: Origin = parsed.origin();
        (plain && self.settings.allowed_return_origins.contains(&origin)).then(|| parsed.into())
    }
}

/// The content security policy of every page: inline styles and nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'";

/// Builds the router with the security headers on every response.
pub fn router(state: AppState) -> Router {
    let security_headers: [(HeaderName, &'static str); 4] = [
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];

    // Only the routes that reach the challenge service are limited.
    let public = Router::new()
        .route("/stepup/{challenge_id}", get(start::start))
        .route("/auth/callback", get(callback::callback))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ));
    let mut router = Router::new()
        .merge(public)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async { stepup_telemetry::metrics::http_response() }),
        )
        .fallback(not_found)
        .with_state(state);
    for (name, value) in security_headers {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

#[tracing::instrument(skip_all)]
async fn healthz() -> StatusCode {
    StatusCode::OK
}

#[tracing::instrument(skip_all)]
async fn readyz(State(state): State<AppState>) -> StatusCode {
    // From the start of shutdown no new approver should be sent here while the pages in
    // flight get their outcomes.
    if !state.shutdown.is_cancelled() && state.backend.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[tracing::instrument(skip_all)]
async fn not_found() -> Response {
    axum::response::IntoResponse::into_response(PageError::ChallengeNotFound)
}
