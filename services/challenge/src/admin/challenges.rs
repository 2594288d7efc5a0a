//! Challenge lookups, by id and by approval.

use axum::Json;
use axum::extract::{Path, State};

use super::AdminState;
use super::error::ApiError;
use super::view::ChallengeView;

pub async fn read(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<ChallengeView>, ApiError> {
    let challenge = state
        .service
        .store
        .get(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "challenge {id} not found: check the id from stepup.required"
            ))
        })?;
    Ok(Json(ChallengeView::from(&challenge)))
}

/// The challenges of one approval, oldest first; empty when it has none.
pub async fn by_approval(
    State(state): State<AdminState>,
    Path(approval_id): Path<String>,
) -> Result<Json<Vec<ChallengeView>>, ApiError> {
    let challenges = state
        .service
        .store
        .list_by_approval(&approval_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(challenges.iter().map(ChallengeView::from).collect()))
}
