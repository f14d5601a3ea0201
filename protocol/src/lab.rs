//! The pattern lab's settings and figures (`/api/lab`).

use serde::{Deserialize, Serialize};

/// How a lab run is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabConfig {
    /// Grades posted per second (0.05 to 20).
    pub rate: f64,
    /// Simulated subscribers per pattern (1 to 200).
    pub subscribers: u32,
    /// Short polling period in ms (100 to 10,000).
    pub poll_ms: u64,
}

/// What one pattern cost so far: counted by the server, reported as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    /// HTTP requests the subscribers made (handshakes included).
    pub requests: u64,
    /// Bytes of headers and framing, both ways.
    pub overhead_bytes: u64,
    /// Bytes of change data delivered.
    pub payload_bytes: u64,
    /// Messages the server sent (responses, events, frames).
    pub server_messages: u64,
    /// Changes delivered (one per subscriber per change).
    pub deliveries: u64,
    /// Connections held open right now.
    pub open: u32,
}

/// One pattern's figures so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatternReport {
    /// `shortPoll`, `longPoll`, `sse` or `webSocket`.
    pub pattern: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub staleness_p50_ms: Option<f64>,
    pub staleness_p95_ms: Option<f64>,
    /// What the numbers show, in one sentence.
    pub summary: String,
}

/// `GET /api/lab`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabReport {
    pub running: bool,
    pub config: Option<LabConfig>,
    /// Seconds since the run started.
    pub seconds: f64,
    /// Grades posted so far.
    pub changes: u64,
    /// Grades the scratch store refused or could not take (each one also in `problem`).
    #[serde(default)]
    pub failed: u64,
    /// The newest failure, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub patterns: Vec<PatternReport>,
}
