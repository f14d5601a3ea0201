//! Exports and imports on this browser's side. A live session is exported by the server,
//! whole, from its log (`/api/sessions/current/export`); this browser adds only what it alone
//! saw ([`observations`]). A trace or HAR imported for replay is exported here with the same
//! writers (the `export` crate), so its file is the same bytes the server would write. The
//! SVG (and the PNG drawn from it) is of a range of rows: those in view, or a chosen span.

use export::merge::{Local, MAX_LOCAL, Observations, lean};
use export::{Context, Format, Names};
use protocol::Event;

use super::layout::Diagram;
use super::timeline::{Item, ItemKey, Timeline};

pub use export::mermaid::MERMAID_LIMIT;

/// Reads a trace (or a HAR file) into a timeline for replay.
pub fn import(text: &str) -> Result<Timeline, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("log").is_some() {
        let events = export::har::read(&v)?;
        return Ok(Timeline::replay(String::new(), Vec::new(), events));
    }
    let trace = export::trace::Trace::read(text)?;
    let names = trace.names.into_iter().collect();
    Ok(Timeline::replay(trace.me, names, trace.events))
}

/// What only this browser saw of the live session, for the server to merge into the export:
/// when it sent or received each message the server recorded, and its own rows (failures,
/// what happened while its stream was down), each after the server row it followed.
pub fn observations(t: &Timeline) -> Observations {
    let mut obs = Observations::default();
    let mut after = 0;
    for item in t.items() {
        match item.key {
            ItemKey::Seq(seq) => {
                after = seq;
                if let Some(us) = item.event.at.client_us {
                    obs.client_times.push((seq, us));
                }
            }
            ItemKey::Local(_) => obs.local.push(Local { after, event: lean(item.event.clone()) }),
        }
    }
    if obs.local.len() > MAX_LOCAL {
        obs.local.drain(..obs.local.len() - MAX_LOCAL);
    }
    let keep = export::merge::MAX_OBSERVATIONS;
    if obs.client_times.len() > keep {
        obs.client_times.drain(..obs.client_times.len() - keep);
    }
    obs
}

/// A timeline in `format`, as the server would write it: a replayed file's events exactly as
/// read (so a trace exported again is the same bytes), else every row in order.
pub fn replayed(t: &Timeline, format: Format, origin: &str) -> String {
    let mut names = Names::default();
    let events: Vec<&Event> = match t.imported() {
        Some((events, nicknames)) => {
            names = Names::from_nicknames(nicknames);
            events.iter().collect()
        }
        None => {
            for (c, info) in t.known_clients() {
                names.set(c, info.clone());
            }
            t.items().iter().map(|i: &Item| &i.event).collect()
        }
    };
    let ctx = Context { me: t.me().to_owned(), names, origin: origin.to_owned() };
    export::write_all(format, &ctx, events.iter().copied())
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
.frame{color:#9c4a85}.control{color:#7d8799}.close{color:#3a7ca5}.lost{color:#c2321f}\
.band{fill:#fff4dc;stroke:#e69f00;stroke-dasharray:4 3}.band-text{font:600 12.5px system-ui,sans-serif;fill:#7a4b00}";

/// A standalone SVG of `d` (lane heads and the rows it holds): notes as bands across the
/// row, lost messages ending in ✕, like the page draws them.
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
        let time = format!(r#"<text class="time" x="6" y="{}">{}</text>"#, a.y + 4.0, esc(&a.time));
        if a.is_note {
            let (left, right) = (a.x1.min(a.x2), a.x1.max(a.x2));
            s.push_str(&format!(
                r#"<g class="note">{time}<rect class="band" x="{left}" y="{by}" width="{bw}" height="26" rx="6"/><text class="band-text" x="{mid}" y="{ty}" text-anchor="middle">{label}</text></g>"#,
                by = a.y - 15.0,
                bw = (right - left).max(40.0),
                mid = (left + right) / 2.0,
                ty = a.y + 4.0,
                label = esc(&a.label),
            ));
            continue;
        }
        let tone = a.tone.class().trim_start_matches("tone-");
        let end = if a.lost {
            let k = 6.0;
            format!(
                r#"<path d="M {} {} L {} {} M {} {} L {} {}" stroke="currentColor" stroke-width="2.5" stroke-linecap="round"/>"#,
                a.x2 - k,
                a.y2 - k,
                a.x2 + k,
                a.y2 + k,
                a.x2 - k,
                a.y2 + k,
                a.x2 + k,
                a.y2 - k
            )
        } else {
            let hx = a.x2 - (a.x2 - a.x1).signum() * 9.0;
            format!(
                r#"<path d="M {hx} {} L {} {} L {hx} {}" fill="none" stroke="currentColor" stroke-width="2"/>"#,
                a.y2 - 5.0,
                a.x2,
                a.y2,
                a.y2 + 5.0
            )
        };
        s.push_str(&format!(
            r#"<g class="{tone}">{time}<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="currentColor" stroke-width="2"{dash}/>{end}<text class="label" x="{lx}" y="{ly}" text-anchor="middle" fill="currentColor">{label}</text><text class="note" x="{lx}" y="{ny}" text-anchor="middle">{note}</text></g>"#,
            x1 = a.x1,
            y1 = a.y1,
            x2 = a.x2,
            y2 = a.y2,
            dash = if a.lost { r#" stroke-dasharray="6 5""# } else { "" },
            lx = a.label_x,
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
    use crate::model::layout::View;
    use crate::model::{Filter, Geometry};
    use protocol::{
        Body, ClientInfo, CloseInfo, EventKind, Header, HttpRequest, HttpResponse, Note, NoteKind, Opcode,
        Side, Stamps, WsAccept, WsClose, WsFrame, WsUpgrade,
    };

    fn sample() -> Timeline {
        let mut t = Timeline::new("me", 100);
        let ev = |seq, client: &str, exchange, kind| Event {
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
    fn an_imported_trace_exports_the_same_bytes_again() {
        let t = sample();
        let first = replayed(&t, Format::Trace, "http://h");
        let back = import(&first).unwrap();
        assert_eq!(replayed(&back, Format::Trace, "http://h"), first);
        assert!(import(r#"{"format":"other","version":1,"me":"x","names":{},"events":[]}"#).is_err());
        assert!(import("not json").is_err());
        let har = replayed(&t, Format::Har, "http://h");
        assert_eq!(
            import(&har).unwrap().items().iter().filter(|i| i.event.kind.is_message()).count(),
            6,
            "HAR has no closes"
        );
    }

    #[test]
    fn observations_are_this_browsers_times_and_its_own_rows_after_what_they_followed() {
        let mut t = sample();
        let lost = EventKind::Failure(protocol::Failure { from: Side::Client, message: "offline".into() });
        t.add_local(99, lost, 1_795_473_070_000_000);
        let obs = observations(&t);
        assert_eq!(obs.local.len(), 1);
        assert_eq!(obs.local[0].after, 8, "after the last server row it saw");
        assert!(obs.client_times.iter().any(|(seq, _)| *seq == 2));
    }

    #[test]
    fn svg_is_standalone_escaped_and_draws_notes_as_bands_and_losses_as_crosses() {
        let mut t = sample();
        let note = |seq, client: &str, kind| Event {
            node: String::new(),
            seq,
            client: client.into(),
            exchange: 0,
            client_ref: None,
            cause: None,
            at: Stamps { client_us: None, server_us: Some(1_795_473_064_100_000) },
            kind,
        };
        t.add_server(note(
            9,
            "c-ana",
            EventKind::Note(Note { what: NoteKind::Fault, text: "response <dropped>".into() }),
        ));
        t.add_server(note(
            10,
            "c-ana",
            EventKind::Failure(protocol::Failure { from: Side::Server, message: "no answer".into() }),
        ));
        let r = rows(&t);
        let d = Diagram::layout(&t, &r, &Geometry::for_width(900.0), View::Client, 0..r.len(), 0);
        let s = svg(&d);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.contains("<style>") && s.ends_with("</svg>"));
        assert!(s.contains("POST /transcripts?a=1"));
        assert_eq!(s.matches("class=\"band\"").count(), 1, "the fault is a band, not an arrow");
        assert!(s.contains("response &lt;dropped&gt;"));
        assert_eq!(s.matches("class=\"label\"").count(), d.arrows.len() - 1);
        assert_eq!(s.matches("stroke-linecap=\"round\"").count(), 1, "the lost answer ends in ✕");
    }
}
