//! The router: which path goes to which handler, the shared state, the security headers
//! on every response, and the health endpoints.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use stepup_oidc::authorize::AuthorizationEndpoints;
use tower_http::set_header::SetResponseHeaderLayer;
use url::{Origin, Url};

use crate::backend::Backend;
use crate::config::Settings;
use crate::error::PageError;
use crate::outcomes::Waiters;
use crate::{callback, start};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) endpoints: Arc<AuthorizationEndpoints>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) settings: Arc<Settings>,
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
        Ok(Self {
            backend,
            endpoints: Arc::new(endpoints),
            waiters,
            settings: Arc::new(settings),
        })
    }

    /// `url` if it is an http(s) URL without user information on an allowed origin.
    pub(crate) fn allowed_return_url<'a>(&self, url: Option<&'a str>) -> Option<&'a str> {
        let text = url?;
        let parsed = Url::parse(text).ok()?;
        let plain = matches!(parsed.scheme(), "http" | "https")
            && parsed.username().is_empty()
            && parsed.password().is_none();
        let origin: Origin = parsed.origin();
        (plain && self.settings.allowed_return_origins.contains(&origin)).then_some(text)
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

    let mut router = Router::new()
        .route("/stepup/{challenge_id}", get(start::start))
        .route("/auth/callback", get(callback::callback))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
    if state.backend.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[tracing::instrument(skip_all)]
async fn not_found() -> Response {
    axum::response::IntoResponse::into_response(PageError::ChallengeNotFound)
}
