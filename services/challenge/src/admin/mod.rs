//! The admin API on the challenge service's HTTP listener: providers, policies, challenge
//! lookups and provider tests, behind a bearer admin token.
//!
//! `services/challenge/openapi.yaml` documents every route. Handlers stay thin: input is
//! parsed and checked in [`input`], the store does the writing, and every error becomes a
//! JSON body through [`error::ApiError`]. Client secrets never appear in a response: a
//! provider shows only where its secret is kept.

mod auth;
mod challenges;
mod error;
mod input;
mod policies;
pub mod provider_test;
mod providers;
mod view;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use crate::service::SharedService;

/// The state the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub service: SharedService,
    /// SHA-256 of the admin token; `None` turns the API off.
    token_sha256: Option<[u8; 32]>,
    /// The client for discovery checks; it never follows redirects.
    http: reqwest::Client,
}

/// The admin API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("challenge.admin_token: {0}")]
    Token(#[from] stepup_oidc::provider::SecretError),
    #[error("building the HTTP client for discovery checks failed: {0}")]
    Client(#[from] reqwest::Error),
}

impl AdminState {
    /// Resolves the admin token and builds the discovery client.
    pub fn new(service: SharedService) -> Result<Self, AdminError> {
        let token_sha256 = match &service.config.admin_token {
            Some(token) => {
                let token = token.resolve("admin API")?;
                (!token.trim().is_empty()).then(|| auth::token_digest(token.trim()))
            }
            None => None,
        };
        if token_sha256.is_none() {
            tracing::warn!(
                "challenge.admin_token is not set; the admin API responds with 503 to every request"
            );
        }
        let timeout = Duration::from_millis(service.config.registry.discovery_timeout_ms);
        let http = stepup_oidc::http::idp_client(timeout)?;
        Ok(Self {
            service,
            token_sha256,
            http,
        })
    }
}

/// Builds the admin routes, each behind the token check.
pub fn router(state: AdminState) -> Router {
    let routes = Router::new()
        .route(
            "/admin/providers",
            get(providers::list).post(providers::create),
        )
        .route(
            "/admin/providers/{name}",
            get(providers::read)
                .put(providers::replace)
                .delete(providers::delete),
        )
        .route("/admin/providers/{name}/disable", post(providers::disable))
        .route("/admin/providers/{name}/enable", post(providers::enable))
        .route("/admin/providers/{name}/test", post(provider_test::start))
        .route("/admin/acr-values", get(providers::known_acr_values))
        .route("/admin/policies", get(policies::list))
        .route(
            "/admin/policies/{policy_id}/{step_id}",
            get(policies::read)
                .put(policies::put)
                .delete(policies::delete),
        )
        .route("/admin/challenges/{id}", get(challenges::read))
        .route(
            "/admin/approvals/{approval_id}/challenges",
            get(challenges::by_approval),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    routes.with_state(state)
}
