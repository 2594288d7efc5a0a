//! Policy routes: `(policy_id, step_id)` to "step-up with provider P" or "no step-up".
//! A step id of `*` makes a default for every step of a policy, and `(*, *)` a default for
//! every step without a policy of its own.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use stepup_oidc::provider::{FieldProblem, ProviderKind};
use stepup_registry::{Origin, PolicyRecord};

use super::AdminState;
use super::error::ApiError;
use super::input::{PolicyInput, parse_json};
use super::view::PolicyView;

pub async fn list(State(state): State<AdminState>) -> Json<Vec<PolicyView>> {
    let catalog = state.service.registry.catalog();
    Json(catalog.policies.values().cloned().collect())
}

pub async fn read(
    State(state): State<AdminState>,
    Path((policy_id, step_id)): Path<(String, String)>,
) -> Result<Json<PolicyView>, ApiError> {
    let catalog = state.service.registry.catalog();
    catalog
        .policy(&policy_id, &step_id)
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(&policy_id, &step_id))
}

/// Creates or replaces the policy of `(policy_id, step_id)`.
pub async fn put(
    State(state): State<AdminState>,
    Path((policy_id, step_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let input: PolicyInput = parse_json(&body)?;
    let now = Utc::now();
    let mut record = PolicyRecord {
        policy_id,
        step_id,
        step_up: input.step_up,
        provider: input.provider,
        max_age: input.max_age,
        acr_values: input.acr_values,
        allow_self_approval: input.allow_self_approval,
        origin: Origin::Api,
        created_at: now,
        updated_at: now,
    };
    let mut problems = record.problems();
    problems.extend(provider_problems(&state, &record));
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }

    if let Some(old) = state
        .service
        .registry
        .catalog()
        .policy(&record.policy_id, &record.step_id)
    {
        record.created_at = old.created_at;
    }
    let replaced = state.service.registry.put_policy(&record).await?;
    tracing::info!(policy = %record.policy_id, step = %record.step_id, provider = record.provider.as_deref().unwrap_or(""), step_up = record.step_up, decision = if replaced.is_some() { "updated" } else { "created" }, "policy saved through the admin API");
    let status = if replaced.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(record)))
}

pub async fn delete(
    State(state): State<AdminState>,
    Path((policy_id, step_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state
        .service
        .registry
        .catalog()
        .policy(&policy_id, &step_id)
        .is_none()
    {
        return Err(not_found(&policy_id, &step_id));
    }
    state
        .service
        .registry
        .delete_policy(&policy_id, &step_id)
        .await?;
    tracing::info!(policy = %policy_id, step = %step_id, decision = "deleted", "policy deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

/// The policy's provider must exist, and ACR overrides apply only to kind `oauth2`.
fn provider_problems(state: &AdminState, record: &PolicyRecord) -> Vec<FieldProblem> {
    let Some(name) = &record.provider else {
        return Vec::new();
    };
    let Some(provider) = state.service.registry.provider(name) else {
        return vec![FieldProblem::new(
            "provider",
            "unknown_provider",
            format!(
                "provider {name:?} does not exist: create it with POST /admin/providers first, or name an existing one"
            ),
        )];
    };
    let mut problems = Vec::new();
    if provider.kind == ProviderKind::Entra && record.acr_values.is_some() {
        problems.push(FieldProblem::new(
            "acr_values",
            "invalid_acr_values",
            format!("provider {name} is kind entra, which ignores acr_values: remove the override, or point the step at an entra provider with another auth_context"),
        ));
    }
    for value in record.acr_values.iter().flatten() {
        if value.is_empty() || value.chars().any(char::is_whitespace) {
            problems.push(FieldProblem::new(
                "acr_values",
                "invalid_acr_values",
                format!("acr value {value:?} is empty or contains whitespace: give one token per value, such as phrh"),
            ));
        }
    }
    problems
}

fn not_found(policy_id: &str, step_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "policy ({policy_id}, {step_id}) not found: list the policies with GET /admin/policies"
    ))
}
