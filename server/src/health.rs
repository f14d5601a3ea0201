//! `GET /api/health`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

/// Whether the server is up, its version, uptime and clock.
#[utoipa::path(get, path = "/api/health", tag = "server", operation_id = "health",
    responses((status = 200, description = "The server is up", body = protocol::Health)))]
pub async fn get(State(state): State<AppState>) -> impl IntoResponse {
    let health = protocol::Health {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: protocol::PROTOCOL_VERSION,
        uptime_ms: u64::try_from(state.uptime().as_millis()).unwrap_or(u64::MAX),
        server_time_us: crate::now_us(),
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(health))
}
