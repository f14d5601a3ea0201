//! The event log's vocabulary: one [`Event`] per thing the wire carried.
//!
//! An HTTP exchange is two events (request, response); a WebSocket is its Upgrade request,
//! the 101 that accepts it, one event per frame in either direction, and the close frames.
//! Events of one exchange or connection share an `exchange` id. Every view of wirescope (the
//! diagram, the inspector, exports) is a function of a sequence of these.

use serde::{Deserialize, Serialize};

use crate::Micros;

/// One thing the wire carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the log that recorded it: strictly increasing, never reused.
    pub seq: u64,
    /// The lane it belongs to: a browser's client id, or `anon:…` (a pseudonym of its address)
    /// for a client without one.
    pub client: String,
    /// The server (replica) that saw it: `--node`, by default the machine's host name. Empty
    /// in events recorded before nodes were named, and in a browser's own observations.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Correlation id shared by the events of one HTTP exchange or one WebSocket connection.
    pub exchange: u64,
    /// The client's own id for the exchange (header `X-Wirescope-Exchange`, or `ref=` on a
    /// WebSocket URL), so a browser can join what it saw to what the server saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<u64>,
    /// The exchange that set this message off, when it is a consequence of another one (a
    /// pushed `transcriptChanged` frame names the POST that caused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<u64>,
    /// When each end saw it.
    pub at: Stamps,
    /// What it was.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// When a message left one end and reached the other, as far as each end knows.
///
/// For a message from the client, `client_us` is when it was sent and `server_us` when it
/// arrived; for a message from the server, the other way round. A side that did not (yet)
/// report its time leaves it `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_us: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_us: Option<Micros>,
}

/// Which end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// What an [`Event`] was. Tagged by `kind` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EventKind {
    HttpRequest(HttpRequest),
    HttpResponse(HttpResponse),
    WsUpgrade(WsUpgrade),
    WsAccept(WsAccept),
    WsFrame(WsFrame),
    WsClose(WsClose),
    Failure(Failure),
    Client(ClientInfo),
    Presence(Presence),
    Note(Note),
    Hop(Hop),
}

impl EventKind {
    /// The end that sent this message.
    pub fn from(&self) -> Side {
        match self {
            EventKind::HttpRequest(_) | EventKind::WsUpgrade(_) => Side::Client,
            EventKind::HttpResponse(_) | EventKind::WsAccept(_) => Side::Server,
            EventKind::WsFrame(f) => f.from,
            EventKind::WsClose(c) => c.from,
            EventKind::Failure(f) => f.from,
            EventKind::Client(_) => Side::Client,
            EventKind::Presence(_) | EventKind::Note(_) | EventKind::Hop(_) => Side::Server,
        }
    }

    /// True for messages on the wire (drawn as arrows); false for notes about the session
    /// (a client's name, observer presence).
    pub fn is_message(&self) -> bool {
        !matches!(self, EventKind::Client(_) | EventKind::Presence(_) | EventKind::Note(_))
    }
}

/// A client the server has seen, and what it calls itself. Recorded when a client first
/// appears and whenever its nickname changes; lane titles come from these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// What kind of program it is (`browser`, `curl`, `python`, …), from its user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Remote address (IP) the client connected from: only in what the instructor reads
    /// (`GET /api/instructor/clients`), never in the event log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The full user agent: only for the instructor, like `addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// What every screen may know of a client: its nickname and kind, not its address or
    /// user agent.
    pub fn public(&self) -> ClientInfo {
        ClientInfo {
            nickname: self.nickname.clone(),
            agent: self.agent.clone(),
            addr: None,
            user_agent: None,
        }
    }
}

/// Something the server did to the traffic, or to the session, that every screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub what: NoteKind,
    /// Words for the screen: "latency +800 ms on /transcripts", "request held", …
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoteKind {
    /// A fault was injected into this exchange or connection (drawn on its row).
    Fault,
    /// A request is held at the server until the instructor releases it.
    Held,
    Released,
    /// A new session started: screens start a new diagram.
    Session,
    /// The instructor highlights a lane (`client` is the lane; empty: none).
    Highlight,
    /// The server is down for a while (or up again).
    Down,
}

/// A step inside the system that served an exchange, which its client never sees: the
/// balancer handing the request to a replica, or one database statement. Recorded by the node
/// that served the exchange (the event's `node`), with the exchange's id and client, between
/// the request and its answer; its `at.serverUs` is when the step began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub step: Step,
    /// How long it took, in microseconds: from the balancer's receipt to the replica's, or
    /// the statement's round trip.
    pub took_us: u64,
}

/// What a [`Hop`] was. Tagged by `step` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "camelCase")]
pub enum Step {
    /// The balancer received the request and handed it to `server` (its name for the replica).
    Handoff { server: String },
    /// One statement on `database` (`postgresql`, `sqlite`): its kind (`SELECT`, `INSERT`,
    /// `DELETE`, `LOCK`, `COMMIT`), the table it is about (empty for none), and the rows it
    /// read or wrote.
    #[serde(rename_all = "camelCase")]
    Query { database: String, statement: String, table: String, rows: u64 },
    /// Hops of this exchange past the bound a node keeps per exchange, not recorded.
    Dropped { count: u64 },
}

impl Step {
    /// The lane a hop leaves from, and the one it reaches, given the node that served it.
    pub fn lanes<'a>(&'a self, node: &'a str) -> (&'a str, &'a str) {
        match self {
            Step::Handoff { .. } => (BALANCER_LANE, node),
            Step::Query { database, .. } => (node, database),
            Step::Dropped { .. } => (node, node),
        }
    }

    /// One line: `hand-off to replica-2`, `SELECT transcripts · 3 rows`.
    pub fn describe(&self) -> String {
        match self {
            Step::Handoff { server } => format!("hand-off to {server}"),
            Step::Query { statement, table, rows, .. } => {
                let on = if table.is_empty() { String::new() } else { format!(" {table}") };
                let s = if *rows == 1 { "" } else { "s" };
                format!("{statement}{on} · {rows} row{s}")
            }
            Step::Dropped { count } => format!("{count} more steps not recorded"),
        }
    }
}

/// The lane of a cluster's balancer in the inside view.
pub const BALANCER_LANE: &str = "balancer";

/// Screens following the log (`/ws/observe`): how many, and how many came and went since the
/// last presence event (merged: at most one per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub observers: u32,
    pub joined: u32,
    pub left: u32,
}

/// One HTTP header as it travelled (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// A message body as recorded: its full size, and a preview cut at the recorder's limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    /// Full size in bytes.
    pub size: u64,
    /// The first bytes as text, when they are UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The first bytes as lower-case hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// True when the preview holds fewer bytes than `size`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Body {
    /// Records `bytes`, keeping at most `limit` of them as the preview.
    pub fn capture(bytes: &[u8], limit: usize) -> Self {
        let cut = bytes.len().min(limit);
        let head = &bytes[..cut];
        let (text, hex) = match std::str::from_utf8(head) {
            Ok(s) => (Some(s.to_owned()), None),
            // A cut may split a multi-byte character: keep the valid prefix as text.
            Err(e) if cut < bytes.len() && e.error_len().is_none() => {
                (Some(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()), None)
            }
            Err(_) => (None, Some(head.iter().map(|b| format!("{b:02x}")).collect())),
        };
        Self { size: bytes.len() as u64, text, hex, truncated: cut < bytes.len() }
    }

    /// A text body, previewed whole.
    pub fn text(s: &str) -> Self {
        Self::capture(s.as_bytes(), usize::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub status: u16,
    /// The body is a stream (e.g. Server-Sent Events): recorded when the headers left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streaming: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
}

/// The HTTP request that asks to switch to WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsUpgrade {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

/// The server's answer to an Upgrade request: 101 Switching Protocols when accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsAccept {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

/// WebSocket frame opcodes (RFC 6455 §5.2); `close` frames are [`WsClose`] events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Opcode {
    Text,
    Binary,
    Continuation,
    Ping,
    Pong,
}

impl Opcode {
    /// Its name as RFC 6455 writes it (and the JSON does).
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Text => "text",
            Opcode::Binary => "binary",
            Opcode::Continuation => "continuation",
            Opcode::Ping => "ping",
            Opcode::Pong => "pong",
        }
    }

    /// Control frames (ping, pong) as opposed to data frames.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Ping | Opcode::Pong)
    }
}

/// One WebSocket data or control frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsFrame {
    pub from: Side,
    pub opcode: Opcode,
    pub fin: bool,
    pub payload: Body,
}

/// A close frame, or the end of a connection without one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsClose {
    /// The end that sent the close frame, or the end that noticed the connection die.
    pub from: Side,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<CloseInfo>,
    /// False when the connection ended without a close handshake (code 1006).
    pub clean: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInfo {
    pub code: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A message that never reached the other end: a request that got no answer (network error,
/// refused connection), or a WebSocket that could not be opened. Drawn as an arrow ending in ✕.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The end whose message was lost.
    pub from: Side,
    pub message: String,
}

/// The registered meaning of a WebSocket close code (RFC 6455 §7.4.1 and the IANA registry).
pub fn close_code_meaning(code: u16) -> &'static str {
    match code {
        1000 => "Normal Closure",
        1001 => "Going Away",
        1002 => "Protocol Error",
        1003 => "Unsupported Data",
        1005 => "No Status Received",
        1006 => "Abnormal Closure",
        1007 => "Invalid Payload Data",
        1008 => "Policy Violation",
        1009 => "Message Too Big",
        1010 => "Mandatory Extension",
        1011 => "Internal Error",
        1012 => "Service Restart",
        1013 => "Try Again Later",
        1014 => "Bad Gateway",
        1015 => "TLS Handshake",
        3000..=3999 => "Registered",
        4000..=4999 => "Application-defined",
        _ => "Unknown",
    }
}

/// The reason phrase of an HTTP status code (RFC 9110 and friends).
pub fn status_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        let at = Stamps { client_us: Some(1_700_000_000_000_000), server_us: None };
        let ev = |seq, kind| Event {
            node: String::new(),
            seq,
            client: "c-1".into(),
            exchange: 7,
            client_ref: Some(3),
            cause: None,
            at,
            kind,
        };
        vec![
            ev(
                1,
                EventKind::HttpRequest(HttpRequest {
                    method: "GET".into(),
                    path: "/api/health".into(),
                    query: None,
                    headers: vec![Header::new("accept", "application/json")],
                    body: None,
                }),
            ),
            ev(
                2,
                EventKind::HttpResponse(HttpResponse {
                    status: 200,
                    streaming: false,
                    headers: vec![],
                    body: Some(Body::text("{}")),
                }),
            ),
            ev(
                3,
                EventKind::WsUpgrade(WsUpgrade {
                    path: "/ws/echo".into(),
                    query: Some("client=c-1".into()),
                    headers: vec![],
                }),
            ),
            ev(4, EventKind::WsAccept(WsAccept { status: 101, headers: vec![] })),
            ev(
                5,
                EventKind::WsFrame(WsFrame {
                    from: Side::Server,
                    opcode: Opcode::Binary,
                    fin: true,
                    payload: Body::capture(&[0, 159, 146], 64),
                }),
            ),
            ev(
                6,
                EventKind::WsClose(WsClose {
                    from: Side::Client,
                    close: Some(CloseInfo { code: 1000, reason: "bye".into() }),
                    clean: true,
                }),
            ),
        ]
    }

    #[test]
    fn events_round_trip_through_json() {
        for ev in sample() {
            let json = serde_json::to_string(&ev).unwrap();
            let back: Event = serde_json::from_str(&json).unwrap();
            assert_eq!(back, ev, "{json}");
        }
    }

    #[test]
    fn event_json_is_flat_and_tagged_by_kind() {
        let json = serde_json::to_value(&sample()[1]).unwrap();
        assert_eq!(json["kind"], "httpResponse");
        assert_eq!(json["status"], 200);
        assert_eq!(json["seq"], 2);
        assert_eq!(json["at"]["clientUs"], 1_700_000_000_000_000i64);
        assert!(json["at"].get("serverUs").is_none());
    }

    #[test]
    fn direction_follows_the_kind() {
        let sides: Vec<Side> = sample().iter().map(|e| e.kind.from()).collect();
        use Side::*;
        assert_eq!(sides, [Client, Server, Client, Server, Server, Client]);
        assert_eq!(Client.peer(), Server);
    }

    #[test]
    fn body_capture_previews_text_and_hex() {
        let b = Body::capture(b"hello world", 5);
        assert_eq!((b.size, b.text.as_deref(), b.truncated), (11, Some("hello"), true));
        let b = Body::capture(&[0xff, 0x00, 0x10], 64);
        assert_eq!((b.text, b.hex.as_deref(), b.truncated), (None, Some("ff0010"), false));
        // "é" is two bytes; a cut after the first keeps the text before it.
        let b = Body::capture("aé".as_bytes(), 2);
        assert_eq!((b.text.as_deref(), b.truncated, b.size), (Some("a"), true, 3));
    }

    #[test]
    fn codes_have_meanings() {
        assert_eq!(close_code_meaning(1000), "Normal Closure");
        assert_eq!(close_code_meaning(4000), "Application-defined");
        assert_eq!(status_reason(101), "Switching Protocols");
        assert_eq!(status_reason(422), "Unprocessable Content");
        assert_eq!(status_reason(799), "");
    }
}
