//! What a browser adds to the server's record of a session when it exports it: its own send
//! and receive times of messages the server recorded, and what only it saw (a request that
//! never reached the server, everything while its stream was down), each placed after the
//! server event it followed on its screen.

use std::collections::HashMap;

use protocol::Event;
use serde::{Deserialize, Serialize};

/// Most observations a browser may add (its timeline keeps no more rows).
pub const MAX_OBSERVATIONS: usize = 5_000;

/// Most rows only a browser saw that it sends with an export (the newest): with bodies left
/// out ([`lean`]) they stay far under the server's 1 MiB body limit.
pub const MAX_LOCAL: usize = 500;

/// `e` without its body previews (their sizes stay): what a browser sends of its own rows.
pub fn lean(mut e: Event) -> Event {
    let strip = |b: &mut protocol::Body| {
        b.text = None;
        b.hex = None;
        b.truncated = b.size > 0;
    };
    match &mut e.kind {
        protocol::EventKind::HttpRequest(r) => r.body.iter_mut().for_each(strip),
        protocol::EventKind::HttpResponse(r) => r.body.iter_mut().for_each(strip),
        protocol::EventKind::WsFrame(f) => strip(&mut f.payload),
        _ => {}
    }
    e
}

/// Something only the browser saw, and the last server event before it on its screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Local {
    /// `seq` of the server event it followed (0: before any).
    pub after: u64,
    pub event: Event,
}

/// A browser's own observations of a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observations {
    /// `[seq, clientUs]`: when this browser sent or received the message the server recorded
    /// as `seq`.
    #[serde(default)]
    pub client_times: Vec<(u64, i64)>,
    /// What only this browser saw, in its order.
    #[serde(default)]
    pub local: Vec<Local>,
}

impl Observations {
    /// How many observations there are.
    pub fn len(&self) -> usize {
        self.client_times.len() + self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Interleaves observations with the server's events as they stream past.
#[derive(Debug, Default)]
pub struct Merger {
    times: HashMap<u64, i64>,
    /// In reverse order of `after` (the next one to place is last).
    local: Vec<Local>,
}

impl Merger {
    /// At most [`MAX_OBSERVATIONS`] are used; answers the merger and how many were left out.
    pub fn new(obs: Observations) -> (Self, usize) {
        let mut dropped = 0;
        let mut times = HashMap::new();
        for (seq, us) in obs.client_times {
            if times.len() < MAX_OBSERVATIONS {
                times.insert(seq, us);
            } else {
                dropped += 1;
            }
        }
        let mut local = obs.local;
        if local.len() > MAX_OBSERVATIONS {
            dropped += local.len() - MAX_OBSERVATIONS;
            local.truncate(MAX_OBSERVATIONS);
        }
        // Stable: observations after the same event keep their order.
        local.sort_by_key(|l| l.after);
        local.reverse();
        (Self { times, local }, dropped)
    }

    fn take_until(&mut self, seq: u64, out: &mut Vec<Event>) {
        while self.local.last().is_some_and(|l| l.after <= seq) {
            if let Some(l) = self.local.pop() {
                let mut e = l.event;
                e.seq = 0;
                out.push(e);
            }
        }
    }

    /// The server's event `e` (with this browser's time, if it has one), preceded by what
    /// only the browser saw before it.
    pub fn next(&mut self, mut e: Event, out: &mut Vec<Event>) {
        self.take_until(e.seq.saturating_sub(1), out);
        if let Some(us) = self.times.get(&e.seq) {
            e.at.client_us = Some(*us);
        }
        let seq = e.seq;
        out.push(e);
        self.take_until(seq, out);
    }

    /// What only the browser saw after the last server event.
    pub fn rest(&mut self, out: &mut Vec<Event>) {
        self.take_until(u64::MAX, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{EventKind, Failure, Side, Stamps};

    fn ev(seq: u64, msg: &str) -> Event {
        Event {
            node: String::new(),
            seq,
            client: "me".into(),
            exchange: 1,
            client_ref: None,
            cause: None,
            at: Stamps { client_us: None, server_us: Some(seq as i64) },
            kind: EventKind::Failure(Failure { from: Side::Client, message: msg.into() }),
        }
    }

    #[test]
    fn local_events_land_after_the_event_they_followed_and_times_join() {
        let obs = Observations {
            client_times: vec![(2, 77)],
            local: vec![
                Local { after: 0, event: ev(0, "first") },
                Local { after: 2, event: ev(0, "after two") },
                Local { after: 9, event: ev(0, "at the end") },
            ],
        };
        let (mut m, dropped) = Merger::new(obs);
        assert_eq!(dropped, 0);
        let mut out = Vec::new();
        for seq in 1..=3 {
            m.next(ev(seq, "server"), &mut out);
        }
        m.rest(&mut out);
        let got: Vec<(u64, String)> = out
            .iter()
            .map(|e| match &e.kind {
                EventKind::Failure(f) => (e.seq, f.message.clone()),
                _ => unreachable!(),
            })
            .collect();
        let want =
            [(0, "first"), (1, "server"), (2, "server"), (0, "after two"), (3, "server"), (0, "at the end")];
        assert_eq!(got, want.map(|(s, m)| (s, m.to_owned())));
        assert_eq!(out[2].at.client_us, Some(77), "the browser's own time joined");
    }

    #[test]
    fn observations_are_bounded_and_the_excess_counted() {
        let local = (0..MAX_OBSERVATIONS + 7).map(|_| Local { after: 0, event: ev(0, "x") }).collect();
        let (_, dropped) = Merger::new(Observations { client_times: Vec::new(), local });
        assert_eq!(dropped, 7);
    }
}
