//! Provider routes: list, create, read, replace, enable, disable, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use stepup_oidc::provider::{ClientSecret, ProviderSettings};
use stepup_registry::checks::check_discovery;
use stepup_registry::{Origin, ProviderRecord};

use super::AdminState;
use super::error::ApiError;
use super::input::{ProviderInput, parse_json, required_secret};
use super::view::{KnownAcrValue, OKTA_ACR_VALUES, ProviderView, SavedProvider};

pub async fn list(State(state): State<AdminState>) -> Json<Vec<ProviderView>> {
    let catalog = state.service.registry.catalog();
    Json(catalog.providers.values().map(ProviderView::from).collect())
}

pub async fn read(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    let record = existing(&state, &name)?;
    Ok(Json(ProviderView::from(&record)))
}

pub async fn known_acr_values() -> Json<&'static [KnownAcrValue]> {
    Json(&OKTA_ACR_VALUES)
}

/// Creates a provider after the settings and discovery checks pass.
pub async fn create(
    State(state): State<AdminState>,
    body: Bytes,
) -> Result<(StatusCode, Json<SavedProvider>), ApiError> {
    let input: ProviderInput = parse_json(&body)?;
    let secret = required_secret(&input).map_err(ApiError::Invalid)?;
    let settings = input
        .into_settings(None, secret)
        .map_err(ApiError::Invalid)?;
    let warnings = check(&state, &settings).await?;

    let stored = state
        .service
        .registry
        .store_secret(&settings.name, &settings.client_secret)?;
    let record = ProviderRecord::from_settings(&settings, stored, Origin::Api, Utc::now());
    state.service.registry.create_provider(&record).await?;
    tracing::info!(provider = %record.name, kind = ?record.kind, decision = "created", "provider created through the admin API");
    Ok((
        StatusCode::CREATED,
        Json(SavedProvider {
            provider: ProviderView::from(&record),
            warnings,
        }),
    ))
}

/// Replaces a provider's settings. A body without `client_secret` keeps the stored secret.
pub async fn replace(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SavedProvider>, ApiError> {
    existing(&state, &name)?;
    let input: ProviderInput = parse_json(&body)?;
    let new_secret = input.client_secret.clone().map(ClientSecret::new);
    let checked_secret = new_secret.clone().unwrap_or_else(ClientSecret::withheld);
    let settings = input
        .into_settings(Some(&name), checked_secret)
        .map_err(ApiError::Invalid)?;
    let warnings = check(&state, &settings).await?;

    let stored = new_secret
        .map(|secret| state.service.registry.store_secret(&name, &secret))
        .transpose()?;
    let record = state
        .service
        .registry
        .update_provider(&name, |record| {
            let secret = stored
                .clone()
                .unwrap_or_else(|| record.client_secret.clone());
            let fresh = ProviderRecord::from_settings(&settings, secret, Origin::Api, Utc::now());
            *record = ProviderRecord {
                created_at: record.created_at,
                last_tested_at: record.last_tested_at,
                ..fresh
            };
            Ok(())
        })
        .await?;
    tracing::info!(provider = %name, decision = "updated", secret_replaced = stored.is_some(), "provider updated through the admin API");
    Ok(Json(SavedProvider {
        provider: ProviderView::from(&record),
        warnings,
    }))
}

pub async fn disable(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    set_enabled(&state, &name, false).await
}

pub async fn enable(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    set_enabled(&state, &name, true).await
}

/// Deletes a provider that no policy names.
pub async fn delete(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    existing(&state, &name)?;
    let catalog = state.service.registry.catalog();
    let users: Vec<String> = catalog
        .policies_using(&name)
        .map(|policy| format!("({}, {})", policy.policy_id, policy.step_id))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict {
            code: "provider_in_use",
            message: format!(
                "provider {name} is used by the policies {}: point them at another provider or delete them first, or disable the provider instead",
                users.join(", ")
            ),
        });
    }
    state.service.registry.delete_provider(&name).await?;
    tracing::info!(provider = %name, decision = "deleted", "provider deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(
    state: &AdminState,
    name: &str,
    enabled: bool,
) -> Result<Json<ProviderView>, ApiError> {
    let record = state
        .service
        .registry
        .update_provider(name, |record| {
            record.enabled = enabled;
            record.origin = Origin::Api;
            record.updated_at = Utc::now();
            Ok(())
        })
        .await?;
    tracing::info!(provider = %name, enabled, decision = if enabled { "enabled" } else { "disabled" }, "provider switched through the admin API");
    Ok(Json(ProviderView::from(&record)))
}

fn existing(state: &AdminState, name: &str) -> Result<ProviderRecord, ApiError> {
    state.service.registry.provider(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "provider {name} not found: list the providers with GET /admin/providers"
        ))
    })
}

/// Runs the discovery checks; problems refuse the save, warnings are returned.
async fn check(
    state: &AdminState,
    settings: &ProviderSettings,
) -> Result<Vec<stepup_oidc::provider::FieldProblem>, ApiError> {
    let report = check_discovery(&state.http, settings).await;
    if !report.problems.is_empty() {
        tracing::info!(provider = %settings.name, decision = "rejected", reason = report.problems[0].code, "provider failed the discovery checks");
        return Err(ApiError::Invalid(report.problems));
    }
    Ok(report.warnings)
}
