//! Words and files for recorded events, shared by the server (which streams exports of whole
//! sessions) and the app (which labels arrows and exports imported traces): arrow labels and
//! meanings ([`describe`]), lane names ([`names`]), and three export formats written event by
//! event — wirescope's JSON trace ([`trace`]), HAR 1.2 ([`har`]) and Mermaid ([`mermaid`]).
//! A browser's own observations join the server's record through [`merge`].
//!
//! Pure code: no I/O, nothing async; compiles for wasm32 and native.

pub mod describe;
pub mod har;
pub mod merge;
pub mod mermaid;
pub mod names;
pub mod time;
pub mod trace;

use protocol::Event;

pub use names::Names;

/// An export written event by event: `begin`, `event` for each one in order, `end`. Output
/// is appended to `out`, which the caller may drain between calls (that is the streaming).
pub trait Writer {
    fn begin(&mut self, out: &mut String);
    fn event(&mut self, e: &Event, out: &mut String);
    fn end(&mut self, out: &mut String);
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// wirescope's own JSON trace (importable for replay).
    Trace,
    /// HAR 1.2 (DevTools, other HTTP tools).
    Har,
    /// Mermaid `sequenceDiagram` text (course notes).
    Mermaid,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Trace, Format::Har, Format::Mermaid];

    /// By its name in a URL: `trace`, `har`, `mermaid`.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Trace => "trace",
            Format::Har => "har",
            Format::Mermaid => "mermaid",
        }
    }

    /// File name ending.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Trace => "trace.json",
            Format::Har => "har",
            Format::Mermaid => "mmd",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Trace | Format::Har => "application/json",
            Format::Mermaid => "text/plain; charset=utf-8",
        }
    }

    /// Whether the writer needs a first pass over the events ([`mermaid::Cast`]).
    pub fn two_passes(self) -> bool {
        self == Format::Mermaid
    }
}

/// Who exports, and what the lanes were called before the first event.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The exporting browser's client id.
    pub me: String,
    pub names: Names,
    /// Makes URLs absolute in HAR (`http://HOST:PORT`).
    pub origin: String,
}

/// The writer of `format`. For [`Format::Mermaid`], `cast` must have seen the same events.
pub fn writer(format: Format, ctx: &Context, cast: Option<&mermaid::Cast>) -> Box<dyn Writer + Send> {
    match format {
        Format::Trace => Box::new(trace::TraceWriter::new(&ctx.me, ctx.names.clone())),
        Format::Har => Box::new(har::HarWriter::new(&ctx.origin)),
        Format::Mermaid => {
            let fallback;
            let cast = match cast {
                Some(c) => c,
                None => {
                    fallback = mermaid::Cast::new(ctx.names.clone());
                    &fallback
                }
            };
            Box::new(mermaid::MermaidWriter::new(&ctx.me, cast))
        }
    }
}

/// All of an export at once (events held in memory: imports, tests).
pub fn write_all<'a>(
    format: Format,
    ctx: &Context,
    events: impl Iterator<Item = &'a Event> + Clone,
) -> String {
    let cast = format.two_passes().then(|| {
        let mut cast = mermaid::Cast::new(ctx.names.clone());
        for e in events.clone() {
            cast.see(e);
        }
        cast
    });
    let mut w = writer(format, ctx, cast.as_ref());
    let mut out = String::new();
    w.begin(&mut out);
    for e in events {
        w.event(e, &mut out);
    }
    w.end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{
        Body, ClientInfo, CloseInfo, EventKind, Header, HttpRequest, HttpResponse, Note, NoteKind, Opcode,
        Side, Stamps, WsAccept, WsClose, WsFrame, WsUpgrade,
    };
    use serde_json::Value;

    fn ev(seq: u64, client: &str, exchange: u64, kind: EventKind) -> Event {
        Event {
            node: String::new(),
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
        }
    }

    /// A student's POST, this browser's echo, a fault note and a lost request.
    pub(crate) fn sample() -> Vec<Event> {
        let req = HttpRequest {
            method: "POST".into(),
            path: "/transcripts".into(),
            query: Some("a=1".into()),
            headers: vec![Header::new("content-type", "application/json")],
            body: Some(Body::text(r#"{"studentName":"dana; #1"}"#)),
        };
        let res = |status| HttpResponse {
            status,
            streaming: false,
            headers: vec![Header::new("content-type", "application/json")],
            body: Some(Body::text("5")),
        };
        let frame = |from| WsFrame { from, opcode: Opcode::Text, fin: true, payload: Body::text("hi") };
        let close = |from| WsClose {
            from,
            close: Some(CloseInfo { code: 1000, reason: String::new() }),
            clean: true,
        };
        vec![
            ev(
                1,
                "c-ana",
                0,
                EventKind::Client(ClientInfo { nickname: Some("Ana".into()), ..ClientInfo::default() }),
            ),
            ev(2, "c-ana", 5, EventKind::HttpRequest(req.clone())),
            ev(3, "c-ana", 5, EventKind::HttpResponse(res(200))),
            ev(
                4,
                "me",
                6,
                EventKind::WsUpgrade(WsUpgrade { path: "/ws/echo".into(), query: None, headers: vec![] }),
            ),
            ev(5, "me", 6, EventKind::WsAccept(WsAccept { status: 101, headers: vec![] })),
            ev(6, "me", 6, EventKind::WsFrame(frame(Side::Client))),
            ev(7, "me", 6, EventKind::WsFrame(frame(Side::Server))),
            ev(8, "me", 6, EventKind::WsFrame(WsFrame { opcode: Opcode::Ping, ..frame(Side::Server) })),
            ev(9, "me", 6, EventKind::WsClose(close(Side::Client))),
            ev(10, "me", 6, EventKind::WsClose(close(Side::Server))),
            ev(
                11,
                "c-ana",
                7,
                EventKind::Note(Note { what: NoteKind::Fault, text: "response dropped".into() }),
            ),
            ev(12, "c-ana", 7, EventKind::HttpRequest(req)),
            ev(
                13,
                "c-ana",
                7,
                EventKind::Failure(protocol::Failure { from: Side::Server, message: "no answer".into() }),
            ),
            ev(14, "c-ana", 8, EventKind::HttpResponse(res(200))),
            ev(
                15,
                "server",
                0,
                EventKind::Note(Note { what: NoteKind::Down, text: "server down for 5 s".into() }),
            ),
        ]
    }

    fn ctx() -> Context {
        Context { me: "me".into(), names: Names::default(), origin: "http://127.0.0.1:8081".into() }
    }

    #[test]
    fn a_trace_reads_back_and_writes_the_same_bytes() {
        let events = sample();
        let first = write_all(Format::Trace, &ctx(), events.iter());
        let back = trace::Trace::read(&first).unwrap();
        assert_eq!(back.events, events);
        assert_eq!(back.names.get("c-ana").map(String::as_str), Some("Ana"));
        let again = Context { names: Names::from_nicknames(back.names.clone()), ..ctx() };
        assert_eq!(write_all(Format::Trace, &again, back.events.iter()), first);
        assert!(
            trace::Trace::read(r#"{"format":"other","version":1,"me":"x","names":{},"events":[]}"#).is_err()
        );
        assert!(trace::Trace::read("not json").is_err());
        let empty = write_all(Format::Trace, &ctx(), [].iter());
        assert!(trace::Trace::read(&empty).unwrap().events.is_empty());
    }

    #[test]
    fn har_has_requests_responses_failures_and_websocket_messages() {
        let h: Value = serde_json::from_str(&write_all(Format::Har, &ctx(), sample().iter())).unwrap();
        let entries = h["log"]["entries"].as_array().unwrap();
        assert_eq!(h["log"]["version"], "1.2");
        assert_eq!(entries.len(), 3, "{entries:#?}");
        let post = &entries[0];
        assert_eq!(post["request"]["url"], "http://127.0.0.1:8081/transcripts?a=1");
        assert_eq!(post["request"]["queryString"][0]["name"], "a");
        assert_eq!(post["request"]["postData"]["text"], r#"{"studentName":"dana; #1"}"#);
        assert_eq!(
            (post["response"]["status"].as_u64(), post["response"]["statusText"].as_str()),
            (Some(200), Some("OK"))
        );
        assert_eq!(post["startedDateTime"], "2026-11-23T22:31:04.002Z");
        let ws = &entries[1];
        assert_eq!(ws["_resourceType"], "websocket");
        assert_eq!(ws["response"]["status"], 101);
        let msgs = ws["_webSocketMessages"].as_array().unwrap();
        assert_eq!(msgs.iter().map(|m| m["type"].as_str().unwrap()).collect::<Vec<_>>(), ["send", "receive"]);
        let lost = &entries[2];
        assert_eq!(
            (lost["response"]["status"].as_u64(), lost["_error"].as_str()),
            (Some(0), Some("no answer"))
        );
        // And back: the HAR replays as the same exchanges.
        let back = har::read(&h).unwrap();
        let labels: Vec<String> = back.iter().map(|e| describe::label(&e.kind).0).collect();
        assert_eq!(labels[..2], ["POST /transcripts?a=1".to_owned(), "200 OK".to_owned()]);
    }

    #[test]
    fn mermaid_keeps_notes_explains_each_status_once_and_names_the_exporter() {
        let names = Names::from_nicknames([("me".to_owned(), "Prof".to_owned())]);
        let text = write_all(Format::Mermaid, &Context { names, ..ctx() }, sample().iter());
        assert!(text.starts_with("sequenceDiagram\n    autonumber\n"), "{text}");
        assert!(text.contains("participant C0 as Ana\n"));
        assert!(text.contains("participant C1 as Prof\n"), "the exporter by name: {text}");
        assert!(!text.contains("This browser"));
        assert!(text.find("participant C1").unwrap() < text.find("participant S as Server").unwrap());
        assert!(text.contains("C0->>S: POST /transcripts?a=1"));
        assert!(text.contains("S-->>C0: 200 OK"));
        assert_eq!(text.matches("The request succeeded").count(), 1, "a meaning once: {text}");
        assert!(text.contains("Note over C1,S: 1000 Normal Closure"));
        assert!(text.contains("Note over C0,S: ⚡ response dropped"), "{text}");
        assert!(text.contains("Note over S: ⚡ server down for 5 s"), "{text}");
        assert!(text.contains("S-xC0: ✕ no answer"), "{text}");
        assert!(!text.contains("ping"), "pings and pongs are left out");
        let bare = without_entities(&text);
        assert!(!bare.contains(';') && !bare.contains('#'), "semicolons and # only as entity codes");
    }

    #[test]
    fn the_client_exports_leave_the_inside_steps_out_and_the_trace_keeps_them() {
        let step = protocol::Step::Query {
            database: "postgresql".into(),
            statement: "SELECT".into(),
            table: "students".into(),
            rows: 1,
        };
        let mut events = sample();
        let at = events.iter().position(|e| matches!(e.kind, EventKind::HttpRequest(_))).unwrap();
        let exchange = events[at].exchange;
        let client = events[at].client.clone();
        events.insert(at + 1, ev(0, &client, exchange, EventKind::Hop(protocol::Hop { step, took_us: 400 })));
        let mermaid = write_all(Format::Mermaid, &ctx(), events.iter());
        assert!(!mermaid.contains("SELECT"), "{mermaid}");
        assert_eq!(mermaid, write_all(Format::Mermaid, &ctx(), sample().iter()), "as if it were not there");
        let har = write_all(Format::Har, &ctx(), events.iter());
        assert_eq!(har, write_all(Format::Har, &ctx(), sample().iter()));
        let trace = write_all(Format::Trace, &ctx(), events.iter());
        assert!(trace.contains(r#""version":2"#) && trace.contains(r#""step":{"is":"query""#), "{trace}");
        let back = trace::Trace::read(&trace).unwrap();
        assert!(back.events.iter().any(|e| matches!(e.kind, EventKind::Hop(_))));
    }

    #[test]
    fn mermaid_escapes_markup_and_directives() {
        let hostile = r#"<img src=x onerror=alert(1)>"%%{init: {"theme":"dark"}}%%"#;
        let names = Names::from_nicknames([("c-ana".to_owned(), hostile.to_owned())]);
        let text = write_all(Format::Mermaid, &Context { names, ..ctx() }, sample().iter().skip(1));
        let line = text.lines().find(|l| l.contains("participant C0")).unwrap();
        assert!(line.contains("#60;img src=x onerror=alert(1)#62;"), "{line}");
        let name = without_entities(line.trim_start().trim_start_matches("participant C0 as "));
        for bad in ['<', '>', '"', '%', '{', '}', ';', '#'] {
            assert!(!name.contains(bad), "{bad} in {line}");
        }
        assert!(!text.contains("%%{"), "no directive survives: {text}");
    }

    /// `text` with Mermaid's entity codes (`#59;`) taken out.
    fn without_entities(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('#') {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 1..];
            let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && tail[digits..].starts_with(';') {
                rest = &tail[digits + 1..];
            } else {
                out.push('#');
                rest = tail;
            }
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn long_sessions_are_split_under_the_mermaid_limit() {
        let events: Vec<Event> = (1..=6000u64)
            .map(|seq| {
                let kind = EventKind::HttpRequest(HttpRequest {
                    method: "GET".into(),
                    path: format!("/transcripts/{seq}"),
                    query: None,
                    headers: vec![],
                    body: None,
                });
                ev(seq, "me", seq, kind)
            })
            .collect();
        let text = write_all(Format::Mermaid, &ctx(), events.iter());
        let parts: Vec<&str> = text.split(mermaid::SEPARATOR).collect();
        assert!(parts.len() >= 4, "{}", parts.len());
        assert!(parts.iter().all(|p| p.len() < mermaid::MERMAID_LIMIT && p.starts_with("sequenceDiagram")));
        let messages: usize = parts.iter().map(|p| p.matches("->>").count()).sum();
        assert_eq!(messages, 6000, "nothing lost between parts");
    }

    #[test]
    fn formats_are_named_in_urls() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
        }
        assert_eq!(Format::parse("svg"), None);
    }
}
