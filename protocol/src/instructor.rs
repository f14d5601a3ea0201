//! The instructor's API (`/api/instructor/…`, with `Authorization: Bearer TOKEN`): faults,
//! holding messages, sessions, moderation.

use serde::{Deserialize, Serialize};

/// A deliberate disturbance, applied to matching requests or connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FaultKind {
    /// Delay before the request is handled: `fixedMs` plus up to `jitterMs` at random.
    #[serde(rename_all = "camelCase")]
    Latency { fixed_ms: u64, jitter_ms: u64 },
    /// The request is never handled: the connection is closed without an answer.
    DropRequest,
    /// The request is handled, then the connection is closed before the answer.
    DropResponse,
    /// The request reaches the handler twice.
    Duplicate,
    /// Answered at once with 429 or 503 and `Retry-After`.
    #[serde(rename_all = "camelCase")]
    Status { status: u16, retry_after_s: u64 },
    /// WebSocket: the server's frames leave in swapped pairs.
    ReorderFrames,
    /// WebSocket: closed by the server with `code` (1001, 1011 or 4000).
    Close { code: u16 },
    /// WebSocket: the connection is cut without a close frame (the client sees 1006).
    Cut,
}

/// Which traffic a fault applies to: requests whose path starts with `path`, and/or those of
/// one client. Neither: everything (except observers, static files and instructor calls).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// A fault to add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewFault {
    #[serde(default)]
    pub target: Target,
    pub fault: FaultKind,
    /// Apply to the next N matching requests or connections only (default: until removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// A fault in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fault {
    pub id: u64,
    pub target: Target,
    pub fault: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// How often it was applied.
    pub applied: u64,
}

/// A request waiting at the server for the instructor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Held {
    pub id: u64,
    pub client: String,
    pub method: String,
    pub path: String,
    /// Held since (server clock, µs).
    pub since_us: i64,
}

/// Holding state and what is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldState {
    pub on: bool,
    /// Anything held longer is released on its own.
    pub timeout_ms: u64,
    pub held: Vec<Held>,
}

/// The instructor's view of the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Room {
    /// Addresses students can open (on the room's network).
    pub join_urls: Vec<String>,
    /// A QR code of the first join URL, as SVG.
    pub qr_svg: String,
    pub faults: Vec<Fault>,
    pub hold: HoldState,
    /// Seconds the server is still "down" (0: up).
    pub down_for_s: u64,
    pub muted: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highlight: Option<String>,
}
