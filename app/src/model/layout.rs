//! The sequence diagram's geometry: events in, lanes and arrows (in CSS pixels) out.
//!
//! Lanes: this browser first, then other clients in order of first appearance, the server
//! last (rightmost). Each event is one row; its arrow runs from the sender's lane to the
//! receiver's. The component draws exactly what [`Diagram`] holds.

use std::collections::HashMap;

use protocol::{Event, EventKind, Side};

pub use super::describe::Tone;
use super::describe::label;
use super::time;

/// Lane key of the server.
pub const SERVER_LANE: &str = "server";

/// Sizes the layout works with; `width` is the drawing's width in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub width: f64,
    /// Left column that holds each row's time.
    pub gutter: f64,
    pub header: f64,
    pub row: f64,
    /// Space between the outermost lanes and the edges.
    pub margin: f64,
    /// Average width of one label character, to cut labels that would not fit.
    pub char_width: f64,
}

impl Geometry {
    /// Sizes for a drawing `width` pixels wide: tighter on a phone.
    pub fn for_width(width: f64) -> Self {
        let narrow = width < 560.0;
        Self {
            width: width.max(280.0),
            gutter: if narrow { 58.0 } else { 86.0 },
            header: 64.0,
            row: if narrow { 46.0 } else { 50.0 },
            margin: if narrow { 44.0 } else { 90.0 },
            char_width: 7.9,
        }
    }
}

/// A column of the diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub key: String,
    pub title: String,
    pub x: f64,
    /// The lane of the browser showing the diagram.
    pub is_self: bool,
    pub is_server: bool,
}

/// One event, drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrow {
    pub seq: u64,
    pub exchange: u64,
    /// Vertical centre of the row.
    pub y: f64,
    /// Sender's lane.
    pub x1: f64,
    /// Receiver's lane; for a lost message, where the arrow stops short.
    pub x2: f64,
    /// Label, cut to fit the arrow.
    pub label: String,
    /// Everything about the event in one line, for the tooltip.
    pub title: String,
    /// Time relative to the first event shown (`+3.1 ms`).
    pub time: String,
    /// Extra words under the label, e.g. the round trip of a response.
    pub note: String,
    pub tone: Tone,
    /// The message never arrived: the arrow ends in ✕.
    pub lost: bool,
}

/// The whole drawing.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagram {
    pub width: f64,
    pub height: f64,
    pub lanes: Vec<Lane>,
    pub arrows: Vec<Arrow>,
    /// The row lines start below the lane headers.
    pub top: f64,
}

/// The time the sender put on a message, or failing that, the receiver's.
fn sent_at(ev: &Event) -> Option<i64> {
    match ev.kind.from() {
        Side::Client => ev.at.client_us.or(ev.at.server_us),
        Side::Server => ev.at.server_us.or(ev.at.client_us),
    }
}

fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Diagram {
    /// Lays out `events` (in log order). `self_client` is this browser's lane key;
    /// `utc_offset_min` turns times into local clock times for tooltips.
    pub fn layout(events: &[Event], self_client: &str, geo: &Geometry, utc_offset_min: i32) -> Diagram {
        // Lanes: self, other clients by first appearance, server.
        let mut keys: Vec<&str> = vec![self_client];
        for ev in events {
            if !keys.contains(&ev.client.as_str()) {
                keys.push(&ev.client);
            }
        }
        let n = keys.len() + 1;
        let left = geo.gutter + geo.margin;
        let right = (geo.width - geo.margin).max(left + 1.0);
        let step = (right - left) / (n - 1) as f64;
        let mut lanes: Vec<Lane> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Lane {
                key: (*k).to_owned(),
                title: if *k == self_client { "This browser".to_owned() } else { (*k).to_owned() },
                x: left + step * i as f64,
                is_self: *k == self_client,
                is_server: false,
            })
            .collect();
        lanes.push(Lane {
            key: SERVER_LANE.to_owned(),
            title: "Server".to_owned(),
            x: right,
            is_self: false,
            is_server: true,
        });
        let x_of: HashMap<&str, f64> = lanes.iter().map(|l| (l.key.as_str(), l.x)).collect();
        let server_x = right;

        let start = events.iter().find_map(sent_at);
        let mut request_at: HashMap<u64, i64> = HashMap::new();
        let mut arrows = Vec::with_capacity(events.len());
        for (i, ev) in events.iter().enumerate() {
            let client_x = x_of[ev.client.as_str()];
            let (x1, mut x2) = match ev.kind.from() {
                Side::Client => (client_x, server_x),
                Side::Server => (server_x, client_x),
            };
            let (text, tone) = label(&ev.kind);
            let lost = matches!(ev.kind, EventKind::Failure(_))
                || matches!(&ev.kind, EventKind::WsClose(c) if !c.clean);
            if lost {
                // A lost message stops two thirds of the way.
                x2 = x1 + (x2 - x1) * 2.0 / 3.0;
            }
            let at = sent_at(ev);
            let mut note = String::new();
            match &ev.kind {
                EventKind::HttpRequest(_) | EventKind::WsUpgrade(_) => {
                    if let Some(t) = at {
                        request_at.insert(ev.exchange, t);
                    }
                }
                EventKind::HttpResponse(_) | EventKind::WsAccept(_) => {
                    if let (Some(t0), Some(t1)) = (request_at.get(&ev.exchange), ev.at.client_us) {
                        note = format!("round trip {}", time::duration(t1 - t0));
                    }
                }
                _ => {}
            }
            let room = ((x2 - x1).abs() / geo.char_width).floor() as usize;
            let when = match (at, start) {
                (Some(t), Some(s)) => time::offset(t, s),
                _ => String::new(),
            };
            let clock = at.map(|t| format!(" at {}", time::clock(t, utc_offset_min))).unwrap_or_default();
            arrows.push(Arrow {
                seq: ev.seq,
                exchange: ev.exchange,
                y: geo.header + geo.row * (i as f64 + 0.5),
                x1,
                x2,
                label: cut(&text, room.max(4)),
                title: format!("#{} {text}{clock}", ev.seq),
                time: when,
                note,
                tone,
                lost,
            });
        }
        let height = geo.header + geo.row * events.len().max(1) as f64 + 16.0;
        Diagram { width: geo.width, height, lanes, arrows, top: geo.header }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{
        Body, CloseInfo, Failure, HttpRequest, HttpResponse, Opcode, Stamps, WsAccept, WsClose, WsFrame,
        WsUpgrade,
    };

    fn ev(seq: u64, client: &str, exchange: u64, t: i64, kind: EventKind) -> Event {
        Event {
            seq,
            client: client.into(),
            exchange,
            at: Stamps { client_us: Some(t), server_us: None },
            kind,
        }
    }

    fn health_exchange() -> Vec<Event> {
        vec![
            ev(
                1,
                "me",
                1,
                1_000_000,
                EventKind::HttpRequest(HttpRequest {
                    method: "GET".into(),
                    path: "/api/health".into(),
                    query: None,
                    headers: vec![],
                    body: None,
                }),
            ),
            ev(
                2,
                "me",
                1,
                1_003_100,
                EventKind::HttpResponse(HttpResponse { status: 200, headers: vec![], body: None }),
            ),
        ]
    }

    #[test]
    fn an_empty_log_still_shows_this_browser_and_the_server() {
        let d = Diagram::layout(&[], "me", &Geometry::for_width(800.0), 0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "Server"]);
        assert!(d.lanes[0].is_self && d.lanes[1].is_server);
        assert!(d.lanes[0].x < d.lanes[1].x);
        assert!(d.lanes[1].x <= 800.0);
        assert!(d.arrows.is_empty());
        assert!(d.height > d.top);
    }

    #[test]
    fn requests_go_right_and_responses_come_back_with_their_round_trip() {
        let d = Diagram::layout(&health_exchange(), "me", &Geometry::for_width(800.0), 0);
        let (me, server) = (d.lanes[0].x, d.lanes[1].x);
        let [req, res] = &d.arrows[..] else { panic!("two arrows") };
        assert_eq!(
            (req.x1, req.x2, req.label.as_str(), req.tone),
            (me, server, "GET /api/health", Tone::Request)
        );
        assert_eq!((res.x1, res.x2, res.label.as_str(), res.tone), (server, me, "200 OK", Tone::Success));
        assert_eq!(req.time, "+0 ms");
        assert_eq!(res.time, "+3.1 ms");
        assert_eq!(res.note, "round trip 3.1 ms");
        assert!(res.y > req.y, "rows go down in log order");
        assert!(d.height >= res.y + 16.0);
        assert!(req.title.starts_with("#1 GET /api/health at "), "{}", req.title);
    }

    #[test]
    fn a_websocket_session_draws_every_step() {
        let frame = |from, text: &str| {
            EventKind::WsFrame(WsFrame { from, opcode: Opcode::Text, fin: true, payload: Body::text(text) })
        };
        let events = vec![
            ev(
                1,
                "me",
                2,
                0,
                EventKind::WsUpgrade(WsUpgrade { path: "/ws/echo".into(), query: None, headers: vec![] }),
            ),
            ev(2, "me", 2, 10, EventKind::WsAccept(WsAccept { status: 101, headers: vec![] })),
            ev(3, "me", 2, 20, frame(Side::Client, "hi")),
            ev(4, "me", 2, 30, frame(Side::Server, "hi")),
            ev(
                5,
                "me",
                2,
                40,
                EventKind::WsClose(WsClose {
                    from: Side::Client,
                    close: Some(CloseInfo { code: 1000, reason: String::new() }),
                    clean: true,
                }),
            ),
            ev(
                6,
                "me",
                2,
                50,
                EventKind::WsClose(WsClose {
                    from: Side::Server,
                    close: Some(CloseInfo { code: 1000, reason: String::new() }),
                    clean: true,
                }),
            ),
        ];
        let d = Diagram::layout(&events, "me", &Geometry::for_width(900.0), 0);
        let labels: Vec<&str> = d.arrows.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "GET /ws/echo · Upgrade: websocket",
                "101 Switching Protocols",
                "text \"hi\"",
                "text \"hi\"",
                "Close 1000 Normal Closure",
                "Close 1000 Normal Closure",
            ]
        );
        let rightward: Vec<bool> = d.arrows.iter().map(|a| a.x2 > a.x1).collect();
        assert_eq!(rightward, [true, false, true, false, true, false]);
        assert!(d.arrows.windows(2).all(|w| w[1].y > w[0].y));
    }

    #[test]
    fn lost_messages_stop_short() {
        let events = vec![ev(
            1,
            "me",
            1,
            0,
            EventKind::Failure(Failure { from: Side::Client, message: "no answer".into() }),
        )];
        let d = Diagram::layout(&events, "me", &Geometry::for_width(800.0), 0);
        let a = &d.arrows[0];
        assert!(a.lost && a.tone == Tone::Lost);
        assert!(a.x2 > a.x1 && a.x2 < d.lanes[1].x);
    }

    #[test]
    fn other_clients_get_lanes_between_this_browser_and_the_server() {
        let mut events = health_exchange();
        events.push(ev(
            3,
            "addr:10.0.0.7",
            9,
            1_004_000,
            EventKind::HttpRequest(HttpRequest {
                method: "GET".into(),
                path: "/transcripts".into(),
                query: None,
                headers: vec![],
                body: None,
            }),
        ));
        let d = Diagram::layout(&events, "me", &Geometry::for_width(900.0), 0);
        let keys: Vec<&str> = d.lanes.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["me", "addr:10.0.0.7", SERVER_LANE]);
        assert!(d.lanes.windows(2).all(|w| w[1].x > w[0].x));
        assert_eq!(d.arrows[2].x1, d.lanes[1].x);
    }

    #[test]
    fn labels_are_cut_to_fit_a_phone() {
        let events = vec![ev(
            1,
            "me",
            1,
            0,
            EventKind::HttpRequest(HttpRequest {
                method: "GET".into(),
                path: "/transcripts/1/a%20very%20long%20course%20name%20indeed".into(),
                query: None,
                headers: vec![],
                body: None,
            }),
        )];
        let geo = Geometry::for_width(360.0);
        let d = Diagram::layout(&events, "me", &geo, 0);
        let a = &d.arrows[0];
        assert!(a.label.ends_with('…'));
        assert!(a.label.chars().count() as f64 * geo.char_width <= (a.x2 - a.x1).abs() + geo.char_width);
        assert!(a.title.contains("indeed"), "the tooltip keeps the whole label");
        assert!(d.lanes.iter().all(|l| l.x > geo.gutter && l.x < 360.0));
    }
}
