//! HAR 1.2 (HTTP Archive), as browsers write it: one entry per HTTP exchange, and one per
//! WebSocket connection with its messages in `_webSocketMessages` (Chromium's extension).
//!
//! Written event by event: an HTTP entry goes out when its response (or its failure) arrives,
//! a WebSocket's when its close handshake is complete or the connection was cut; what is
//! still open at the end goes out last. A connection keeps at most [`MAX_WS_MESSAGES`]
//! messages, and all open ones together [`MAX_OPEN_MESSAGES`]; the entry says how many more
//! there were (`_wirescopeDroppedMessages`). Nothing else is kept: the writer's memory does
//! not grow with the session.

use std::collections::HashMap;

use protocol::event::status_reason;
use protocol::{Body, Event, EventKind, Header, HttpRequest, HttpResponse, Opcode, Side, Stamps};
use protocol::{WsAccept, WsFrame, WsUpgrade};
use serde_json::{Value, json};

use crate::Writer;
use crate::time::{iso, parse_iso};

/// Most messages kept per WebSocket connection in one entry.
pub const MAX_WS_MESSAGES: usize = 10_000;
/// Most messages kept by all connections still open at once: the writer's memory is bounded
/// whatever the session holds.
pub const MAX_OPEN_MESSAGES: usize = 100_000;

/// One exchange or connection: (client, exchange id, seen only by the browser).
type Key = (String, u64, bool);

#[derive(Debug, Default)]
struct Open {
    request: Option<Event>,
    response: Option<Event>,
    messages: Vec<Value>,
    dropped: u64,
    closes: [bool; 2],
    failed: bool,
    /// When its first event came (what is still open at the end goes out in that order).
    since: u64,
}

/// Writes HAR 1.2 event by event.
#[derive(Debug)]
pub struct HarWriter {
    origin: String,
    open: HashMap<Key, Open>,
    /// Events seen, to order what is still open at the end.
    seen: u64,
    /// Messages held by open connections (at most [`MAX_OPEN_MESSAGES`]).
    held: usize,
    first: bool,
}

impl HarWriter {
    /// `origin` makes URLs absolute (`http://127.0.0.1:8081`).
    pub fn new(origin: &str) -> Self {
        Self { origin: origin.to_owned(), open: HashMap::new(), seen: 0, held: 0, first: true }
    }

    fn emit(&mut self, key: &Key, out: &mut String) {
        let Some(open) = self.open.remove(key) else { return };
        self.held -= open.messages.len();
        if let Some(entry) = entry(&self.origin, &open) {
            out.push_str(if self.first { "\n" } else { ",\n" });
            self.first = false;
            out.push_str(&serde_json::to_string_pretty(&entry).unwrap_or_default());
        }
    }
}

fn headers_json(hs: &[Header]) -> Value {
    Value::Array(hs.iter().map(|h| json!({"name": h.name, "value": h.value})).collect())
}

fn body_text(b: Option<&Body>) -> Option<String> {
    b.and_then(|b| b.text.clone())
}

fn mime(hs: &[Header]) -> String {
    hs.iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map_or("application/octet-stream".to_owned(), |h| h.value.clone())
}

fn time_of(e: &Event) -> i64 {
    e.at.client_us.or(e.at.server_us).unwrap_or(0)
}

fn entry(origin: &str, open: &Open) -> Option<Value> {
    let first = open.request.as_ref()?;
    let (method, path, query, req_headers, req_body, ws) = match &first.kind {
        EventKind::HttpRequest(r) => {
            (r.method.clone(), &r.path, &r.query, &r.headers, r.body.as_ref(), false)
        }
        EventKind::WsUpgrade(u) => ("GET".to_owned(), &u.path, &u.query, &u.headers, None, true),
        _ => return None,
    };
    let url = match query {
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
    let started = time_of(first);
    let none = Vec::new();
    let (status, res_headers, res_body, wait_ms) = match &open.response {
        Some(e) => {
            let wait = ((time_of(e) - started).max(0) as f64) / 1000.0;
            match &e.kind {
                EventKind::HttpResponse(r) => (r.status, &r.headers, r.body.as_ref(), wait),
                EventKind::WsAccept(a) => (a.status, &a.headers, None, wait),
                _ => (0, &none, None, wait),
            }
        }
        None => (0, &none, None, 0.0),
    };
    let mut request = json!({
        "method": method,
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers_json(req_headers),
        "queryString": query_string,
        "headersSize": -1,
        "bodySize": req_body.map_or(0, |b| b.size as i64),
    });
    if let Some(text) = body_text(req_body) {
        request["postData"] = json!({"mimeType": mime(req_headers), "text": text});
    }
    let mut content = json!({"size": res_body.map_or(0, |b| b.size as i64), "mimeType": mime(res_headers)});
    if let Some(text) = body_text(res_body) {
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
            "headers": headers_json(res_headers),
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": res_body.map_or(-1, |b| b.size as i64),
        },
        "cache": {},
        "timings": {"send": 0, "wait": wait_ms, "receive": 0},
    });
    if open.failed && open.response.is_none() {
        entry["_error"] = Value::from("no answer");
    }
    if ws {
        entry["_resourceType"] = Value::from("websocket");
        entry["_webSocketMessages"] = Value::Array(open.messages.clone());
        if open.dropped > 0 {
            entry["_wirescopeDroppedMessages"] = Value::from(open.dropped);
        }
    }
    Some(entry)
}

impl Writer for HarWriter {
    fn begin(&mut self, out: &mut String) {
        let creator = json!({"name": "wirescope", "version": env!("CARGO_PKG_VERSION")});
        out.push_str(&format!(
            "{{\"log\":{{\"version\":\"1.2\",\"creator\":{creator},\"pages\":[],\"entries\":["
        ));
    }

    fn event(&mut self, e: &Event, out: &mut String) {
        // The client's messages only: a step inside the system is no entry of its own.
        if !e.kind.is_message() || matches!(e.kind, EventKind::Hop(_)) {
            return;
        }
        let key: Key = (e.client.clone(), e.exchange, e.seq == 0);
        self.seen += 1;
        let since = self.seen;
        let open = self.open.entry(key.clone()).or_insert_with(|| Open { since, ..Open::default() });
        let done = match &e.kind {
            EventKind::HttpRequest(_) | EventKind::WsUpgrade(_) => {
                if open.request.is_none() {
                    open.request = Some(e.clone());
                }
                false
            }
            EventKind::HttpResponse(_) => {
                open.response = Some(e.clone());
                true
            }
            EventKind::WsAccept(_) => {
                open.response = Some(e.clone());
                false
            }
            EventKind::WsFrame(f) if !f.opcode.is_control() => {
                if open.messages.len() < MAX_WS_MESSAGES && self.held < MAX_OPEN_MESSAGES {
                    self.held += 1;
                    open.messages.push(json!({
                        "type": if f.from == Side::Client { "send" } else { "receive" },
                        "time": time_of(e) as f64 / 1e6,
                        "opcode": if f.opcode == Opcode::Binary { 2 } else { 1 },
                        "data": f.payload.text.clone().or_else(|| f.payload.hex.clone()).unwrap_or_default(),
                    }));
                } else {
                    open.dropped += 1;
                }
                false
            }
            EventKind::WsFrame(_) => false,
            EventKind::WsClose(c) => {
                open.closes[c.from as usize] = true;
                !c.clean || open.closes == [true, true]
            }
            EventKind::Failure(_) => {
                open.failed = true;
                // A request that never got an answer is complete; a WebSocket that failed is too.
                true
            }
            _ => false,
        };
        if done {
            self.emit(&key, out);
        }
    }

    fn end(&mut self, out: &mut String) {
        let mut left: Vec<(u64, Key)> = self.open.iter().map(|(k, o)| (o.since, k.clone())).collect();
        left.sort();
        for (_, key) in left {
            self.emit(&key, out);
        }
        out.push_str("\n]}}\n");
    }
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

/// A HAR file's entries as events, on one lane (`har`), for replay.
pub fn read(v: &Value) -> Result<Vec<Event>, String> {
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
            node: String::new(),
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
    Ok(events)
}
