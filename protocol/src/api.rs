//! Bodies of the server's own REST endpoints under `/api`.

use serde::{Deserialize, Serialize};

/// `GET /api/health`: the server is up, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `"ok"` when the server answers at all.
    pub status: String,
    /// Server build version (the crate version).
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`] of the server.
    pub protocol: u32,
    /// How long the server has been running, in milliseconds.
    pub uptime_ms: u64,
    /// The server's clock when it answered (µs since the Unix epoch).
    pub server_time_us: crate::Micros,
    /// Which server (replica) answered: its `--node` name.
    #[serde(default)]
    pub node: String,
}

/// Every error the HTTP API answers has this JSON body.
///
/// `details` is a string for 400-style errors and an object `{field: reason}` for validation
/// failures (422), so it is kept as free JSON on the receiving side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError<D = String> {
    pub message: String,
    pub details: D,
}
