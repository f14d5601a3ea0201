//! `GET /api/health`.

use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// When the server started, its node name and its log (for the state of a cluster's stream).
#[derive(Debug, Clone)]
pub struct Started(pub Instant, pub std::sync::Arc<str>, pub std::sync::Arc<crate::log::EventLog>);

/// `/api/health`.
pub fn routes() -> Router<Started> {
    Router::new().route(crate::paths::HEALTH_PATH, get(health))
}

/// Whether the server is up, its version, uptime, clock and node (a balancer's health check).
#[utoipa::path(get, path = "/api/health", tag = "server", operation_id = "health",
    responses((status = 200, description = "The server is up", body = protocol::Health)))]
pub async fn health(State(Started(started, node, log)): State<Started>) -> impl IntoResponse {
    let health = protocol::Health {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: protocol::PROTOCOL_VERSION,
        uptime_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        server_time_us: crate::clock::now_us(),
        node: node.to_string(),
        event_stream: log.stream_state(),
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(health))
}
