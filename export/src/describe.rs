//! Words for events: the label on an arrow and the tone it is drawn in.

use protocol::event::{close_code_meaning, status_reason};
use protocol::{Body, EventKind, Opcode};

/// How an arrow is coloured; one CSS class each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// An HTTP request or Upgrade request.
    Request,
    /// 1xx/2xx/3xx answers, 101 included.
    Success,
    /// 4xx answers.
    ClientError,
    /// 5xx answers.
    ServerError,
    /// WebSocket data frames.
    Frame,
    /// WebSocket ping/pong.
    Control,
    /// Close frames.
    Close,
    /// Something that never arrived: a failed request, a connection cut without a close.
    Lost,
    /// A step inside the system (the balancer's hand-off, a database statement).
    Inside,
}

impl Tone {
    pub const ALL: [Tone; 9] = [
        Tone::Request,
        Tone::Success,
        Tone::ClientError,
        Tone::ServerError,
        Tone::Frame,
        Tone::Control,
        Tone::Close,
        Tone::Lost,
        Tone::Inside,
    ];

    pub fn class(self) -> &'static str {
        match self {
            Tone::Request => "tone-request",
            Tone::Success => "tone-success",
            Tone::ClientError => "tone-client-error",
            Tone::ServerError => "tone-server-error",
            Tone::Frame => "tone-frame",
            Tone::Control => "tone-control",
            Tone::Close => "tone-close",
            Tone::Lost => "tone-lost",
            Tone::Inside => "tone-inside",
        }
    }
}

fn status_tone(status: u16) -> Tone {
    match status {
        500.. => Tone::ServerError,
        400..=499 => Tone::ClientError,
        _ => Tone::Success,
    }
}

/// `200 OK`, or just `799` for a status without a registered phrase.
pub fn status_line(status: u16) -> String {
    match status_reason(status) {
        "" => status.to_string(),
        reason => format!("{status} {reason}"),
    }
}

/// A body's preview in one line: quoted text or hex, with an ellipsis when cut.
pub fn preview(body: &Body, max_chars: usize) -> String {
    let (s, quoted) = match (&body.text, &body.hex) {
        (Some(t), _) => (t.replace(['\n', '\r', '\t'], " "), true),
        (None, Some(h)) => (h.clone(), false),
        (None, None) => (String::new(), false),
    };
    let mut out: String = s.chars().take(max_chars).collect();
    let cut = body.truncated || s.chars().count() > max_chars;
    if cut {
        out.push('…');
    }
    if quoted { format!("\"{out}\"") } else { out }
}

/// A typed protocol message (`{"type": NAME, "data": …}`) in a few words: `ping {"n":1}`.
fn typed(body: &Body) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body.text.as_deref()?).ok()?;
    let name = v.get("type")?.as_str()?;
    let data = match v.get("data") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(d) => {
            let s = d.to_string();
            let short: String = s.chars().take(36).collect();
            if short.len() < s.len() { format!(" {short}…") } else { format!(" {s}") }
        }
    };
    Some(format!("{name}{data}"))
}

/// The label drawn on an event's arrow, and its tone.
pub fn label(kind: &EventKind) -> (String, Tone) {
    match kind {
        EventKind::HttpRequest(r) => {
            let q = r.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
            (format!("{} {}{q}", r.method, r.path), Tone::Request)
        }
        EventKind::HttpResponse(r) => (status_line(r.status), status_tone(r.status)),
        EventKind::WsUpgrade(u) => (format!("GET {} · Upgrade: websocket", u.path), Tone::Request),
        EventKind::WsAccept(a) => (status_line(a.status), status_tone(a.status)),
        EventKind::WsFrame(f) => match f.opcode {
            Opcode::Text => (
                typed(&f.payload).unwrap_or_else(|| format!("text {}", preview(&f.payload, 40))),
                Tone::Frame,
            ),
            Opcode::Binary => (format!("binary {} B", f.payload.size), Tone::Frame),
            Opcode::Continuation => (format!("continuation {} B", f.payload.size), Tone::Frame),
            Opcode::Ping => ("ping".to_owned(), Tone::Control),
            Opcode::Pong => ("pong".to_owned(), Tone::Control),
        },
        EventKind::WsClose(c) => match (&c.close, c.clean) {
            (_, false) => ("connection lost · 1006 Abnormal Closure".to_owned(), Tone::Lost),
            (Some(info), true) => {
                let reason =
                    if info.reason.is_empty() { String::new() } else { format!(" \"{}\"", info.reason) };
                (format!("Close {} {}{reason}", info.code, close_code_meaning(info.code)), Tone::Close)
            }
            (None, true) => ("Close (no code)".to_owned(), Tone::Close),
        },
        EventKind::Failure(f) => (format!("✕ {}", f.message), Tone::Lost),
        EventKind::Client(c) => {
            (format!("client {}", c.nickname.as_deref().unwrap_or("seen")), Tone::Control)
        }
        EventKind::Presence(p) => (format!("{} observers", p.observers), Tone::Control),
        EventKind::Note(n) => (format!("⚡ {}", n.text), Tone::Lost),
        EventKind::Hop(h) => (h.step.describe(), Tone::Inside),
    }
}

/// What a status code means, in one sentence a student can read aloud.
pub fn status_meaning(status: u16) -> &'static str {
    match status {
        101 => "The server agreed to switch this connection to another protocol (here: WebSocket).",
        200 => "The request succeeded; the answer is in the body.",
        201 => "The request succeeded and created something new.",
        204 => "The request succeeded; there is nothing to send back.",
        304 => "Nothing changed since the copy the client already has.",
        400 => "The server refused the request: something in it is wrong (see details).",
        401 => "The request needs credentials.",
        403 => "The server understood, but this client may not do that.",
        404 => "Nothing lives at this path.",
        405 => "This path exists but does not accept this method (see Allow).",
        413 => "The body is too large.",
        415 => "The body is in a format the server does not accept.",
        422 => "The request was well-formed, but its content failed validation.",
        426 => "This endpoint only speaks WebSocket: the client must ask to upgrade.",
        429 => "Too many requests: slow down and retry later (see Retry-After).",
        500 => "The server failed while handling the request.",
        503 => "The server cannot handle the request right now.",
        _ => match status / 100 {
            1 => "Informational.",
            2 => "Success.",
            3 => "Redirection: the answer is elsewhere.",
            4 => "The client made a mistake.",
            _ => "The server failed.",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{
        CloseInfo, Failure, HttpRequest, HttpResponse, Side, WsAccept, WsClose, WsFrame, WsUpgrade,
    };

    #[test]
    fn http_labels() {
        let req = EventKind::HttpRequest(HttpRequest {
            method: "GET".into(),
            path: "/studentids".into(),
            query: Some("name=blake".into()),
            headers: vec![],
            body: None,
        });
        assert_eq!(label(&req), ("GET /studentids?name=blake".to_owned(), Tone::Request));
        let ok = EventKind::HttpResponse(HttpResponse {
            status: 200,
            streaming: false,
            headers: vec![],
            body: None,
        });
        assert_eq!(label(&ok), ("200 OK".to_owned(), Tone::Success));
        let bad = EventKind::HttpResponse(HttpResponse {
            status: 422,
            streaming: false,
            headers: vec![],
            body: None,
        });
        assert_eq!(label(&bad).1, Tone::ClientError);
        let boom = EventKind::HttpResponse(HttpResponse {
            status: 503,
            streaming: false,
            headers: vec![],
            body: None,
        });
        assert_eq!(label(&boom), ("503 Service Unavailable".to_owned(), Tone::ServerError));
    }

    #[test]
    fn websocket_labels() {
        let up = EventKind::WsUpgrade(WsUpgrade { path: "/ws/echo".into(), query: None, headers: vec![] });
        assert_eq!(label(&up).0, "GET /ws/echo · Upgrade: websocket");
        let acc = EventKind::WsAccept(WsAccept { status: 101, headers: vec![] });
        assert_eq!(label(&acc), ("101 Switching Protocols".to_owned(), Tone::Success));
        let frame =
            |opcode, payload| EventKind::WsFrame(WsFrame { from: Side::Client, opcode, fin: true, payload });
        assert_eq!(label(&frame(Opcode::Text, Body::text("hi\nthere"))).0, "text \"hi there\"");
        let typed = Body::text(r#"{"type":"ping","data":{"n":1},"seq":6,"atUs":5}"#);
        assert_eq!(label(&frame(Opcode::Text, typed)).0, r#"ping {"n":1}"#);
        let long =
            Body::text(r#"{"type":"chat","data":{"room":"lecture","text":"a very long message indeed"}}"#);
        assert_eq!(label(&frame(Opcode::Text, long)).0, r#"chat {"room":"lecture","text":"a very lon…"#);
        assert_eq!(label(&frame(Opcode::Binary, Body::capture(&[1, 2, 3], 8))).0, "binary 3 B");
        assert_eq!(label(&frame(Opcode::Ping, Body::default())), ("ping".to_owned(), Tone::Control));
        let close = EventKind::WsClose(WsClose {
            from: Side::Client,
            close: Some(CloseInfo { code: 1000, reason: "done".into() }),
            clean: true,
        });
        assert_eq!(label(&close), ("Close 1000 Normal Closure \"done\"".to_owned(), Tone::Close));
        let cut = EventKind::WsClose(WsClose { from: Side::Server, close: None, clean: false });
        assert_eq!(label(&cut).1, Tone::Lost);
        let failed = EventKind::Failure(Failure { from: Side::Client, message: "no answer".into() });
        assert_eq!(label(&failed), ("✕ no answer".to_owned(), Tone::Lost));
    }

    #[test]
    fn previews_are_cut_with_an_ellipsis() {
        assert_eq!(preview(&Body::text("abcdef"), 3), "\"abc…\"");
        assert_eq!(preview(&Body::capture(b"abcdef", 2), 10), "\"ab…\"");
        assert_eq!(preview(&Body::capture(&[0xff, 0xfe], 8), 10), "fffe");
        assert_eq!(preview(&Body::text("é😀x"), 2), "\"é😀…\"");
    }
}
