//! Events for the model's unit tests.

use protocol::{EventKind, HttpRequest, HttpResponse};

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
