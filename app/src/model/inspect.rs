//! The inspector's content: every captured field of an event and of its exchange, as plain
//! sections of rows.

use protocol::event::close_code_meaning;
use protocol::{Body, EventKind, Header, Side, Step};

use super::describe::{label, status_line, status_meaning};
use super::layout::{client_title, lane_title, transit_us};
use super::time;
use super::timeline::{Item, ItemKey, Timeline};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub title: String,
    pub rows: Vec<(String, String)>,
    /// A body, pretty-printed when it is JSON.
    pub body: Option<String>,
}

impl Section {
    fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), ..Self::default() }
    }

    fn row(&mut self, k: &str, v: impl Into<String>) {
        let v = v.into();
        if !v.is_empty() {
            self.rows.push((k.to_owned(), v));
        }
    }
}

/// A body's preview for reading: pretty JSON when it parses, else the text or hex.
pub fn pretty(body: &Body) -> String {
    match (&body.text, &body.hex) {
        (Some(t), _) => match serde_json::from_str::<serde_json::Value>(t) {
            Ok(v) if !body.truncated => serde_json::to_string_pretty(&v).unwrap_or_else(|_| t.clone()),
            _ => t.clone(),
        },
        (None, Some(h)) => h
            .as_bytes()
            .chunks(32)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        (None, None) => String::new(),
    }
}

fn size(body: &Body) -> String {
    let cut = if body.truncated { " (preview cut)" } else { "" };
    format!("{} bytes{cut}", body.size)
}

fn headers(section: &mut Section, hs: &[Header]) {
    for h in hs {
        section.rows.push((h.name.clone(), h.value.clone()));
    }
}

fn message(item: &Item) -> Section {
    let ev = &item.event;
    let (text, _) = label(&ev.kind);
    let mut s = Section::new(text);
    match &ev.kind {
        EventKind::HttpRequest(r) => {
            s.row("method", r.method.clone());
            s.row("path", r.path.clone());
            s.row("query", r.query.clone().unwrap_or_default());
            if let Some(b) = &r.body {
                s.row("body", size(b));
                s.body = Some(pretty(b));
            }
            let mut h = Section::new("request headers");
            headers(&mut h, &r.headers);
            s.rows.extend(h.rows.into_iter().map(|(k, v)| (format!("› {k}"), v)));
        }
        EventKind::HttpResponse(r) => {
            s.row("status", status_line(r.status));
            s.row("meaning", status_meaning(r.status));
            if r.streaming {
                s.row("body", "a stream (recorded when the headers left)");
            }
            if let Some(b) = &r.body {
                s.row("body", size(b));
                s.body = Some(pretty(b));
            }
            s.rows.extend(r.headers.iter().map(|h| (format!("‹ {}", h.name), h.value.clone())));
        }
        EventKind::WsUpgrade(u) => {
            s.row("path", u.path.clone());
            s.row("query", u.query.clone().unwrap_or_default());
            s.rows.extend(u.headers.iter().map(|h| (format!("› {}", h.name), h.value.clone())));
        }
        EventKind::WsAccept(a) => {
            s.row("status", status_line(a.status));
            s.row("meaning", status_meaning(a.status));
            s.rows.extend(a.headers.iter().map(|h| (format!("‹ {}", h.name), h.value.clone())));
        }
        EventKind::WsFrame(f) => {
            s.row("opcode", f.opcode.name());
            s.row("FIN", if f.fin { "1 (last frame of the message)" } else { "0 (more frames follow)" });
            s.row("payload", size(&f.payload));
            s.body = Some(pretty(&f.payload));
        }
        EventKind::WsClose(c) => match (&c.close, c.clean) {
            (Some(info), true) => {
                s.row("code", format!("{} {}", info.code, close_code_meaning(info.code)));
                s.row("reason", info.reason.clone());
                s.row("closed by", if c.from == Side::Client { "the client" } else { "the server" });
            }
            (_, false) => {
                s.row("code", "1006 Abnormal Closure (no close frame: the connection was cut)");
                s.row(
                    "noticed by",
                    if c.from == Side::Client { "the client going away" } else { "the server" },
                );
            }
            (None, true) => s.row("code", "none given (1005 No Status Received)"),
        },
        EventKind::Failure(f) => {
            s.row("what", f.message.clone());
            s.row(
                "meaning",
                "No answer came back: the message never arrived, or the connection broke first.",
            );
        }
        EventKind::Note(n) => s.row("what", n.text.clone()),
        EventKind::Hop(h) => {
            let (from, to) = h.step.lanes(&ev.node);
            s.row("from", lane_title(from));
            s.row("to", lane_title(to));
            match &h.step {
                Step::Handoff { server } => {
                    s.row("what", format!("the balancer chose {server} for this request and handed it on"));
                    s.row(
                        "took",
                        format!(
                            "{} (from the balancer's receipt to the replica's)",
                            time::duration(h.took_us as i64)
                        ),
                    );
                }
                Step::Query { database, statement, table, rows } => {
                    s.row("database", lane_title(database));
                    s.row("statement", statement.clone());
                    s.row("table", table.clone());
                    s.row("rows", rows.to_string());
                    s.row("took", time::duration(h.took_us as i64));
                }
                Step::Dropped { count } => {
                    s.row(
                        "what",
                        format!("{count} more steps of this exchange, past what a node keeps per exchange"),
                    );
                }
            }
            s.row("meaning", "A step inside the system: the client never sees it, only the time it adds.");
        }
        EventKind::Client(_) | EventKind::Presence(_) => {}
    }
    s
}

/// Everything about the item `key`, with the other messages of its exchange (for an HTTP
/// exchange: request and response together).
pub fn inspect(t: &Timeline, key: ItemKey, utc_offset_min: i32) -> Vec<Section> {
    let Some(item) = t.get(key) else { return Vec::new() };
    let ev = &item.event;
    let offset = &t.offset;
    let mut who = Section::new("who");
    let info = t.client(&ev.client);
    let mine = ev.client == t.me();
    who.row(
        "client",
        if mine {
            format!("this browser ({})", ev.client)
        } else {
            format!("{} ({})", client_title(t, &ev.client), ev.client)
        },
    );
    if let Some(i) = info {
        // The address and user agent reach only the instructor, and not through the log.
        if let Some(agent) = &i.agent {
            who.row("kind", agent.clone());
        }
        if let Some(addr) = &i.addr {
            who.row("address", addr.clone());
        }
        if let Some(ua) = &i.user_agent {
            who.row("user agent", ua.clone());
        }
    }
    who.row("direction", if ev.kind.from() == Side::Client { "client → server" } else { "server → client" });
    who.row(
        "seq",
        if item.is_local() { "— (seen by this browser only)".to_owned() } else { ev.seq.to_string() },
    );
    who.row("exchange", exchange_label(ev.exchange));
    if !ev.node.is_empty() {
        who.row("server node", ev.node.clone());
    }

    let mut timing = Section::new("timing");
    if let Some(c) = ev.at.client_us {
        timing.row("browser clock", time::clock(c, utc_offset_min));
    }
    if let Some(s) = ev.at.server_us {
        timing.row("server clock", time::clock(s, utc_offset_min));
    }
    if let Some(us) = transit_us(item, offset) {
        timing.row(
            "transit",
            format!("{} (clock offset ±{})", time::duration(us), time::duration(offset.error_us)),
        );
    }

    let partners: Vec<&Item> = t
        .items()
        .iter()
        .filter(|i| {
            i.event.exchange == ev.exchange && i.event.client == ev.client && i.is_local() == item.is_local()
        })
        .filter(|i| matches!(i.event.kind, EventKind::HttpRequest(_) | EventKind::HttpResponse(_)))
        .collect();
    let mut sections = vec![message(item)];
    if matches!(ev.kind, EventKind::HttpRequest(_) | EventKind::HttpResponse(_)) {
        for p in &partners {
            if p.key != key {
                sections.push(message(p));
            }
        }
        if let [a, b] = partners[..] {
            if let (Some(s0), Some(s1)) = (a.event.at.server_us, b.event.at.server_us) {
                timing.row("server time", time::duration(s1 - s0));
            }
            if let (Some(c0), Some(c1)) = (a.event.at.client_us, b.event.at.client_us) {
                timing.row("round trip", time::duration(c1 - c0));
            }
        }
    }
    sections.push(timing);
    sections.push(who);
    sections.retain(|s| !s.rows.is_empty() || s.body.is_some());
    sections
}

/// An exchange id as people read it. A cluster's replicas number their exchanges from their
/// start number times 2³², so ids never collide across replicas: shown as `start·n`.
pub fn exchange_label(id: u64) -> String {
    match id >> 32 {
        0 => id.to_string(),
        start => format!("{start}·{}", id & 0xffff_ffff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ClientInfo, Event, HttpRequest, HttpResponse, Stamps, WsFrame};

    #[test]
    fn a_replicas_exchange_ids_read_as_its_start_and_number() {
        assert_eq!(exchange_label(17), "17");
        assert_eq!(exchange_label((3 << 32) + 17), "3·17");
        assert_eq!(exchange_label(1 << 32), "1·0");
    }

    fn add(t: &mut Timeline, seq: u64, client_us: i64, server_us: i64, kind: EventKind) {
        t.add_server(Event {
            node: "replica-2".into(),
            seq,
            client: "c-ana".into(),
            exchange: 4,
            client_ref: None,
            cause: None,
            at: Stamps { client_us: Some(client_us), server_us: Some(server_us) },
            kind,
        });
    }

    #[test]
    fn an_exchange_shows_request_and_response_headers_bodies_and_timing() {
        let mut t = Timeline::new("me", 10);
        t.add_server(Event {
            node: String::new(),
            seq: 1,
            client: "c-ana".into(),
            exchange: 0,
            client_ref: None,
            cause: None,
            at: Stamps::default(),
            kind: EventKind::Client(ClientInfo {
                nickname: Some("Ana".into()),
                agent: Some("browser".into()),
                ..ClientInfo::default()
            }),
        });
        let req = HttpRequest {
            method: "POST".into(),
            path: "/transcripts".into(),
            query: None,
            headers: vec![Header::new("content-type", "application/json")],
            body: Some(Body::text(r#"{"studentName":"dana"}"#)),
        };
        add(&mut t, 2, 1_000, 1_500, EventKind::HttpRequest(req));
        let res = HttpResponse {
            status: 422,
            streaming: false,
            headers: vec![],
            body: Some(Body::text(r#"{"message":"Validation Failed"}"#)),
        };
        add(&mut t, 3, 2_900, 1_900, EventKind::HttpResponse(res));
        let s = inspect(&t, ItemKey::Seq(3), 0);
        let titles: Vec<&str> = s.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["422 Unprocessable Content", "POST /transcripts", "timing", "who"]);
        assert!(s[0].rows.contains(&("meaning".into(), status_meaning(422).into())));
        assert_eq!(s[0].body.as_deref(), Some("{\n  \"message\": \"Validation Failed\"\n}"));
        assert!(s[1].rows.contains(&("› content-type".into(), "application/json".into())));
        assert!(s[1].body.as_deref().unwrap().contains("\"studentName\": \"dana\""));
        assert!(s[2].rows.contains(&("server time".into(), "0.4 ms".into())));
        assert!(s[2].rows.contains(&("round trip".into(), "1.9 ms".into())));
        assert!(s[3].rows.contains(&("server node".into(), "replica-2".into())), "the replica that saw it");
        assert!(s[3].rows.contains(&("client".into(), "Ana (c-ana)".into())));
        assert!(s[3].rows.contains(&("kind".into(), "browser".into())));
        assert!(
            !s[3].rows.iter().any(|(k, _)| k == "address"),
            "no address reaches a screen through the log"
        );
    }

    #[test]
    fn frames_show_opcode_fin_and_payload() {
        let mut t = Timeline::new("me", 10);
        let f = WsFrame {
            from: Side::Server,
            opcode: protocol::Opcode::Binary,
            fin: false,
            payload: Body::capture(&[1, 2, 255], 8),
        };
        add(&mut t, 1, 0, 0, EventKind::WsFrame(f));
        let s = inspect(&t, ItemKey::Seq(1), 0);
        assert!(s[0].rows.contains(&("opcode".into(), "binary".into())));
        assert!(s[0].rows.iter().any(|(k, v)| k == "FIN" && v.starts_with('0')));
        assert_eq!(s[0].body.as_deref(), Some("0102ff"));
        assert!(inspect(&t, ItemKey::Seq(99), 0).is_empty());
    }
}
