//! `/ws/observe`: the stream of the event log that every screen follows.
//!
//! The server sends [`ObserverMsg`]s as JSON text frames: `hello`, `clients` (who is who), then `events` (a snapshot
//! of recent events, then every new one as it is recorded). Every event carries its `seq`;
//! control messages (`hello`, `clients`, `lagged`, `gap`, `clock`) carry a `type` and no `seq`. The
//! observer may send [`ObserverCmd`]s. Query parameters: `client=ID` (whose screen this is),
//! `since=SEQ` (resume after SEQ, exclusive: no gap, no duplicate), `nick=NAME`.

use serde::{Deserialize, Serialize};

use crate::{ClientInfo, Event, Micros};

/// Server → observer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ObserverMsg {
    /// First message on every connection.
    #[serde(rename_all = "camelCase")]
    Hello {
        /// [`crate::PROTOCOL_VERSION`].
        version: u32,
        server_time_us: Micros,
        /// The newest `seq` recorded so far (0 when none).
        latest_seq: u64,
        /// The oldest `seq` the server still holds in memory.
        oldest_seq: u64,
        /// Events recorded but never written to disk (the writer fell behind).
        unpersisted: u64,
        /// The id of the session events are recorded into.
        session: u64,
    },
    /// Events in `seq` order, each with its `seq`.
    Events { events: Vec<Event> },
    /// Sent right after `hello`: every client the server knows, with what it is called now,
    /// so a screen that joins late names every lane by its nickname. Later changes arrive as
    /// `client` events.
    Clients { clients: Vec<ClientEntry> },
    /// This observer fell behind: events after `resync_from` follow, caught up from the log.
    #[serde(rename_all = "camelCase")]
    Lagged { resync_from: u64 },
    /// Events `from..=to` exist no more anywhere (they were pruned or never persisted).
    Gap { from: u64, to: u64 },
    /// Answer to [`ObserverCmd::Clock`]: both ends' clocks, for the offset estimate.
    #[serde(rename_all = "camelCase")]
    Clock { client_time_us: Micros, server_time_us: Micros },
    /// A command was refused (unreadable, or a nickname change over the limit); the
    /// connection stays open.
    Error { message: String },
}

/// Observer → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ObserverCmd {
    /// "What time is it for you?": answered with [`ObserverMsg::Clock`].
    #[serde(rename_all = "camelCase")]
    Clock { client_time_us: Micros },
    /// This client's new nickname (recorded as a `client` event).
    Nickname { nickname: String },
}

/// One known client in [`ObserverMsg::Clients`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientEntry {
    pub client: String,
    #[serde(flatten)]
    pub info: ClientInfo,
}

/// Estimate of how far the server's clock is ahead of the client's, from ping round trips
/// (NTP's offset formula, keeping the sample with the shortest round trip).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClockOffset {
    /// server clock − client clock, in µs.
    pub offset_us: Micros,
    /// Half the best round trip: the offset is right within ± this.
    pub error_us: Micros,
    pub samples: u32,
}

impl ClockOffset {
    /// Adds one sample: sent at `t0` and received at `t2` (client clock), stamped `t1` by the
    /// server. Returns true when this sample became the estimate.
    pub fn add(&mut self, t0: Micros, t1: Micros, t2: Micros) -> bool {
        if t2 < t0 {
            return false;
        }
        let error = (t2 - t0 + 1) / 2;
        self.samples += 1;
        if self.samples == 1 || error <= self.error_us {
            self.offset_us = t1 - (t0 + t2) / 2;
            self.error_us = error;
            return true;
        }
        false
    }

    /// Converts a client-clock time into server-clock time.
    pub fn to_server(&self, client_us: Micros) -> Micros {
        client_us + self.offset_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, Presence, Stamps};

    #[test]
    fn messages_are_tagged_by_type_and_round_trip() {
        let ev = Event {
            node: String::new(),
            seq: 9,
            client: "server".into(),
            exchange: 0,
            client_ref: None,
            cause: None,
            at: Stamps { client_us: None, server_us: Some(5) },
            kind: EventKind::Presence(Presence { observers: 3, joined: 1, left: 0 }),
        };
        let msgs = [
            ObserverMsg::Hello {
                version: 1,
                server_time_us: 5,
                latest_seq: 9,
                oldest_seq: 1,
                unpersisted: 0,
                session: 2,
            },
            ObserverMsg::Events { events: vec![ev] },
            ObserverMsg::Lagged { resync_from: 4 },
            ObserverMsg::Gap { from: 1, to: 3 },
            ObserverMsg::Clock { client_time_us: 1, server_time_us: 2 },
        ];
        for m in msgs {
            let json = serde_json::to_value(&m).unwrap();
            assert!(json["type"].is_string() && json.get("seq").is_none(), "{json}");
            assert_eq!(serde_json::from_value::<ObserverMsg>(json).unwrap(), m);
        }
        let json = serde_json::to_string(&ObserverMsg::Lagged { resync_from: 4 }).unwrap();
        assert_eq!(json, r#"{"type":"lagged","resyncFrom":4}"#);
        for c in [ObserverCmd::Clock { client_time_us: 7 }, ObserverCmd::Nickname { nickname: "ana".into() }]
        {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<ObserverCmd>(&json).unwrap(), c);
        }
    }

    #[test]
    fn clock_offset_keeps_the_tightest_round_trip() {
        let mut c = ClockOffset::default();
        // Server 1000 µs ahead; 200 µs round trip.
        assert!(c.add(10_000, 11_100, 10_200));
        assert_eq!((c.offset_us, c.error_us), (1_000, 100));
        // A slower, skewed sample does not replace it.
        assert!(!c.add(20_000, 22_000, 21_000));
        assert_eq!(c.offset_us, 1_000);
        // A tighter one does.
        assert!(c.add(30_000, 31_030, 30_060));
        assert_eq!((c.offset_us, c.error_us), (1_000, 30));
        assert_eq!(c.to_server(5), 1_005);
        assert!(!c.add(5, 0, 4), "time going backwards is ignored");
    }
}
