//! The app's one list of what happened: the server's event log (from `/ws/observe`) merged with
//! what this browser saw itself.
//!
//! A server event of this browser's (same client id, with the client's own exchange id in
//! `clientRef`) is joined to the matching local observation — same exchange, same kind of
//! message, same position among that exchange's messages in that direction — and gains this
//! browser's timestamp. Local observations the server never reported (a request that failed
//! before reaching it, or everything while the stream is down) stay as they are. The timeline
//! is bounded: past its capacity the oldest items go and are counted.

use std::collections::{HashMap, VecDeque};

use protocol::{ClientInfo, ClockOffset, Event, EventKind, Micros, NoteKind, Opcode, Side, Stamps};

/// Which one of an item's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKey {
    /// A server event, by its `seq`.
    Seq(u64),
    /// Something only this browser has seen (so far).
    Local(u64),
}

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: ItemKey,
    pub event: Event,
    /// The path of the exchange this event belongs to (for frames and responses too).
    pub path: String,
}

impl Item {
    pub fn is_local(&self) -> bool {
        matches!(self.key, ItemKey::Local(_))
    }
}

/// The matching key of a message: (client's exchange id, kind, direction, ordinal).
type Slot = (u64, u8, Side, u32);

fn slot_kind(kind: &EventKind) -> Option<u8> {
    Some(match kind {
        EventKind::HttpRequest(_) => 0,
        EventKind::HttpResponse(_) => 1,
        EventKind::WsUpgrade(_) => 2,
        EventKind::WsAccept(_) => 3,
        // The browser never sees pings and pongs: they do not count.
        EventKind::WsFrame(f) if !f.opcode.is_control() && f.opcode != Opcode::Continuation => 4,
        EventKind::WsClose(c) if c.clean => 5,
        _ => return None,
    })
}

/// Counts messages per (exchange, kind, direction) to give each its ordinal.
#[derive(Debug, Default)]
struct Ordinals(HashMap<(u64, u8, Side), u32>);

impl Ordinals {
    fn next(&mut self, exchange: u64, kind: &EventKind) -> Option<Slot> {
        let k = slot_kind(kind)?;
        let from = kind.from();
        let n = self.0.entry((exchange, k, from)).or_default();
        let slot = (exchange, k, from, *n);
        *n += 1;
        Some(slot)
    }
}

/// A replayed file, as read: its events and its lane names (client id, nickname).
#[derive(Debug)]
struct Imported {
    events: Vec<Event>,
    names: Vec<(String, String)>,
}

/// The merged, bounded list.
#[derive(Debug)]
pub struct Timeline {
    me: String,
    capacity: usize,
    items: VecDeque<Item>,
    earlier: u64,
    latest_seq: u64,
    next_local: u64,
    server_ordinals: Ordinals,
    local_ordinals: Ordinals,
    /// Local items waiting for their server twin.
    local_waiting: HashMap<Slot, u64>,
    /// Server items of ours whose local twin has not been recorded yet.
    server_waiting: HashMap<Slot, u64>,
    /// Paths of exchanges: by server exchange id, and by this browser's exchange id.
    server_paths: HashMap<u64, String>,
    local_paths: HashMap<u64, String>,
    clients: HashMap<String, ClientInfo>,
    /// Client lanes in order of first appearance.
    order: Vec<String>,
    pub offset: ClockOffset,
    /// Observers following the log (from the latest presence note).
    pub observers: u32,
    /// The lane the instructor highlights.
    pub highlight: Option<String>,
    /// A replayed file's events and lane names exactly as read (exported again unchanged).
    imported: Option<Imported>,
}

fn path_of(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::HttpRequest(r) => Some(r.path.clone()),
        EventKind::WsUpgrade(u) => Some(u.path.clone()),
        _ => None,
    }
}

impl Timeline {
    pub fn new(me: impl Into<String>, capacity: usize) -> Self {
        Self {
            me: me.into(),
            capacity: capacity.max(1),
            items: VecDeque::new(),
            earlier: 0,
            latest_seq: 0,
            next_local: 1,
            server_ordinals: Ordinals::default(),
            local_ordinals: Ordinals::default(),
            local_waiting: HashMap::new(),
            server_waiting: HashMap::new(),
            server_paths: HashMap::new(),
            local_paths: HashMap::new(),
            clients: HashMap::new(),
            order: Vec::new(),
            offset: ClockOffset::default(),
            observers: 0,
            highlight: None,
            imported: None,
        }
    }

    /// A timeline holding exactly `events`, in this order (an imported trace, a recorded
    /// session): nothing merged, nothing dropped, so exporting it again gives the same trace.
    pub fn replay(me: String, names: Vec<(String, String)>, events: Vec<Event>) -> Self {
        let mut t = Timeline::new(me, events.len().max(1));
        t.imported = Some(Imported { events: events.clone(), names: names.clone() });
        for (client, nickname) in names {
            t.clients.insert(client, ClientInfo { nickname: Some(nickname), ..ClientInfo::default() });
        }
        for (n, event) in events.into_iter().enumerate() {
            match &event.kind {
                EventKind::Client(info) => {
                    t.clients.insert(event.client.clone(), info.clone());
                    continue;
                }
                EventKind::Presence(_) => continue,
                _ => {}
            }
            if let Some(p) = path_of(&event.kind) {
                t.server_paths.insert(event.exchange, p);
            }
            t.latest_seq = t.latest_seq.max(event.seq);
            let key = if event.seq > 0 { ItemKey::Seq(event.seq) } else { ItemKey::Local(n as u64 + 1) };
            let path = t.server_paths.get(&event.exchange).cloned().unwrap_or_default();
            t.push(Item { key, event, path });
        }
        t
    }

    /// This browser's client id.
    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn items(&self) -> &VecDeque<Item> {
        &self.items
    }

    /// Items dropped from the front to stay within capacity (or cleared).
    pub fn earlier(&self) -> u64 {
        self.earlier
    }

    /// The newest server `seq` seen: where to resume the stream.
    pub fn latest_seq(&self) -> u64 {
        self.latest_seq
    }

    /// What every known client is called now (sent to a screen when it joins): lanes are
    /// named by nickname even when their `client` events came before this screen did.
    pub fn know_clients(&mut self, clients: Vec<protocol::ClientEntry>) {
        for c in clients {
            self.clients.insert(c.client, c.info);
        }
    }

    /// A replayed file's events (`client` and `presence` ones included) and lane names, as
    /// read.
    pub fn imported(&self) -> Option<(&[Event], impl Iterator<Item = (String, String)> + '_)> {
        self.imported.as_ref().map(|i| (i.events.as_slice(), i.names.iter().cloned()))
    }

    /// Every client this timeline knows a name or address of (with rows or not).
    pub fn known_clients(&self) -> impl Iterator<Item = (&str, &ClientInfo)> {
        self.clients.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn client(&self, id: &str) -> Option<&ClientInfo> {
        self.clients.get(id)
    }

    /// Client lanes (this browser first), in order of first appearance.
    pub fn client_order(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.me.as_str())
            .chain(self.order.iter().map(String::as_str).filter(move |c| *c != self.me))
    }

    fn position(&self, key: ItemKey) -> Option<usize> {
        // Recent items are near the end.
        self.items.iter().rposition(|i| i.key == key)
    }

    pub fn get(&self, key: ItemKey) -> Option<&Item> {
        self.position(key).map(|p| &self.items[p])
    }

    fn push(&mut self, item: Item) {
        // The server's own notes are drawn on the server's lane, never a client lane.
        if item.event.client != protocol::SERVER_LANE && !self.order.contains(&item.event.client) {
            self.order.push(item.event.client.clone());
        }
        self.items.push_back(item);
        while self.items.len() > self.capacity {
            self.items.pop_front();
            self.earlier += 1;
        }
        // Keep the matching maps bounded with the items.
        if self.local_waiting.len() > self.capacity {
            self.local_waiting.clear();
        }
        if self.server_waiting.len() > self.capacity {
            self.server_waiting.clear();
        }
        for paths in [&mut self.server_paths, &mut self.local_paths] {
            if paths.len() > self.capacity * 2 {
                paths.clear();
            }
        }
    }

    /// Records what this browser saw, now (`client_us`), for its exchange `local_exchange`.
    pub fn add_local(&mut self, local_exchange: u64, kind: EventKind, client_us: Micros) -> ItemKey {
        if let Some(p) = path_of(&kind) {
            self.local_paths.insert(local_exchange, p);
        }
        let slot = self.local_ordinals.next(local_exchange, &kind);
        if let Some(seq) = slot.and_then(|s| self.server_waiting.remove(&s))
            && let Some(pos) = self.position(ItemKey::Seq(seq))
        {
            self.items[pos].event.at.client_us = Some(client_us);
            return ItemKey::Seq(seq);
        }
        let id = self.next_local;
        self.next_local += 1;
        let event = Event {
            node: String::new(),
            seq: 0,
            client: self.me.clone(),
            exchange: local_exchange,
            client_ref: Some(local_exchange),
            cause: None,
            at: Stamps { client_us: Some(client_us), server_us: None },
            kind,
        };
        let path = self.local_paths.get(&local_exchange).cloned().unwrap_or_default();
        if let Some(s) = slot {
            self.local_waiting.insert(s, id);
        }
        self.push(Item { key: ItemKey::Local(id), event, path });
        ItemKey::Local(id)
    }

    /// Adds a server event (in `seq` order; repeats are ignored).
    pub fn add_server(&mut self, mut event: Event) {
        if event.seq <= self.latest_seq {
            return;
        }
        self.latest_seq = event.seq;
        match &event.kind {
            EventKind::Client(info) => {
                self.clients.insert(event.client.clone(), info.clone());
                return;
            }
            EventKind::Presence(p) => {
                self.observers = p.observers;
                return;
            }
            EventKind::Note(n) if n.what == NoteKind::Highlight => {
                self.highlight = (!event.client.is_empty()).then(|| event.client.clone());
                return;
            }
            // A new session: a new diagram (the note is its first row).
            EventKind::Note(n) if n.what == NoteKind::Session => self.clear(),
            _ => {}
        }
        if let Some(p) = path_of(&event.kind) {
            self.server_paths.insert(event.exchange, p);
        }
        let mine = event.client == self.me;
        let slot = match (mine, event.client_ref) {
            (true, Some(r)) => self.server_ordinals.next(r, &event.kind),
            _ => None,
        };
        // The server's record goes at the end (rows stay in `seq` order). What this browser
        // already drew after its own copy in the same exchange (a failure, say) moves below
        // it, so a request is never drawn under its own failure.
        let mut followers = Vec::new();
        if let Some(s) = slot {
            match self.local_waiting.remove(&s).and_then(|id| self.position(ItemKey::Local(id))) {
                Some(pos) => {
                    let local = self.items.remove(pos).expect("position is in range");
                    event.at.client_us = local.event.at.client_us;
                    let exchange = local.event.exchange;
                    let mut i = pos;
                    while i < self.items.len() {
                        if self.items[i].is_local() && self.items[i].event.exchange == exchange {
                            followers.extend(self.items.remove(i));
                        } else {
                            i += 1;
                        }
                    }
                }
                None => {
                    self.server_waiting.insert(s, event.seq);
                }
            }
        }
        let path = self.server_paths.get(&event.exchange).cloned().unwrap_or_default();
        self.push(Item { key: ItemKey::Seq(event.seq), event, path });
        self.items.extend(followers);
    }

    /// Forgets every item (ids and `seq` positions stay, so nothing comes back twice).
    pub fn clear(&mut self) {
        self.earlier = 0;
        self.items.clear();
        // Lanes come back as their clients act again.
        self.order.clear();
        self.local_waiting.clear();
        self.server_waiting.clear();
    }

    /// The stream restarted from scratch (a new server, or a reset log): forget its position.
    pub fn restart_stream(&mut self) {
        self.latest_seq = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{req, res};
    use protocol::{Body, WsFrame};

    fn server(seq: u64, client: &str, exchange: u64, client_ref: Option<u64>, kind: EventKind) -> Event {
        Event {
            client_ref,
            ..crate::model::fixtures::event(seq, client, exchange, Some(seq as i64 * 1000), kind)
        }
    }

    fn keys(t: &Timeline) -> Vec<ItemKey> {
        t.items().iter().map(|i| i.key).collect()
    }

    #[test]
    fn a_failed_fetch_is_drawn_below_its_request_even_when_the_server_record_comes_later() {
        let mut t = Timeline::new("me", 10);
        t.add_local(7, req("/transcripts"), 1_000);
        let lost = EventKind::Failure(protocol::Failure { from: Side::Server, message: "no answer".into() });
        t.add_local(7, lost, 2_000);
        // The server's record of the request arrives after the browser gave up.
        t.add_server(server(3, "me", 40, Some(7), req("/transcripts")));
        let kinds: Vec<bool> =
            t.items().iter().map(|i| matches!(i.event.kind, EventKind::Failure(_))).collect();
        assert_eq!(kinds, [false, true], "request, then its failure");
        assert_eq!(t.items()[0].key, ItemKey::Seq(3));
        assert_eq!(t.items()[0].event.at.client_us, Some(1_000), "with this browser's time");
    }

    #[test]
    fn a_screen_that_joins_late_names_lanes_from_the_roster() {
        let mut t = Timeline::new("me", 10);
        t.know_clients(vec![protocol::ClientEntry {
            client: "c-ana".into(),
            info: ClientInfo { nickname: Some("Ana".into()), ..ClientInfo::default() },
        }]);
        t.add_server(server(5, "c-ana", 1, None, crate::model::fixtures::req("/transcripts")));
        assert_eq!(crate::model::layout::client_title(&t, "c-ana"), "Ana");
    }

    #[test]
    fn a_local_request_is_replaced_by_its_server_twin_which_keeps_both_times() {
        let mut t = Timeline::new("me", 100);
        t.add_local(7, req("/api/health"), 111);
        assert_eq!(keys(&t), [ItemKey::Local(1)]);
        assert_eq!(t.items()[0].path, "/api/health");
        t.add_server(server(1, "me", 50, Some(7), req("/api/health")));
        assert_eq!(keys(&t), [ItemKey::Seq(1)]);
        let at = t.items()[0].event.at;
        assert_eq!((at.client_us, at.server_us), (Some(111), Some(1000)));
        // The response reaches the server's stream before the browser finished reading it.
        t.add_server(server(2, "me", 50, Some(7), res(200)));
        t.add_local(7, res(200), 222);
        assert_eq!(keys(&t), [ItemKey::Seq(1), ItemKey::Seq(2)]);
        assert_eq!(t.items()[1].event.at.client_us, Some(222));
        assert_eq!(t.items()[1].path, "/api/health", "responses carry their exchange's path");
    }

    #[test]
    fn other_clients_events_and_unmatched_local_ones_stand_alone() {
        let mut t = Timeline::new("me", 100);
        t.add_server(server(1, "other", 1, Some(7), req("/transcripts")));
        t.add_local(7, req("/api/health"), 5);
        let failure = EventKind::Failure(protocol::Failure { from: Side::Client, message: "offline".into() });
        t.add_local(7, failure, 6);
        assert_eq!(keys(&t), [ItemKey::Seq(1), ItemKey::Local(1), ItemKey::Local(2)]);
        assert_eq!(t.client_order().collect::<Vec<_>>(), ["me", "other"]);
    }

    #[test]
    fn websocket_frames_pair_up_by_order_and_pings_are_not_counted() {
        let mut t = Timeline::new("me", 100);
        let text = |from, s: &str| {
            EventKind::WsFrame(WsFrame { from, opcode: Opcode::Text, fin: true, payload: Body::text(s) })
        };
        let ping = EventKind::WsFrame(WsFrame {
            from: Side::Server,
            opcode: Opcode::Ping,
            fin: true,
            payload: Body::default(),
        });
        t.add_local(3, text(Side::Client, "a"), 10);
        t.add_local(3, text(Side::Client, "b"), 20);
        t.add_server(server(1, "me", 9, Some(3), ping));
        t.add_server(server(2, "me", 9, Some(3), text(Side::Client, "a")));
        t.add_server(server(3, "me", 9, Some(3), text(Side::Client, "b")));
        let merged: Vec<(ItemKey, Option<i64>)> =
            t.items().iter().map(|i| (i.key, i.event.at.client_us)).collect();
        assert_eq!(
            merged,
            [(ItemKey::Seq(1), None), (ItemKey::Seq(2), Some(10)), (ItemKey::Seq(3), Some(20))]
        );
    }

    #[test]
    fn a_new_session_starts_a_new_diagram_and_highlights_are_remembered() {
        let mut t = Timeline::new("me", 10);
        t.add_server(server(1, "c-a", 1, None, req("/x")));
        let note = |what, text: &str| EventKind::Note(protocol::Note { what, text: text.into() });
        t.add_server(server(2, "c-a", 0, None, note(NoteKind::Highlight, "highlight")));
        assert_eq!(t.highlight.as_deref(), Some("c-a"));
        t.add_server(server(3, "server", 0, None, note(NoteKind::Session, "lecture 2")));
        assert_eq!(keys(&t), [ItemKey::Seq(3)], "only the session note is left");
        assert_eq!(t.client_order().collect::<Vec<_>>(), ["me"], "the server's notes open no client lane");
        t.add_server(server(4, "", 0, None, note(NoteKind::Highlight, "highlight")));
        assert_eq!(t.highlight, None);
        t.add_server(server(5, "c-a", 7, None, note(NoteKind::Fault, "latency +800 ms")));
        assert_eq!(keys(&t), [ItemKey::Seq(3), ItemKey::Seq(5)], "fault notes are rows");
    }

    #[test]
    fn repeats_are_ignored_notes_update_state_and_capacity_is_kept() {
        let mut t = Timeline::new("me", 3);
        let info = ClientInfo { nickname: Some("Ana".into()), ..ClientInfo::default() };
        t.add_server(server(1, "c-ana", 0, None, EventKind::Client(info)));
        t.add_server(server(
            2,
            "server",
            0,
            None,
            EventKind::Presence(protocol::Presence { observers: 4, joined: 4, left: 0 }),
        ));
        assert!(t.items().is_empty(), "notes are not rows");
        assert_eq!(t.client("c-ana").and_then(|c| c.nickname.as_deref()), Some("Ana"));
        assert_eq!(t.observers, 4);
        for seq in 3..=8 {
            t.add_server(server(seq, "c-ana", seq, None, req("/x")));
        }
        t.add_server(server(5, "c-ana", 5, None, req("/again")));
        assert_eq!(keys(&t), [ItemKey::Seq(6), ItemKey::Seq(7), ItemKey::Seq(8)]);
        assert_eq!(t.earlier(), 3);
        assert_eq!(t.latest_seq(), 8);
        t.clear();
        assert!(t.items().is_empty());
        t.add_server(server(8, "c-ana", 8, None, req("/x")));
        assert!(t.items().is_empty(), "cleared events do not come back");
    }
}
