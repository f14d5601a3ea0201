//! Exports of what the diagram shows, and imports for replay: a JSON trace (wirescope's own,
//! byte-identical after a round trip), HAR 1.2 (with `_webSocketMessages`, as Chromium writes
//! it), Mermaid `sequenceDiagram` text, and a standalone SVG of the current view.

use std::collections::BTreeMap;

use protocol::event::{close_code_meaning, status_reason};
use protocol::{
    Body, Event, EventKind, Header, HttpRequest, HttpResponse, Opcode, Side, Stamps, WsAccept, WsFrame,
    WsUpgrade,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::describe::{label, status_meaning};
use super::layout::{Diagram, client_title};
use super::time::{iso, parse_iso};
use super::timeline::{Item, Timeline};

/// The JSON trace format.
pub const TRACE_FORMAT: &str = "wirescope-trace";
pub const TRACE_VERSION: u32 = 1;
/// Mermaid's default `maxTextSize`.
pub const MERMAID_LIMIT: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub format: String,
    pub version: u32,
    /// This browser's client id when it was recorded (its lane is "This browser").
    pub me: String,
    /// Names of the lanes (client id → nickname).
    pub names: BTreeMap<String, String>,
    pub events: Vec<Event>,
}

/// The trace of `items` (in display order), as pretty JSON.
pub fn trace(t: &Timeline, items: &[&Item]) -> String {
    let names = t
        .client_order()
        .filter_map(|c| t.client(c).and_then(|i| i.nickname.clone()).map(|n| (c.to_owned(), n)))
        .collect();
    let trace = Trace {
        format: TRACE_FORMAT.to_owned(),
        version: TRACE_VERSION,
        me: t.me().to_owned(),
        names,
        events: items.iter().map(|i| i.event.clone()).collect(),
    };
    let mut s = serde_json::to_string_pretty(&trace).unwrap_or_default();
    s.push('\n');
    s
}

/// Reads a trace (or a HAR file) into a timeline for replay.
pub fn import(text: &str) -> Result<Timeline, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("log").is_some() {
        return import_har(&v);
    }
    let trace: Trace = serde_json::from_value(v).map_err(|e| format!("not a wirescope trace: {e}"))?;
    if trace.format != TRACE_FORMAT || trace.version > TRACE_VERSION {
        return Err(format!("unknown trace format {} v{}", trace.format, trace.version));
    }
    let names = trace.names.into_iter().collect();
    Ok(Timeline::replay(trace.me, names, trace.events))
}

fn headers_json(hs: &[Header]) -> Value {
    Value::Array(hs.iter().map(|h| json!({"name": h.name, "value": h.value})).collect())
}

fn body_text(b: &Option<Body>) -> Option<String> {
    b.as_ref().and_then(|b| b.text.clone())
}

fn mime(hs: &[Header]) -> String {
    hs.iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map_or("application/octet-stream".to_owned(), |h| h.value.clone())
}

fn time_of(e: &Event) -> i64 {
    e.at.client_us.or(e.at.server_us).unwrap_or(0)
}

/// HAR 1.2 of the HTTP exchanges and WebSocket connections among `items`. `origin` makes the
/// URLs absolute (`http://127.0.0.1:8081`).
pub fn har(items: &[&Item], origin: &str) -> String {
    // Group by (client, exchange, locality), keeping first-seen order.
    let mut order: Vec<(String, u64, bool)> = Vec::new();
    let mut groups: BTreeMap<(String, u64, bool), Vec<&Event>> = BTreeMap::new();
    for i in items {
        let k = (i.event.client.clone(), i.event.exchange, i.is_local());
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(&i.event);
    }
    let mut entries = Vec::new();
    for k in order {
        let evs = &groups[&k];
        let req = evs.iter().find_map(|e| match &e.kind {
            EventKind::HttpRequest(r) => Some((
                *e,
                r.method.clone(),
                r.path.clone(),
                r.query.clone(),
                r.headers.clone(),
                r.body.clone(),
                false,
            )),
            EventKind::WsUpgrade(u) => {
                Some((*e, "GET".to_owned(), u.path.clone(), u.query.clone(), u.headers.clone(), None, true))
            }
            _ => None,
        });
        let Some((first, method, path, query, req_headers, req_body, ws)) = req else { continue };
        let url = match &query {
            Some(q) => format!("{origin}{path}?{q}"),
            None => format!("{origin}{path}"),
        };
        let query_string: Vec<Value> = query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (n, v) = kv.split_once('=').unwrap_or((kv, ""));
                json!({"name": n, "value": v})
            })
            .collect();
        let res = evs.iter().find_map(|e| match &e.kind {
            EventKind::HttpResponse(r) => Some((*e, r.status, r.headers.clone(), r.body.clone())),
            EventKind::WsAccept(a) => Some((*e, a.status, a.headers.clone(), None)),
            _ => None,
        });
        let started = time_of(first);
        let (status, res_headers, res_body, wait_ms) = match &res {
            Some((e, status, h, b)) => {
                (*status, h.clone(), b.clone(), ((time_of(e) - started).max(0) as f64) / 1000.0)
            }
            None => (0, Vec::new(), None, 0.0),
        };
        let mut request = json!({
            "method": method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": headers_json(&req_headers),
            "queryString": query_string,
            "headersSize": -1,
            "bodySize": req_body.as_ref().map_or(0, |b| b.size as i64),
        });
        if let Some(text) = body_text(&req_body) {
            request["postData"] = json!({"mimeType": mime(&req_headers), "text": text});
        }
        let mut content =
            json!({"size": res_body.as_ref().map_or(0, |b| b.size as i64), "mimeType": mime(&res_headers)});
        if let Some(text) = body_text(&res_body) {
            content["text"] = Value::from(text);
        }
        let mut entry = json!({
            "startedDateTime": iso(started),
            "time": wait_ms,
            "request": request,
            "response": {
                "status": status,
                "statusText": status_reason(status),
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": headers_json(&res_headers),
                "content": content,
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": res_body.as_ref().map_or(-1, |b| b.size as i64),
            },
            "cache": {},
            "timings": {"send": 0, "wait": wait_ms, "receive": 0},
        });
        if ws {
            entry["_resourceType"] = Value::from("websocket");
            let messages: Vec<Value> = evs
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::WsFrame(f) if !f.opcode.is_control() => Some(json!({
                        "type": if f.from == Side::Client { "send" } else { "receive" },
                        "time": time_of(e) as f64 / 1e6,
                        "opcode": if f.opcode == Opcode::Binary { 2 } else { 1 },
                        "data": f.payload.text.clone().or_else(|| f.payload.hex.clone()).unwrap_or_default(),
                    })),
                    _ => None,
                })
                .collect();
            entry["_webSocketMessages"] = Value::Array(messages);
        }
        entries.push(entry);
    }
    let har = json!({"log": {
        "version": "1.2",
        "creator": {"name": "wirescope", "version": env!("CARGO_PKG_VERSION")},
        "pages": [],
        "entries": entries,
    }});
    serde_json::to_string_pretty(&har).unwrap_or_default()
}

fn har_headers(v: &Value) -> Vec<Header> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|h| Header::new(h["name"].as_str().unwrap_or(""), h["value"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// A HAR file's entries as events, for replay.
fn import_har(v: &Value) -> Result<Timeline, String> {
    let entries = v["log"]["entries"].as_array().ok_or("a HAR file has log.entries")?;
    let mut events = Vec::new();
    let lane = "har".to_owned();
    for (n, e) in entries.iter().enumerate() {
        let exchange = n as u64 + 1;
        let started = e["startedDateTime"].as_str().and_then(parse_iso).unwrap_or(0);
        let wait = (e["time"].as_f64().unwrap_or(0.0) * 1000.0) as i64;
        let url = e["request"]["url"].as_str().unwrap_or("/");
        let after_host = url.find("://").map_or(url, |i| &url[i + 3..]);
        let path_query = after_host.find('/').map_or("/", |i| &after_host[i..]);
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path_query.to_owned(), None),
        };
        let at = |us: i64| Stamps { client_us: Some(us), server_us: None };
        let ev = |kind, us| Event {
            seq: 0,
            client: lane.clone(),
            exchange,
            client_ref: None,
            cause: None,
            at: at(us),
            kind,
        };
        let req_headers = har_headers(&e["request"]["headers"]);
        let res_headers = har_headers(&e["response"]["headers"]);
        let status = e["response"]["status"].as_u64().unwrap_or(0) as u16;
        if e["_resourceType"] == "websocket" {
            events.push(ev(EventKind::WsUpgrade(WsUpgrade { path, query, headers: req_headers }), started));
            events.push(ev(EventKind::WsAccept(WsAccept { status, headers: res_headers }), started + wait));
            for m in e["_webSocketMessages"].as_array().into_iter().flatten() {
                let from = if m["type"] == "send" { Side::Client } else { Side::Server };
                let opcode = if m["opcode"] == 2 { Opcode::Binary } else { Opcode::Text };
                let data = m["data"].as_str().unwrap_or("");
                let t = (m["time"].as_f64().unwrap_or(0.0) * 1e6) as i64;
                events.push(ev(
                    EventKind::WsFrame(WsFrame { from, opcode, fin: true, payload: Body::text(data) }),
                    t,
                ));
            }
        } else {
            let req_body = e["request"]["postData"]["text"].as_str().map(Body::text);
            let method = e["request"]["method"].as_str().unwrap_or("GET").to_owned();
            events.push(ev(
                EventKind::HttpRequest(HttpRequest {
                    method,
                    path,
                    query,
                    headers: req_headers,
                    body: req_body,
                }),
                started,
            ));
            if status > 0 {
                let body = e["response"]["content"]["text"].as_str().map(Body::text);
                events.push(ev(
                    EventKind::HttpResponse(HttpResponse {
                        status,
                        streaming: false,
                        headers: res_headers,
                        body,
                    }),
                    started + wait,
                ));
            }
        }
    }
    Ok(Timeline::replay("me".to_owned(), Vec::new(), events))
}

/// Mermaid can take nearly any character in a message, but not `;`, `#` and line breaks.
fn mermaid_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ';' => "#59;".to_owned(),
            '#' => "#35;".to_owned(),
            '\n' | '\r' => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Mermaid `sequenceDiagram` text of `items`, split into diagrams that each stay under
/// [`MERMAID_LIMIT`] characters (each one complete, with its participants).
pub fn mermaid(t: &Timeline, items: &[&Item]) -> Vec<String> {
    let mut ids: Vec<(String, String)> = Vec::new();
    for i in items {
        if i.event.kind.is_message() && !ids.iter().any(|(k, _)| *k == i.event.client) {
            let title = if i.event.client == t.me() {
                "This browser".to_owned()
            } else {
                client_title(t, &i.event.client)
            };
            ids.push((i.event.client.clone(), title));
        }
    }
    let alias =
        |client: &str| ids.iter().position(|(k, _)| k == client).map_or("S".to_owned(), |n| format!("C{n}"));
    let mut head = String::from("sequenceDiagram\n    autonumber\n");
    for (n, (_, title)) in ids.iter().enumerate() {
        head.push_str(&format!("    participant C{n} as {}\n", mermaid_text(title)));
    }
    head.push_str("    participant S as Server\n");
    let mut lines: Vec<String> = Vec::new();
    for i in items.iter().filter(|i| i.event.kind.is_message()) {
        let c = alias(&i.event.client);
        let (text, _) = label(&i.event.kind);
        let text = mermaid_text(&text);
        let lost = matches!(i.event.kind, EventKind::Failure(_))
            || matches!(&i.event.kind, EventKind::WsClose(c) if !c.clean);
        let (from, to) = if i.event.kind.from() == Side::Client {
            (c.clone(), "S".to_owned())
        } else {
            ("S".to_owned(), c.clone())
        };
        let arrow = match (lost, i.event.kind.from()) {
            (true, _) => "-x",
            (false, Side::Client) => "->>",
            (false, Side::Server) => "-->>",
        };
        let mut line = format!("    {from}{arrow}{to}: {text}\n");
        match &i.event.kind {
            EventKind::HttpResponse(r) => {
                line.push_str(&format!("    Note over {c},S: {}\n", mermaid_text(status_meaning(r.status))));
            }
            EventKind::WsClose(w) => {
                if let Some(info) = &w.close {
                    line.push_str(&format!(
                        "    Note over {c},S: {} {}\n",
                        info.code,
                        close_code_meaning(info.code)
                    ));
                }
            }
            _ => {}
        }
        lines.push(line);
    }
    let mut out = Vec::new();
    let mut current = head.clone();
    for line in lines {
        if current.len() + line.len() >= MERMAID_LIMIT && current.len() > head.len() {
            out.push(std::mem::replace(&mut current, head.clone()));
        }
        current.push_str(&line);
    }
    if current.len() > head.len() || out.is_empty() {
        out.push(current);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The styles a standalone SVG needs (the page's stylesheet is not there).
const SVG_STYLE: &str = "text{font-family:ui-monospace,Menlo,Consolas,'DejaVu Sans Mono',monospace}\
.lane-title{font:600 14px system-ui,sans-serif}.lifeline{stroke:#b9c2d2;stroke-width:1.5;stroke-dasharray:4 5}\
.head{fill:#eef2f8;stroke:#c9d2e0}.server .head{fill:#16213a}.server .lane-title{fill:#fff}\
.label{font-size:13px;font-weight:600}.note,.time{font-size:11.5px;fill:#5a6477}\
.request{color:#0a63a8}.success{color:#00805c}.client-error{color:#a87400}.server-error{color:#c2321f}\
.frame{color:#9c4a85}.control{color:#7d8799}.close{color:#3a7ca5}.lost{color:#c2321f}";

/// A standalone SVG of `d` (lane heads and the rows it holds).
pub fn svg(d: &Diagram) -> String {
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><style>{SVG_STYLE}</style><rect width="100%" height="100%" fill="#ffffff"/>"##,
        w = d.width,
        h = d.height
    );
    for l in &d.lanes {
        let class = if l.is_server { "server" } else { "lane" };
        s.push_str(&format!(
            r#"<g class="{class}"><line class="lifeline" x1="{x}" x2="{x}" y1="42" y2="{h}"/><rect class="head" x="{rx}" y="8" width="{w}" height="34" rx="8"/><text class="lane-title" x="{x}" y="30" text-anchor="middle">{t}</text></g>"#,
            x = l.x,
            h = d.height - 8.0,
            rx = l.x - l.head_width / 2.0,
            w = l.head_width,
            t = esc(&l.title)
        ));
    }
    for a in &d.arrows {
        let tone = a.tone.class().trim_start_matches("tone-");
        let mid = (a.x1 + a.x2) / 2.0;
        s.push_str(&format!(
            r#"<g class="{tone}"><text class="time" x="6" y="{ty}">{time}</text><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="currentColor" stroke-width="2"{dash}/><path d="M {hx} {hy1} L {x2} {y2} L {hx} {hy2}" fill="none" stroke="currentColor" stroke-width="2"/><text class="label" x="{mid}" y="{ly}" text-anchor="middle" fill="currentColor">{label}</text><text class="note" x="{mid}" y="{ny}" text-anchor="middle">{note}</text></g>"#,
            ty = a.y + 4.0,
            time = esc(&a.time),
            x1 = a.x1,
            y1 = a.y1,
            x2 = a.x2,
            y2 = a.y2,
            dash = if a.lost { r#" stroke-dasharray="6 5""# } else { "" },
            hx = a.x2 - (a.x2 - a.x1).signum() * 9.0,
            hy1 = a.y2 - 5.0,
            hy2 = a.y2 + 5.0,
            ly = a.y - 8.0,
            label = esc(&a.label),
            ny = a.y + 17.0,
            note = esc(&a.note),
        ));
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Filter, Geometry};
    use protocol::{ClientInfo, CloseInfo, WsClose};

    fn sample() -> Timeline {
        let mut t = Timeline::new("me", 100);
        let ev = |seq, client: &str, exchange, kind| Event {
            seq,
            client: client.into(),
            exchange,
            client_ref: None,
            cause: None,
            at: Stamps {
                client_us: Some(1_795_473_064_000_000 + seq as i64 * 1000),
                server_us: Some(1_795_473_064_000_500 + seq as i64 * 1000),
            },
            kind,
        };
        t.add_server(ev(
            1,
            "c-ana",
            0,
            EventKind::Client(ClientInfo { nickname: Some("Ana".into()), ..ClientInfo::default() }),
        ));
        let req = HttpRequest {
            method: "POST".into(),
            path: "/transcripts".into(),
            query: Some("a=1".into()),
            headers: vec![Header::new("content-type", "application/json")],
            body: Some(Body::text(r#"{"studentName":"dana; #1"}"#)),
        };
        t.add_server(ev(2, "c-ana", 5, EventKind::HttpRequest(req)));
        let res = HttpResponse {
            status: 200,
            streaming: false,
            headers: vec![Header::new("content-type", "application/json")],
            body: Some(Body::text("5")),
        };
        t.add_server(ev(3, "c-ana", 5, EventKind::HttpResponse(res)));
        t.add_server(ev(
            4,
            "me",
            6,
            EventKind::WsUpgrade(WsUpgrade { path: "/ws/echo".into(), query: None, headers: vec![] }),
        ));
        t.add_server(ev(5, "me", 6, EventKind::WsAccept(WsAccept { status: 101, headers: vec![] })));
        t.add_server(ev(
            6,
            "me",
            6,
            EventKind::WsFrame(WsFrame {
                from: Side::Client,
                opcode: Opcode::Text,
                fin: true,
                payload: Body::text("hi"),
            }),
        ));
        t.add_server(ev(
            7,
            "me",
            6,
            EventKind::WsFrame(WsFrame {
                from: Side::Server,
                opcode: Opcode::Text,
                fin: true,
                payload: Body::text("hi"),
            }),
        ));
        let close = CloseInfo { code: 1000, reason: String::new() };
        t.add_server(ev(
            8,
            "me",
            6,
            EventKind::WsClose(WsClose { from: Side::Client, close: Some(close), clean: true }),
        ));
        t
    }

    fn rows(t: &Timeline) -> Vec<&Item> {
        Filter::default().apply(t)
    }

    #[test]
    fn a_trace_round_trips_byte_for_byte() {
        let t = sample();
        let first = trace(&t, &rows(&t));
        let back = import(&first).unwrap();
        let again = trace(&back, &rows(&back));
        assert_eq!(first, again);
        assert!(import(r#"{"format":"other","version":1,"me":"x","names":{},"events":[]}"#).is_err());
        assert!(import("not json").is_err());
    }

    #[test]
    fn har_has_requests_responses_and_websocket_messages() {
        let t = sample();
        let h: Value = serde_json::from_str(&har(&rows(&t), "http://127.0.0.1:8081")).unwrap();
        let entries = h["log"]["entries"].as_array().unwrap();
        assert_eq!(h["log"]["version"], "1.2");
        assert_eq!(entries.len(), 2);
        let post = &entries[0];
        assert_eq!(post["request"]["url"], "http://127.0.0.1:8081/transcripts?a=1");
        assert_eq!(post["request"]["queryString"][0]["name"], "a");
        assert_eq!(post["request"]["postData"]["text"], r#"{"studentName":"dana; #1"}"#);
        assert_eq!(post["response"]["status"], 200);
        assert_eq!(post["response"]["statusText"], "OK");
        assert_eq!(post["startedDateTime"], "2026-11-23T22:31:04.002Z");
        let ws = &entries[1];
        assert_eq!(ws["_resourceType"], "websocket");
        assert_eq!(ws["response"]["status"], 101);
        let msgs = ws["_webSocketMessages"].as_array().unwrap();
        assert_eq!(msgs.iter().map(|m| m["type"].as_str().unwrap()).collect::<Vec<_>>(), ["send", "receive"]);
        assert_eq!(msgs[0]["opcode"], 1);
        // And back: the HAR replays as the same exchanges.
        let back = import(&serde_json::to_string(&h).unwrap()).unwrap();
        let labels: Vec<String> = back.items().iter().map(|i| label(&i.event.kind).0).collect();
        assert_eq!(labels[..2], ["POST /transcripts?a=1".to_owned(), "200 OK".to_owned()]);
        assert_eq!(labels.len(), 6);
    }

    #[test]
    fn mermaid_numbers_messages_notes_status_meanings_and_escapes() {
        let t = sample();
        let m = mermaid(&t, &rows(&t));
        assert_eq!(m.len(), 1);
        let text = &m[0];
        assert!(text.starts_with("sequenceDiagram\n    autonumber\n"));
        assert!(text.contains("participant C0 as Ana"));
        assert!(text.contains("participant C1 as This browser"));
        assert!(text.contains("C0->>S: POST /transcripts?a=1"));
        assert!(text.contains("S-->>C0: 200 OK"));
        assert!(text.contains("Note over C0,S: The request succeeded"));
        assert!(text.contains("Note over C1,S: 1000 Normal Closure"));
        let bare = text.replace("#59;", "").replace("#35;", "");
        assert!(!bare.contains(';') && !bare.contains('#'), "semicolons and # only as entity codes");
    }

    #[test]
    fn long_sessions_are_split_under_the_mermaid_limit() {
        let mut t = Timeline::new("me", 20_000);
        for seq in 1..=6000u64 {
            let kind = EventKind::HttpRequest(HttpRequest {
                method: "GET".into(),
                path: format!("/transcripts/{seq}"),
                query: None,
                headers: vec![],
                body: None,
            });
            t.add_server(Event {
                seq,
                client: "me".into(),
                exchange: seq,
                client_ref: None,
                cause: None,
                at: Stamps::default(),
                kind,
            });
        }
        let parts = mermaid(&t, &rows(&t));
        assert!(parts.len() >= 4, "{}", parts.len());
        assert!(parts.iter().all(|p| p.len() < MERMAID_LIMIT && p.starts_with("sequenceDiagram")));
        let messages: usize = parts.iter().map(|p| p.matches("->>").count()).sum();
        assert_eq!(messages, 6000, "nothing lost between parts");
    }

    #[test]
    fn svg_is_standalone_and_escaped() {
        let t = sample();
        let r = rows(&t);
        let d = Diagram::layout(&t, &r, &Geometry::for_width(900.0), 0..r.len(), 0);
        let s = svg(&d);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.contains("<style>") && s.ends_with("</svg>"));
        assert!(s.contains("POST /transcripts?a=1"));
        assert_eq!(s.matches("class=\"label\"").count(), d.arrows.len());
    }
}
