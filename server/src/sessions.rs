//! Recorded sessions of the event log: listed, and read back for replay and export.
//! (Renaming and deleting them is for the instructor: see [`crate::instructor`].)

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::extract::PathText;
use crate::log::SessionInfo;
use crate::{ApiError, AppState};

/// Every recorded session, newest first.
#[utoipa::path(get, path = "/api/sessions", tag = "server", operation_id = "listSessions",
    responses((status = 200, description = "Sessions, newest first", body = Vec<Object>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let log = state.log().clone();
    let list = tokio::task::spawn_blocking(move || log.db().map(|db| db.sessions()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or_default();
    Ok(Json(list))
}

/// A session's events, in `seq` order, as a JSON array (flushed first, so it is complete).
#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "server", operation_id = "sessionEvents",
    params(("id" = u64, Path, description = "The session's id", minimum = 0)),
    responses(
        (status = 200, description = "The session's events", body = Vec<Object>),
        (status = 404, description = "No such session", body = crate::openapi::ErrorBody),
        (status = 422, description = "The id is not an integer", body = crate::openapi::ValidationFailed),
    ))]
pub async fn events(
    State(state): State<AppState>,
    PathText(p): PathText,
) -> Result<impl IntoResponse, ApiError> {
    let id = p[0]
        .parse::<u64>()
        .map_err(|_| ApiError::Validation([("id".to_owned(), "must be an integer".to_owned())].into()))?;
    let log = state.log().clone();
    let lines = tokio::task::spawn_blocking(move || {
        log.flush();
        match log.db() {
            Some(db) => match db.session(id) {
                Ok(Some(_)) => db.session_events(id).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
    let body = format!("[{}]", lines.join(","));
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}
