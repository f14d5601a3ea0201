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
    /// In a cluster (`--nats`): how this replica's link to the shared event stream is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_stream: Option<EventStream>,
}

/// A replica's link to the cluster's event stream (in [`Health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventStream {
    /// False while its last publish failed (NATS out of reach): events wait in its outbox.
    pub reachable: bool,
    /// Events waiting in the outbox to be published.
    pub waiting: u64,
    /// Events the full outbox had to drop since the last report of an outage.
    pub dropped: u64,
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
