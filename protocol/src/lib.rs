//! wirescope's shared vocabulary: plain serde types spoken by the server and the app.
//!
//! Nothing here knows about tokio, axum or leptos; the crate compiles for wasm32 and native.
//! Times are microseconds since the Unix epoch (`i64`), so both ends' clocks compare directly.

pub mod api;
pub mod channel;
pub mod event;
pub mod instructor;
pub mod lab;
pub mod observe;
pub mod transcripts;

pub use api::{ApiError, EventStream, Health};
pub use event::{
    BALANCER_LANE, Body, ClientInfo, CloseInfo, Event, EventKind, Failure, Header, Hop, HttpRequest,
    HttpResponse, Note, NoteKind, Opcode, Presence, Side, Stamps, Step, WsAccept, WsClose, WsFrame,
    WsUpgrade, close_code_meaning, status_reason,
};
pub use observe::{ClientEntry, ClockOffset, ObserverCmd, ObserverMsg};
pub use transcripts::{CourseGrade, NewTranscript, Student, StudentId, Transcript};

/// Version of the wire vocabulary in this crate. Bumped on any incompatible change; sent by the
/// server in `/api/health` and in every stream's opening message.
pub const PROTOCOL_VERSION: u32 = 1;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// Header by which a browser names itself (its client id) on every request.
pub const CLIENT_HEADER: &str = "x-wirescope-client";
/// Header carrying the browser's own correlation id for an exchange.
pub const EXCHANGE_HEADER: &str = "x-wirescope-exchange";
/// Header that makes a `POST` safe to retry: the same key, the same answer.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The observer stream: the event log, live, for every screen.
pub const OBSERVE_PATH: &str = "/ws/observe";
/// The lecture's typed WebSocket: presence, rooms, chat, pushed changes.
pub const EVENTS_PATH: &str = "/ws/events";

/// The lane (the `client` of events) of what belongs to no client: the server itself, its
/// notes and presence. Both ends draw it as the server's lane.
pub const SERVER_LANE: &str = "server";
