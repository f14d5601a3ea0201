//! The sequence diagram's geometry: timeline rows in, lanes, arrows and bars (CSS pixels) out.
//!
//! Lanes: this browser first, then other clients in order of first appearance, the server last
//! (rightmost). When there are more clients than the width has room for, the later ones fold
//! into one aggregate lane. Every row has a fixed height, so the drawing's height is known
//! without laying out every row: only the rows of the visible window become arrows.
//!
//! Time is drawn twice: the slant of an arrow shows its transit time (when both ends' clocks
//! are known), and a bar on the server's lane spans the time the server spent on an exchange.
//!
//! Two views of the same rows ([`View`]): the client's, with one "Server" lane (what a client
//! sees), and the inside view, where the server's lane becomes the balancer (when a request
//! was handed off), a lane per node that served a row, and a lane per database a row
//! reached; a request is drawn to the balancer when it was handed off, and each step inside
//! ([`protocol::Hop`]) as an arrow between those lanes.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use protocol::{BALANCER_LANE, ClockOffset, EventKind, Side, Step};

pub use super::describe::Tone;
use super::describe::label;
pub use super::filter::View;
use super::time;
use super::timeline::{Item, ItemKey, Timeline};
use export::names::{agent_of, cut, program};

/// Lane key of the server, as `protocol` names it.
pub use protocol::SERVER_LANE;
/// Lane key of the aggregate lane.
pub const OTHERS_LANE: &str = "others";
/// Lane keys of the inside view start with this (a client may call itself anything).
pub const INSIDE_PREFIX: &str = "inside:";

/// A lane's title for a lane of the inside view (a node, the balancer, a database).
pub fn lane_title(name: &str) -> String {
    match name {
        BALANCER_LANE => "Balancer",
        "postgresql" => "PostgreSQL",
        "sqlite" => "SQLite",
        "nats" => "NATS",
        "" | SERVER_LANE => "Server",
        other => other,
    }
    .to_owned()
}

/// The lanes of the inside view for `rows`, left to right: the balancer (when a row was
/// handed off), each node that served a row (by name), each database a row reached (by name).
pub fn inside_lanes(rows: &[&Item]) -> Vec<String> {
    let mut balancer = false;
    let mut nodes = std::collections::BTreeSet::new();
    let mut databases = std::collections::BTreeSet::new();
    for item in rows.iter().filter(|i| !i.is_local()) {
        let ev = &item.event;
        match &ev.kind {
            EventKind::Hop(h) => match &h.step {
                Step::Handoff { .. } => balancer = true,
                Step::Query { database, .. } => {
                    databases.insert(database.as_str());
                }
                Step::Dropped { .. } => {}
            },
            kind if kind.is_message() => {}
            _ => continue,
        }
        nodes.insert(ev.node.as_str());
    }
    let mut lanes: Vec<String> = Vec::new();
    if balancer {
        lanes.push(BALANCER_LANE.to_owned());
    }
    lanes.extend(nodes.into_iter().map(str::to_owned));
    lanes.extend(databases.into_iter().map(str::to_owned));
    if lanes.is_empty() {
        lanes.push(SERVER_LANE.to_owned());
    }
    lanes
}

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
    /// Narrowest spacing between two lanes.
    pub min_lane_gap: f64,
    /// Type size relative to the normal view (presentation mode is larger): text offsets
    /// around arrows and lane heads grow with it.
    pub scale: f64,
}

impl Geometry {
    /// Sizes for a drawing `width` pixels wide: tighter on a phone.
    pub fn for_width(width: f64) -> Self {
        let narrow = width < 560.0;
        Self {
            width: width.max(280.0),
            gutter: if narrow { 46.0 } else { 86.0 },
            header: 64.0,
            row: if narrow { 46.0 } else { 50.0 },
            margin: if narrow { 34.0 } else { 90.0 },
            char_width: 7.9,
            // A phone (about 350 px of drawing) holds this browser, a classmate, the folded
            // rest and the server.
            min_lane_gap: if narrow { 70.0 } else { 150.0 },
            scale: 1.0,
        }
    }

    /// Scales type and spacing (presentation mode).
    pub fn scaled(mut self, k: f64) -> Self {
        self.gutter *= k;
        self.header *= k;
        self.row *= k;
        self.margin *= k;
        self.char_width *= k;
        self.min_lane_gap *= k;
        self.scale *= k;
        self
    }
}

/// A column of the diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub key: String,
    pub title: String,
    /// A second line: nickname of this browser, event count of the aggregate lane, …
    pub subtitle: String,
    pub x: f64,
    /// The lane of the browser showing the diagram.
    pub is_self: bool,
    pub is_server: bool,
    pub is_aggregate: bool,
    /// The instructor highlights this lane.
    pub highlight: bool,
    /// Width of the lane's head box: its title's, but never wider than the lane spacing.
    pub head_width: f64,
}

/// One row, drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrow {
    pub key: ItemKey,
    pub seq: u64,
    pub exchange: u64,
    /// Vertical centre of the row.
    pub y: f64,
    /// Sender's lane, and where the arrow leaves it.
    pub x1: f64,
    pub y1: f64,
    /// Receiver's lane (or where a lost message stops), and where the arrow arrives.
    pub x2: f64,
    pub y2: f64,
    /// Label, cut to fit the stretch of the arrow next to its client's lane (between that
    /// lane and the next one towards the server), and centred there: a label never sits on
    /// another lane's lifeline.
    pub label: String,
    pub label_x: f64,
    /// Everything about the event in one line, for the tooltip.
    pub title: String,
    /// Time relative to the first event of the timeline (`+3.1 ms`).
    pub time: String,
    /// Extra words under the label, e.g. the round trip of a response.
    pub note: String,
    pub tone: Tone,
    /// The message never arrived: the arrow ends in ✕.
    pub lost: bool,
    /// Only this browser has seen it (the server's record has not come, or never will).
    pub local: bool,
    /// When the server recorded it (µs), if it did.
    pub server_us: Option<i64>,
    /// Its client's lane key, and whether that is this browser.
    pub client: String,
    pub mine: bool,
    /// The exchange that caused this message, if another one did.
    pub cause: Option<u64>,
    /// A note (a fault, a hold, a new session): drawn as a band across the row, no arrow.
    pub is_note: bool,
}

/// The time the server spent on an exchange, on its lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub x: f64,
    pub y1: f64,
    pub y2: f64,
    /// Empty on a lane with lanes to its right (the inside view's nodes): the margin where
    /// labels go is the last lane's, and the steps' arrows pass beside the bar.
    pub label: String,
}

/// A causal link: a message the server sent because of another exchange (a pushed
/// `transcriptChanged` frame and the POST that caused it), drawn on the server's lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub x: f64,
    /// Where the causing request arrived.
    pub y1: f64,
    /// Where the caused message left.
    pub y2: f64,
    pub cause: u64,
}

/// Where a request's arrow ended, and its two stamps (to draw its answer's round trip).
type RequestRow = (f64, Option<i64>, Option<i64>);

/// The drawing (of the visible window).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagram {
    pub width: f64,
    pub height: f64,
    pub lanes: Vec<Lane>,
    pub arrows: Vec<Arrow>,
    pub bars: Vec<Bar>,
    /// Causal fan-outs (one line per caused message).
    pub links: Vec<Link>,
    /// Where rows start.
    pub top: f64,
    /// Height of a row.
    pub row: f64,
    /// Bars carry their server time as a label (off when lanes are too close).
    pub bar_labels: bool,
    /// Rows in all (not only the drawn ones).
    pub rows: usize,
    /// "N earlier events" when the timeline dropped some.
    pub earlier: Option<String>,
    /// The geometry's type scale (see [`Geometry::scale`]).
    pub scale: f64,
}

/// The height of the diagram's scrolling frame so that it ends inside the screen: from its
/// top on the page (`top`, in page pixels) to the bottom of a `viewport`-high screen, less
/// `below`. When the frame starts low on the page (a phone, where cards stack), the page
/// scrolls to it, and it gets the whole screen under its lane heads (`head`). Never under
/// 160 px.
pub fn frame_height(viewport: f64, top: f64, head: f64, below: f64) -> f64 {
    let from = if top + 160.0 <= viewport { top } else { head };
    (viewport - from - below).floor().max(160.0)
}

/// The title of this browser's lane, and its short form where that does not fit.
pub const SELF_TITLE: &str = "This browser";
pub const SELF_SHORT: &str = "You";

/// Where a lost message's ✕ goes: half-way between its client's lane and the next lane
/// towards the server, so it is never on a lifeline and always next to whom it concerns.
pub fn lost_x(client_x: f64, next_lane_x: f64) -> f64 {
    (client_x + next_lane_x) / 2.0
}

/// Which client lanes get their own column when only `room` fit: this browser, the
/// highlighted lane, then the most recently active in `rows`; shown in their usual order.
/// The rest fold into one lane. Answers (shown, folded).
fn fold<'a>(
    clients: Vec<&'a str>,
    rows: &[&Item],
    me: &str,
    highlight: Option<&str>,
    room: usize,
) -> (Vec<&'a str>, Vec<&'a str>) {
    if clients.len() <= room {
        return (clients, Vec::new());
    }
    let keep = room.saturating_sub(1).max(1);
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.event.client.as_str(), i + 1);
    }
    let mut rank: Vec<&str> = clients.clone();
    rank.sort_by_key(|c| {
        let pinned = *c == me || Some(*c) == highlight;
        (std::cmp::Reverse(pinned), std::cmp::Reverse(last.get(c).copied().unwrap_or(0)))
    });
    rank.truncate(keep);
    clients.into_iter().partition(|c| rank.contains(c))
}

/// The time of an event on the server's clock (a browser-only event: its time, shifted).
pub fn server_time(item: &Item, offset: &ClockOffset) -> Option<i64> {
    item.event.at.server_us.or_else(|| item.event.at.client_us.map(|c| offset.to_server(c)))
}

/// The sender's time of a message, on the server's clock.
fn sent_at(item: &Item, offset: &ClockOffset) -> Option<i64> {
    let at = item.event.at;
    match item.event.kind.from() {
        Side::Client => at.client_us.map(|c| offset.to_server(c)).or(at.server_us),
        Side::Server => at.server_us.or(at.client_us.map(|c| offset.to_server(c))),
    }
}

/// Transit time of a message in µs, when both ends stamped it and the clocks are related.
pub fn transit_us(item: &Item, offset: &ClockOffset) -> Option<i64> {
    let at = item.event.at;
    let (c, s) = (offset.to_server(at.client_us?), at.server_us?);
    if offset.samples == 0 {
        return None;
    }
    Some(match item.event.kind.from() {
        Side::Client => s - c,
        Side::Server => c - s,
    })
}

/// Vertical drop of an arrow for a transit time: grows with the logarithm, so 0.1 ms and
/// 300 ms both read at a glance, and never more than half a row.
pub fn slant(transit_us: Option<i64>, row: f64) -> f64 {
    match transit_us {
        None => 0.0,
        Some(us) => {
            let ms = (us.max(0) as f64) / 1000.0;
            (3.0 + (1.0 + ms).ln() * 5.0).min(row * 0.5)
        }
    }
}

/// A short name for a client lane: its nickname, else what it is (`curl · 1a2b3c4d`, its
/// pseudonym), else its id, cut.
pub fn client_title(t: &Timeline, key: &str) -> String {
    let info = t.client(key);
    if let Some(n) = info.and_then(|i| i.nickname.as_deref()) {
        return n.to_owned();
    }
    if let Some(which) = program(key) {
        return format!("{} · {which}", agent_of(info));
    }
    cut(key, 12)
}

impl Diagram {
    /// Whether a balancer's lane is drawn (the inside view of a cluster).
    pub fn has_balancer(&self) -> bool {
        self.lanes.iter().any(|l| l.key.strip_prefix(INSIDE_PREFIX) == Some(BALANCER_LANE))
    }

    /// Height of the "N earlier events" strip above the rows (0 when there is none).
    pub fn earlier_height(&self) -> f64 {
        if self.earlier.is_some() { self.row * 0.7 } else { 0.0 }
    }

    /// Lays out `rows` (filtered timeline items, in order), drawing arrows for the rows in
    /// `window` only. `utc_offset_min` turns times into local clock times for tooltips.
    pub fn layout(
        t: &Timeline,
        rows: &[&Item],
        geo: &Geometry,
        view: View,
        window: Range<usize>,
        utc_offset_min: i32,
    ) -> Diagram {
        let offset = &t.offset;
        // Lanes: as many client lanes as the width allows; the rest fold into "others".
        let mut clients: Vec<&str> = t.client_order().collect();
        // The highlighted lane is never folded away: it comes right after this browser's.
        if let Some(h) = t.highlight.as_deref()
            && let Some(pos) = clients.iter().position(|c| *c == h)
            && pos > 1
        {
            let c = clients.remove(pos);
            clients.insert(1, c);
        }
        // The server's side: one lane, or the inside view's lanes.
        let inner = match view {
            View::Client => Vec::new(),
            View::Inside => inside_lanes(rows),
        };
        let k = inner.len().max(1);
        let room = ((geo.width - geo.gutter - 2.0 * geo.margin) / geo.min_lane_gap).floor().max(1.0) as usize;
        let room = room.saturating_sub(k - 1).max(1);
        let (shown, folded) = fold(clients, rows, t.me(), t.highlight.as_deref(), room);
        let first_inner = shown.len() + usize::from(!folded.is_empty());
        let n = first_inner + k;
        let left = geo.gutter + geo.margin;
        let right = (geo.width - geo.margin).max(left + 1.0);
        let step = (right - left) / (n - 1).max(1) as f64;
        let mut lanes: Vec<Lane> = shown
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let is_self = *k == t.me();
                let nickname = t.client(k).and_then(|c| c.nickname.clone()).unwrap_or_default();
                Lane {
                    key: (*k).to_owned(),
                    title: if is_self { SELF_TITLE.to_owned() } else { client_title(t, k) },
                    subtitle: if is_self { nickname } else { String::new() },
                    x: left + step * i as f64,
                    is_self,
                    is_server: false,
                    is_aggregate: false,
                    highlight: t.highlight.as_deref() == Some(*k),
                    head_width: 0.0,
                }
            })
            .collect();
        if !folded.is_empty() {
            let count = rows.iter().filter(|r| folded.contains(&r.event.client.as_str())).count();
            lanes.push(Lane {
                key: OTHERS_LANE.to_owned(),
                title: format!("+{} others", folded.len()),
                subtitle: format!("{count} events"),
                x: left + step * shown.len() as f64,
                is_self: false,
                is_server: false,
                is_aggregate: true,
                highlight: false,
                head_width: 0.0,
            });
        }
        if inner.is_empty() {
            lanes.push(Lane {
                key: SERVER_LANE.to_owned(),
                title: "Server".to_owned(),
                subtitle: String::new(),
                x: right,
                is_self: false,
                is_server: true,
                is_aggregate: false,
                highlight: false,
                head_width: 0.0,
            });
        }
        for (j, name) in inner.iter().enumerate() {
            let last = j + 1 == inner.len();
            lanes.push(Lane {
                key: format!("{INSIDE_PREFIX}{name}"),
                title: lane_title(name),
                subtitle: String::new(),
                x: if last { right } else { left + step * (first_inner + j) as f64 },
                is_self: false,
                is_server: true,
                is_aggregate: false,
                highlight: false,
                head_width: 0.0,
            });
        }
        // Heads as wide as their titles, but never overlapping: cut the titles that would.
        let head_char = geo.char_width * 1.09;
        let max_w = (step - 8.0).min(2.0 * geo.margin).max(40.0);
        for lane in &mut lanes {
            let chars = lane.title.chars().count().max(lane.subtitle.chars().count()) as f64;
            let want = (chars * head_char + 28.0).max(84.0_f64.min(max_w));
            lane.head_width = want.min(max_w);
            let fit = ((lane.head_width - 12.0) / head_char).floor().max(3.0) as usize;
            // Short forms rather than cut words: "You", "+3".
            if lane.is_self && lane.title.chars().count() > fit {
                lane.title = SELF_SHORT.to_owned();
            }
            if lane.is_aggregate && lane.title.chars().count() > fit {
                lane.title = format!("+{}", folded.len());
            }
            lane.title = cut(&lane.title, fit);
            lane.subtitle = cut(&lane.subtitle, fit);
        }
        let mut x_of: HashMap<&str, f64> = lanes.iter().map(|l| (l.key.as_str(), l.x)).collect();
        let others_x = lanes.iter().find(|l| l.is_aggregate).map(|l| l.x);
        for k in &folded {
            x_of.insert(k, others_x.unwrap_or(right));
        }
        let server_x = right;
        // The inside view: where each node, the balancer and each database are, and which
        // exchanges the balancer handed off (their requests are drawn to it).
        let inner_x: HashMap<&str, f64> =
            lanes.iter().filter_map(|l| Some((l.key.strip_prefix(INSIDE_PREFIX)?, l.x))).collect();
        let lane_x = |name: &str| inner_x.get(name).copied().unwrap_or(server_x);
        let handed: HashSet<u64> = match view {
            View::Client => HashSet::new(),
            View::Inside => rows
                .iter()
                .filter(
                    |r| matches!(&r.event.kind, EventKind::Hop(h) if matches!(h.step, Step::Handoff { .. })),
                )
                .map(|r| r.event.exchange)
                .collect(),
        };
        // The lane to the right of each lane x (towards the server): labels and ✕ stay in the
        // stretch between a client's lane and that one.
        let mut xs: Vec<f64> = lanes.iter().map(|l| l.x).collect();
        xs.sort_by(f64::total_cmp);
        let next_lane = |x: f64| xs.iter().copied().find(|n| *n > x + 0.5).unwrap_or(server_x);

        let earlier_h = if t.earlier() > 0 { geo.row * 0.7 } else { 0.0 };
        let top = geo.header + earlier_h;
        // The time column reads the server's clock (one clock for everyone, in seq order);
        // what only this browser saw is shifted onto it.
        let start = t.items().iter().find_map(|i| server_time(i, offset));
        let window = window.start.min(rows.len())..window.end.min(rows.len());
        let mut arrows = Vec::with_capacity(window.len());
        let mut request_rows: HashMap<(u64, bool), RequestRow> = HashMap::new();
        let mut bars = Vec::new();
        let mut links = Vec::new();
        // Where each exchange's request reached the server, and what it was (for causes).
        let mut arrived: HashMap<u64, (f64, String)> = HashMap::new();
        for (i, item) in rows.iter().enumerate().take(window.end).skip(window.start) {
            let ev = &item.event;
            let client_x = x_of.get(ev.client.as_str()).copied().unwrap_or(left);
            let from = ev.kind.from();
            let hop = match &ev.kind {
                EventKind::Hop(h) => Some(h),
                _ => None,
            };
            let is_note = matches!(ev.kind, EventKind::Note(_))
                || hop.is_some_and(|h| matches!(h.step, Step::Dropped { .. }));
            // The lane this event's node is on (in the client view: the server's).
            // What only this browser saw went to the first lane inside: the balancer, if any.
            let node_x = match view {
                View::Inside if item.is_local() => inner.first().map_or(server_x, |n| lane_x(n)),
                View::Inside => lane_x(&ev.node),
                View::Client => server_x,
            };
            let to_balancer = matches!(ev.kind, EventKind::HttpRequest(_) | EventKind::WsUpgrade(_))
                && handed.contains(&ev.exchange);
            let (x1, mut x2) = match (from, hop) {
                _ if is_note => (if client_x >= node_x { left } else { client_x }, node_x),
                (_, Some(h)) => {
                    let (a, b) = h.step.lanes(&ev.node);
                    (lane_x(a), lane_x(b))
                }
                (Side::Client, None) if to_balancer => (client_x, lane_x(BALANCER_LANE)),
                (Side::Client, None) => (client_x, node_x),
                (Side::Server, None) => (node_x, client_x),
            };
            let (text, tone) = label(&ev.kind);
            let lost = matches!(ev.kind, EventKind::Failure(_))
                || matches!(&ev.kind, EventKind::WsClose(c) if !c.clean);
            let beside = next_lane(client_x);
            if lost {
                x2 = lost_x(client_x, beside);
            }
            let y = top + geo.row * (i as f64 + 0.5);
            let drop = slant(transit_us(item, offset), geo.row);
            let (y1, y2) = (y - drop / 2.0, y + drop / 2.0);
            let at = sent_at(item, offset);
            // Words under the arrow, and a shorter form for where they do not fit.
            let mut note = String::new();
            let mut short = String::new();
            let local = item.is_local();
            if !local && matches!(ev.kind, EventKind::HttpRequest(_)) {
                arrived.insert(ev.exchange, (y2, text.clone()));
            }
            if let Some(h) = hop {
                note = format!("took {}", time::duration(h.took_us as i64));
                short = time::duration(h.took_us as i64);
            }
            if let Some(c) = ev.cause
                && let Some((y, what)) = arrived.get(&c)
            {
                links.push(Link { x: node_x, y1: *y, y2: y1, cause: c });
                note = format!("pushed because of {what}");
                short = format!("⇠ {what}");
            }
            match &ev.kind {
                EventKind::HttpRequest(_) | EventKind::WsUpgrade(_) => {
                    request_rows.insert((ev.exchange, local), (y2, ev.at.client_us, ev.at.server_us));
                }
                EventKind::HttpResponse(_) | EventKind::WsAccept(_) => {
                    if let Some(&(req_y, req_client, req_server)) = request_rows.get(&(ev.exchange, local)) {
                        if let (Some(c0), Some(c1)) = (req_client, ev.at.client_us) {
                            note = format!("round trip {}", time::duration(c1 - c0));
                            short = format!("↻ {}", time::duration(c1 - c0));
                        }
                        if let (Some(s0), Some(s1)) = (req_server, ev.at.server_us) {
                            let last = node_x >= server_x - 0.5;
                            let label = if last { time::duration(s1 - s0) } else { String::new() };
                            bars.push(Bar { x: node_x, y1: req_y, y2: y1, label });
                        }
                    }
                }
                _ => {}
            }
            if let (true, Some(us)) = (note.is_empty(), transit_us(item, offset)) {
                // Within the clock offset's error, a transit time says nothing but "very short".
                let d = if us <= offset.error_us {
                    format!("< {}", time::duration(offset.error_us.max(100)))
                } else {
                    time::duration(us)
                };
                note = format!("transit {d}");
                short = d;
            }
            let (label_x, span) = if is_note || hop.is_some() {
                ((x1 + x2) / 2.0, (x2 - x1).abs())
            } else {
                ((client_x + beside) / 2.0, (beside - client_x).abs())
            };
            let room = ((span - 8.0).max(0.0) / geo.char_width).floor() as usize;
            // The note is smaller type than the label (about 0.88 of its width per character).
            let note_room = (room as f64 / 0.88).floor() as usize;
            let note = if note.chars().count() <= note_room { note } else { cut(&short, note_room.max(4)) };
            let when = match (server_time(item, offset), start) {
                (Some(a), Some(s)) => time::offset(a, s),
                _ => String::new(),
            };
            let clock = at.map(|a| format!(" at {}", time::clock(a, utc_offset_min))).unwrap_or_default();
            let who = if local { " (seen by this browser only)" } else { "" };
            let seq = if local { String::new() } else { format!("#{} ", ev.seq) };
            arrows.push(Arrow {
                key: item.key,
                seq: ev.seq,
                exchange: ev.exchange,
                y,
                x1,
                y1,
                x2,
                y2,
                label: cut(&text, room.max(4)),
                label_x,
                title: format!("{seq}{text}{clock}{who}"),
                time: when,
                note,
                tone,
                lost,
                local,
                server_us: ev.at.server_us,
                client: ev.client.clone(),
                mine: ev.client == t.me(),
                cause: ev.cause,
                is_note,
            });
        }
        let height = top + geo.row * rows.len().max(1) as f64 + 16.0;
        let earlier = (t.earlier() > 0).then(|| format!("{} earlier events not shown", t.earlier()));
        // Bar labels sit right of the server's lane, in the margin, away from every arrow.
        let bar_labels = geo.margin >= 10.0 * geo.char_width;
        Diagram {
            width: geo.width,
            height,
            lanes,
            arrows,
            bars,
            links,
            top,
            row: geo.row,
            bar_labels,
            rows: rows.len(),
            earlier,
            scale: geo.scale,
        }
    }

    /// The rows to draw for a viewport showing `scroll_top..scroll_top + view_height` of the
    /// drawing, with `overscan` rows to spare on each side.
    pub fn window(
        rows: usize,
        geo: &Geometry,
        top: f64,
        scroll_top: f64,
        view_height: f64,
        overscan: usize,
    ) -> Range<usize> {
        let first = ((scroll_top - top) / geo.row).floor().max(0.0) as usize;
        let count = (view_height / geo.row).ceil() as usize + 1;
        let start = first.saturating_sub(overscan).min(rows);
        let end = (first + count + overscan).min(rows);
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{req, res};
    use protocol::{
        Body, ClientInfo, CloseInfo, Event, Failure, HttpRequest, Opcode, Stamps, WsAccept, WsClose, WsFrame,
        WsUpgrade,
    };

    fn server(t: &mut Timeline, seq: u64, client: &str, exchange: u64, server_us: i64, kind: EventKind) {
        t.add_server(crate::model::fixtures::event(seq, client, exchange, Some(server_us), kind));
    }

    fn lay(t: &Timeline, width: f64) -> Diagram {
        let rows: Vec<&Item> = t.items().iter().collect();
        Diagram::layout(t, &rows, &Geometry::for_width(width), View::Client, 0..rows.len(), 0)
    }

    /// An exchange served by `node`: handed off by the balancer (if `handed`), one query.
    fn served(t: &mut Timeline, seq: u64, exchange: u64, node: &str, handed: bool) {
        use protocol::{Hop, Step};
        let mut add = |seq: u64, us: i64, kind: EventKind| {
            let mut e = crate::model::fixtures::event(seq, "me", exchange, Some(us), kind);
            e.node = node.to_owned();
            t.add_server(e);
        };
        let mut seq = seq;
        add(seq, 1_200, req("/transcripts/1"));
        if handed {
            let step = Step::Handoff { server: node.to_owned() };
            add(seq + 1, 1_000, EventKind::Hop(Hop { step, took_us: 200 }));
            seq += 1;
        }
        let step = Step::Query {
            database: "postgresql".into(),
            statement: "SELECT".into(),
            table: "students".into(),
            rows: 1,
        };
        add(seq + 1, 1_300, EventKind::Hop(Hop { step, took_us: 400 }));
        add(seq + 2, 1_900, res(200));
    }

    #[test]
    fn the_inside_view_draws_the_balancer_each_node_and_the_database_and_the_client_view_one_server() {
        let mut t = Timeline::new("me", 20);
        served(&mut t, 1, 7, "replica-2", true);
        served(&mut t, 5, 8, "replica-1", false);
        let inside = crate::model::Filter { view: View::Inside, ..Default::default() };
        let rows = inside.apply(&t);
        let d = Diagram::layout(&t, &rows, &Geometry::for_width(1200.0), View::Inside, 0..rows.len(), 0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "Balancer", "replica-1", "replica-2", "PostgreSQL"]);
        assert!(d.has_balancer());
        let x = |title: &str| d.lanes.iter().find(|l| l.title == title).unwrap().x;
        let (me, lb, r1, r2, pg) =
            (x("This browser"), x("Balancer"), x("replica-1"), x("replica-2"), x("PostgreSQL"));
        assert!(me < lb && lb < r1 && r1 < r2 && r2 < pg && pg <= 1200.0);
        let drawn: Vec<(String, f64, f64)> = d.arrows.iter().map(|a| (a.label.clone(), a.x1, a.x2)).collect();
        assert_eq!(
            drawn,
            [
                ("GET /transcripts/1".to_owned(), me, lb),
                ("hand-off to replica-2".to_owned(), lb, r2),
                ("SELECT students · 1 row".to_owned(), r2, pg),
                ("200 OK".to_owned(), r2, me),
                // Not handed off (a replica reached directly): straight to the replica.
                ("GET /transcripts/1".to_owned(), me, r1),
                ("SELECT students · 1 row".to_owned(), r1, pg),
                ("200 OK".to_owned(), r1, me),
            ]
        );
        assert_eq!(d.arrows[1].note, "took 0.2 ms");
        assert!(d.arrows.iter().filter(|a| a.label.starts_with("SELECT")).all(|a| a.tone == Tone::Inside));
        let bars: Vec<f64> = d.bars.iter().map(|b| b.x).collect();
        assert_eq!(bars, [r2, r1], "each exchange's time on the lane of the node that served it");
        assert!(d.bars.iter().all(|b| b.label.is_empty()), "no label where the steps' arrows pass");

        // The client view of the same timeline: one server lane, no steps inside.
        let client = crate::model::Filter::default();
        let rows = client.apply(&t);
        let d = Diagram::layout(&t, &rows, &Geometry::for_width(1200.0), View::Client, 0..rows.len(), 0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "Server"]);
        let labels: Vec<&str> = d.arrows.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["GET /transcripts/1", "200 OK", "GET /transcripts/1", "200 OK"]);
        assert!(
            d.bars.iter().all(|b| !b.label.is_empty()),
            "the server's lane is the last: labels in the margin"
        );
    }

    #[test]
    fn the_inside_view_of_one_server_is_its_node_and_its_database() {
        let mut t = Timeline::new("me", 20);
        served(&mut t, 1, 7, "laptop", false);
        let rows: Vec<&Item> = t.items().iter().collect();
        let d = Diagram::layout(&t, &rows, &Geometry::for_width(800.0), View::Inside, 0..rows.len(), 0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "laptop", "PostgreSQL"]);
        assert!(!d.has_balancer(), "one server alone: the page explains how to see more");
        let empty = Timeline::new("me", 20);
        let d = Diagram::layout(&empty, &[], &Geometry::for_width(800.0), View::Inside, 0..0, 0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "Server"], "nothing served yet");
    }

    #[test]
    fn presentation_scale_reaches_the_drawing() {
        let t = Timeline::new("me", 10);
        let geo = Geometry::for_width(1920.0 / 2.0).scaled(2.0);
        let d = Diagram::layout(&t, &[], &Geometry { width: 1920.0, ..geo }, View::Client, 0..0, 0);
        assert_eq!((d.scale, d.row), (2.0, 100.0));
        assert_eq!(lay(&t, 1920.0).scale, 1.0);
    }

    #[test]
    fn an_empty_timeline_still_shows_this_browser_and_the_server() {
        let t = Timeline::new("me", 10);
        let d = lay(&t, 800.0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "Server"]);
        assert!(d.lanes[0].is_self && d.lanes[1].is_server);
        assert!(d.lanes[0].x < d.lanes[1].x && d.lanes[1].x <= 800.0);
        assert!(d.arrows.is_empty() && d.earlier.is_none());
        assert!(d.height > d.top);
    }

    #[test]
    fn requests_go_right_responses_come_back_with_round_trip_and_server_time() {
        let mut t = Timeline::new("me", 10);
        t.add_local(1, req("/api/health"), 1_000_000);
        t.add_local(1, res(200), 1_003_100);
        let d = lay(&t, 800.0);
        let (me, srv) = (d.lanes[0].x, d.lanes[1].x);
        let [a, b] = &d.arrows[..] else { panic!("two arrows") };
        assert_eq!((a.x1, a.x2, a.label.as_str(), a.tone), (me, srv, "GET /api/health", Tone::Request));
        assert_eq!((b.x1, b.x2, b.label.as_str(), b.tone), (srv, me, "200 OK", Tone::Success));
        assert_eq!((a.time.as_str(), b.time.as_str()), ("+0 ms", "+3.1 ms"));
        assert_eq!(b.note, "round trip 3.1 ms");
        assert!(a.local && b.local && b.y > a.y);
        assert_eq!((a.y1, a.y2), (a.y, a.y), "no clock relation yet: no slant");

        // The server's records arrive; with a clock offset known, transit shows as slant and
        // the server's time as a bar.
        let mut t = Timeline::new("me", 10);
        t.offset.add(0, 0, 0);
        let ev = |seq, client_us, server_us, kind| Event {
            node: String::new(),
            seq,
            client: "me".into(),
            exchange: 9,
            client_ref: Some(1),
            cause: None,
            at: Stamps { client_us: Some(client_us), server_us: Some(server_us) },
            kind,
        };
        t.add_server(ev(1, 1_000_000, 1_001_000, req("/api/health")));
        t.add_server(ev(2, 1_003_000, 1_001_400, res(200)));
        let d = lay(&t, 800.0);
        let [a, b] = &d.arrows[..] else { panic!("two arrows") };
        assert!(a.y2 > a.y1 && b.y2 > b.y1, "slanted");
        assert_eq!(a.note, "transit 1.0 ms");
        assert_eq!(d.bars.len(), 1);
        assert_eq!(d.bars[0].label, "0.4 ms");
        assert!(d.bars[0].y1 <= d.bars[0].y2 && d.bars[0].x == d.lanes[1].x);
    }

    #[test]
    fn a_websocket_session_draws_every_step() {
        let mut t = Timeline::new("me", 20);
        let frame = |from, s: &str| {
            EventKind::WsFrame(WsFrame { from, opcode: Opcode::Text, fin: true, payload: Body::text(s) })
        };
        let close = |from| {
            EventKind::WsClose(WsClose {
                from,
                close: Some(CloseInfo { code: 1000, reason: String::new() }),
                clean: true,
            })
        };
        for (i, k) in [
            EventKind::WsUpgrade(WsUpgrade { path: "/ws/echo".into(), query: None, headers: vec![] }),
            EventKind::WsAccept(WsAccept { status: 101, headers: vec![] }),
            frame(Side::Client, "hi"),
            frame(Side::Server, "hi"),
            close(Side::Client),
            close(Side::Server),
        ]
        .into_iter()
        .enumerate()
        {
            t.add_local(2, k, i as i64 * 10);
        }
        let d = lay(&t, 900.0);
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
    }

    #[test]
    fn a_pushed_frame_is_linked_to_the_request_that_caused_it() {
        let mut t = Timeline::new("me", 20);
        let post = EventKind::HttpRequest(HttpRequest {
            method: "POST".into(),
            path: "/transcripts".into(),
            query: None,
            headers: vec![],
            body: None,
        });
        server(&mut t, 1, "c-ana", 41, 10, post);
        server(&mut t, 2, "c-ana", 41, 20, res(200));
        let frame = EventKind::WsFrame(WsFrame {
            from: Side::Server,
            opcode: Opcode::Text,
            fin: true,
            payload: Body::text("{}"),
        });
        for (seq, client) in [(3, "me"), (4, "c-ben")] {
            t.add_server(Event {
                node: String::new(),
                seq,
                client: client.into(),
                exchange: 90 + seq,
                client_ref: None,
                cause: Some(41),
                at: Stamps { client_us: None, server_us: Some(30) },
                kind: frame.clone(),
            });
        }
        let d = lay(&t, 1000.0);
        assert_eq!(d.links.len(), 2, "one line per pushed frame");
        assert!(d.links.iter().all(|l| l.cause == 41 && l.y1 < l.y2 && l.x == d.lanes.last().unwrap().x));
        assert_eq!(d.arrows[3].cause, Some(41));
        // The words fit beside the lane, in the short form where the long one would not.
        assert_eq!(d.arrows[2].note, "⇠ POST /transcripts");
        assert_eq!(lay(&t, 1920.0).arrows[2].note, "pushed because of POST /transcripts");
    }

    #[test]
    fn lost_messages_stop_short() {
        let mut t = Timeline::new("me", 10);
        t.add_local(1, EventKind::Failure(Failure { from: Side::Client, message: "no answer".into() }), 0);
        let d = lay(&t, 800.0);
        let a = &d.arrows[0];
        assert!(a.lost && a.tone == Tone::Lost);
        assert!(a.x2 > a.x1 && a.x2 < d.lanes[1].x);
    }

    #[test]
    fn lanes_are_named_and_fold_into_others_past_the_width() {
        let mut t = Timeline::new("me", 100);
        server(
            &mut t,
            1,
            "c-ana",
            0,
            0,
            EventKind::Client(ClientInfo { nickname: Some("Ana".into()), ..ClientInfo::default() }),
        );
        server(
            &mut t,
            2,
            "anon:1a2b3c4d",
            0,
            0,
            EventKind::Client(ClientInfo { agent: Some("curl".into()), ..ClientInfo::default() }),
        );
        server(&mut t, 3, "c-ana", 1, 10, req("/transcripts"));
        server(&mut t, 4, "anon:1a2b3c4d", 2, 20, req("/transcripts/1"));
        let d = lay(&t, 1200.0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["This browser", "Ana", "curl · 1a2b3c4d", "Server"]);
        assert!(d.lanes.windows(2).all(|w| w[1].x > w[0].x));

        for (i, c) in ["c-b", "c-c", "c-d", "c-e", "c-f", "c-g", "c-h"].iter().enumerate() {
            server(&mut t, 10 + i as u64, c, 10 + i as u64, 30, req("/x"));
        }
        let d = lay(&t, 900.0);
        let agg = d.lanes.iter().find(|l| l.is_aggregate).expect("an aggregate lane");
        assert!(agg.title.starts_with('+'), "{}", agg.title);
        assert!(d.lanes.len() <= 6, "{}", d.lanes.len());
        let quiet = d.arrows.iter().find(|a| a.client == "c-b").unwrap();
        assert_eq!(quiet.x1, agg.x, "the least recently active fold: they draw from the aggregate lane");
        let newest = d.arrows.last().unwrap();
        assert_ne!(newest.x1, agg.x, "the most recently active keep their lane");
        assert!(d.lanes.iter().all(|l| l.x > 0.0 && l.x <= 900.0));
    }

    #[test]
    fn lane_heads_never_overlap_even_on_a_phone() {
        let mut t = Timeline::new("me", 100);
        for (i, c) in ["c-a", "c-b", "c-c", "c-d"].iter().enumerate() {
            let info =
                ClientInfo { nickname: Some(format!("A rather long nickname {i}")), ..ClientInfo::default() };
            server(&mut t, 1 + i as u64 * 2, c, 0, 0, EventKind::Client(info));
            server(&mut t, 2 + i as u64 * 2, c, i as u64, 0, req("/x"));
        }
        for width in [340.0, 390.0, 800.0, 1920.0] {
            let d = lay(&t, width);
            for w in d.lanes.windows(2) {
                let gap = (w[1].x - w[1].head_width / 2.0) - (w[0].x + w[0].head_width / 2.0);
                assert!(gap >= 0.0, "{width}: {} and {} overlap by {}", w[0].title, w[1].title, -gap);
            }
            let last = d.lanes.last().unwrap();
            assert!(last.x + last.head_width / 2.0 <= width, "{width}: the server head fits");
        }
    }

    #[test]
    fn only_the_window_becomes_arrows_but_the_height_counts_every_row() {
        let mut t = Timeline::new("me", 10_000);
        for seq in 1..=5000 {
            server(&mut t, seq, "c-x", seq, seq as i64, req("/x"));
        }
        let rows: Vec<&Item> = t.items().iter().collect();
        let geo = Geometry::for_width(1000.0);
        let window = Diagram::window(rows.len(), &geo, geo.header, 10_000.0, 600.0, 5);
        assert!(window.len() < 40, "{window:?}");
        let d = Diagram::layout(&t, &rows, &geo, View::Client, window.clone(), 0);
        assert_eq!(d.arrows.len(), window.len());
        assert_eq!(d.arrows[0].seq, window.start as u64 + 1);
        assert!(d.height > geo.row * 5000.0);
        assert!(d.arrows[0].y < 10_000.0 && d.arrows.last().unwrap().y > 10_600.0);
    }

    #[test]
    fn dropped_items_are_announced() {
        let mut t = Timeline::new("me", 3);
        for seq in 1..=10 {
            server(&mut t, seq, "me", seq, 0, req("/x"));
        }
        let d = lay(&t, 800.0);
        assert_eq!(d.earlier.as_deref(), Some("7 earlier events not shown"));
        assert!(d.top > Geometry::for_width(800.0).header);
    }

    #[test]
    fn labels_are_cut_to_fit_a_phone() {
        let mut t = Timeline::new("me", 10);
        t.add_local(1, req("/transcripts/1/a%20very%20long%20course%20name%20indeed"), 0);
        let geo = Geometry::for_width(360.0);
        let d = lay(&t, 360.0);
        let a = &d.arrows[0];
        assert!(a.label.ends_with('…'));
        assert!(a.label.chars().count() as f64 * geo.char_width <= (a.x2 - a.x1).abs() + geo.char_width);
        assert!(a.title.contains("indeed"), "the tooltip keeps the whole label");
    }

    /// Three students and a curl client, each sending one request; the last one lost.
    fn classroom() -> Timeline {
        let mut t = Timeline::new("me", 100);
        for (i, (c, nick)) in [("c-ana", "Ana"), ("c-ben", "Ben"), ("c-cy", "Cy")].iter().enumerate() {
            let info = ClientInfo { nickname: Some((*nick).into()), ..ClientInfo::default() };
            server(&mut t, 1 + i as u64, c, 0, 0, EventKind::Client(info));
        }
        server(&mut t, 10, "c-ana", 1, 10, req("/transcripts/1"));
        server(&mut t, 11, "c-ben", 2, 20, req("/transcripts/2"));
        server(&mut t, 12, "c-cy", 3, 30, req("/transcripts/3"));
        server(
            &mut t,
            13,
            "c-ana",
            1,
            40,
            EventKind::Failure(Failure { from: Side::Server, message: "no answer".into() }),
        );
        t
    }

    #[test]
    fn a_lost_message_ends_between_its_own_lane_and_the_next_never_on_a_lifeline() {
        let t = classroom();
        for width in [390.0, 1366.0, 1920.0] {
            let d = lay(&t, width);
            let lost = d.arrows.iter().find(|a| a.lost).unwrap();
            let ana = d.lanes.iter().find(|l| l.key == "c-ana" || (l.is_aggregate && lost.x2 > l.x));
            let ana_x = ana.map_or(lost.x2, |l| l.x);
            let next = d.lanes.iter().map(|l| l.x).filter(|x| *x > ana_x + 0.5).fold(f64::MAX, f64::min);
            assert!(
                lost.x2 > ana_x && lost.x2 < next,
                "{width}: ✕ at {} not between {ana_x} and {next}",
                lost.x2
            );
            for l in &d.lanes {
                assert!((l.x - lost.x2).abs() > 20.0, "{width}: ✕ on {}'s lifeline", l.title);
            }
        }
        assert_eq!(lost_x(100.0, 300.0), 200.0);
    }

    #[test]
    fn a_label_stays_beside_its_own_lane_and_off_every_other_lifeline() {
        let t = classroom();
        for width in [390.0, 800.0, 1920.0] {
            let geo = Geometry::for_width(width);
            let d = lay(&t, width);
            for a in d.arrows.iter().filter(|a| !a.is_note) {
                let half = a.label.chars().count() as f64 * geo.char_width / 2.0;
                for l in &d.lanes {
                    let crosses = (a.label_x - half..=a.label_x + half).contains(&l.x);
                    assert!(
                        !crosses,
                        "{width}: label {:?} of {} lies across {}'s lane",
                        a.label, a.client, l.title
                    );
                }
            }
        }
    }

    #[test]
    fn on_a_phone_classmates_are_named_and_the_most_recently_active_keep_a_lane() {
        let t = classroom();
        let d = lay(&t, 337.0);
        let titles: Vec<&str> = d.lanes.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles.first(), Some(&"You"), "{titles:?}");
        assert!(titles.contains(&"Ana"), "Ana acted last: {titles:?}");
        assert_eq!(titles.last(), Some(&"Server"));
        assert!(titles.iter().all(|t| !t.ends_with('…')), "no cut names: {titles:?}");
        let agg = d.lanes.iter().find(|l| l.is_aggregate).expect("the rest fold");
        assert!(agg.title.starts_with('+'));
    }

    #[test]
    fn the_frame_ends_inside_the_screen_so_the_followed_row_is_in_view() {
        // Presentation at 1920×1080: the frame starts under the playback bar.
        let h = frame_height(1080.0, 190.0, 120.0, 6.0);
        assert_eq!(h, 884.0);
        assert!(190.0 + h <= 1080.0, "the newest row's box ends above the screen's edge");
        // A laptop at 1366×768.
        assert!(250.0 + frame_height(768.0, 250.0, 64.0, 12.0) <= 768.0);
        // A phone, the frame far down the page: the screen under the lane heads.
        assert_eq!(frame_height(844.0, 2400.0, 64.0, 12.0), 768.0);
        // Never a sliver.
        assert_eq!(frame_height(300.0, 250.0, 64.0, 12.0), 224.0);
        assert_eq!(frame_height(200.0, 190.0, 64.0, 12.0), 160.0);
    }

    #[test]
    fn bar_labels_never_sit_over_arrows() {
        let mut t = Timeline::new("me", 10);
        server(&mut t, 1, "me", 1, 0, req("/x"));
        server(&mut t, 2, "me", 1, 959_000, res(200));
        assert!(lay(&t, 1920.0).bar_labels, "room in the margin right of the server");
        assert!(!lay(&t, 390.0).bar_labels, "no room on a phone: no label");
    }

    #[test]
    fn slant_grows_slowly_and_is_capped() {
        assert_eq!(slant(None, 50.0), 0.0);
        let (a, b, c) = (slant(Some(100), 50.0), slant(Some(10_000), 50.0), slant(Some(5_000_000), 50.0));
        assert!(a > 0.0 && b > a && c > b && c <= 25.0);
    }
}
