//! What the diagram shows: filters by client, kind of traffic and path.

use std::collections::BTreeSet;

use protocol::EventKind;

use super::timeline::{Item, Timeline};

/// Which diagram: the client's (one "Server" lane, what a client sees) or the inside view
/// (the balancer, each node and each database as lanes, with the steps between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Client,
    Inside,
}

impl View {
    /// The other view (key `I` switches).
    pub fn other(self) -> View {
        match self {
            View::Client => View::Inside,
            View::Inside => View::Client,
        }
    }
}

/// The kinds of traffic the filter knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// HTTP requests and responses (and requests that failed).
    Rest,
    /// WebSocket handshakes, data frames and close frames.
    WsData,
    /// WebSocket pings and pongs.
    WsControl,
    /// Steps inside the system (shown in the inside view only).
    Inside,
}

pub fn class(kind: &EventKind) -> Class {
    match kind {
        EventKind::WsFrame(f) if f.opcode.is_control() => Class::WsControl,
        EventKind::Hop(_) => Class::Inside,
        EventKind::WsUpgrade(_) | EventKind::WsAccept(_) | EventKind::WsFrame(_) | EventKind::WsClose(_) => {
            Class::WsData
        }
        _ => Class::Rest,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Clients whose lanes are hidden.
    pub hidden: BTreeSet<String>,
    pub rest: bool,
    pub ws_data: bool,
    /// Pings and pongs: hidden unless asked for.
    pub ws_control: bool,
    /// Only exchanges whose path contains this (case-insensitive); empty: all.
    pub path: String,
    pub view: View,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            hidden: BTreeSet::new(),
            rest: true,
            ws_data: true,
            ws_control: false,
            path: String::new(),
            view: View::Client,
        }
    }
}

impl Filter {
    pub fn admits(&self, item: &Item) -> bool {
        let kind_ok = match class(&item.event.kind) {
            Class::Rest => self.rest,
            Class::WsData => self.ws_data,
            Class::WsControl => self.ws_control,
            // Steps inside the system: in the inside view only.
            Class::Inside => self.view == View::Inside,
        };
        kind_ok
            && !self.hidden.contains(&item.event.client)
            && (self.path.is_empty() || item.path.to_lowercase().contains(&self.path.trim().to_lowercase()))
    }

    /// True when nothing is filtered out (whichever the view).
    pub fn is_default(&self) -> bool {
        *self == Filter { view: self.view, ..Filter::default() }
    }

    /// The items of `timeline` this filter lets through, in order.
    pub fn apply<'a>(&self, timeline: &'a Timeline) -> Vec<&'a Item> {
        timeline.items().iter().filter(|i| self.admits(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Body, HttpRequest, Opcode, Side, WsFrame, WsUpgrade};

    fn add(t: &mut Timeline, seq: u64, client: &str, kind: EventKind) {
        // Frames (seq 4, 5) belong to the WebSocket opened at seq 3.
        let exchange = if seq >= 4 { 3 } else { seq };
        t.add_server(crate::model::fixtures::event(seq, client, exchange, None, kind));
    }

    fn timeline() -> Timeline {
        let mut t = Timeline::new("me", 100);
        let req = |p: &str| {
            EventKind::HttpRequest(HttpRequest {
                method: "GET".into(),
                path: p.into(),
                query: None,
                headers: vec![],
                body: None,
            })
        };
        add(&mut t, 1, "me", req("/transcripts/1"));
        add(&mut t, 2, "ana", req("/api/health"));
        add(
            &mut t,
            3,
            "ana",
            EventKind::WsUpgrade(WsUpgrade { path: "/ws/echo".into(), query: None, headers: vec![] }),
        );
        let frame = |opcode| {
            EventKind::WsFrame(WsFrame { from: Side::Server, opcode, fin: true, payload: Body::default() })
        };
        add(&mut t, 4, "ana", frame(Opcode::Ping));
        add(&mut t, 5, "ana", frame(Opcode::Text));
        t
    }

    fn seqs(f: &Filter, t: &Timeline) -> Vec<u64> {
        f.apply(t).iter().map(|i| i.event.seq).collect()
    }

    #[test]
    fn pings_are_hidden_by_default() {
        let t = timeline();
        assert_eq!(seqs(&Filter::default(), &t), [1, 2, 3, 5]);
        let all = Filter { ws_control: true, ..Filter::default() };
        assert_eq!(seqs(&all, &t), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn by_kind_client_and_path() {
        let t = timeline();
        assert_eq!(seqs(&Filter { rest: false, ..Filter::default() }, &t), [3, 5]);
        assert_eq!(seqs(&Filter { ws_data: false, ..Filter::default() }, &t), [1, 2]);
        let hide_ana = Filter { hidden: ["ana".to_owned()].into(), ..Filter::default() };
        assert_eq!(seqs(&hide_ana, &t), [1]);
        assert_eq!(seqs(&Filter { path: "TRANSCRIPTS".into(), ..Filter::default() }, &t), [1]);
        assert_eq!(
            seqs(&Filter { path: "/ws".into(), ..Filter::default() }, &t),
            [3, 5],
            "frames follow their connection's path"
        );
        assert!(Filter::default().is_default());
    }
}
