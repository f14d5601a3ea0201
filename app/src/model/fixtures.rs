//! Events for the model's unit tests.

use protocol::{Event, EventKind, HttpRequest, HttpResponse, Stamps};

/// `GET path`, no headers, no body.
pub fn req(path: &str) -> EventKind {
    EventKind::HttpRequest(HttpRequest {
        method: "GET".into(),
        path: path.into(),
        query: None,
        headers: vec![],
        body: None,
    })
}

/// A response with `status`, no headers, no body.
pub fn res(status: u16) -> EventKind {
    EventKind::HttpResponse(HttpResponse { status, streaming: false, headers: vec![], body: None })
}

/// An event as the server recorded it at `server_us` (no client time, no cause).
pub fn event(seq: u64, client: &str, exchange: u64, server_us: Option<i64>, kind: EventKind) -> Event {
    Event {
        node: String::new(),
        seq,
        client: client.into(),
        exchange,
        client_ref: None,
        cause: None,
        at: Stamps { client_us: None, server_us },
        kind,
    }
}
