//! The one event log: every captured event gets the next `seq`, is kept in a bounded ring for
//! observers, broadcast live, and queued for the database writer.
//!
//! `record` serializes the event once, outside any lock, then takes one short lock (assign
//! `seq` and put it in front of the JSON, push to the ring, broadcast),
//! so ring order, broadcast order and `seq` order are the same. Nothing here ever waits for a
//! slow reader: the broadcast channel and the writer queue are bounded, and what does not fit
//! is counted (observers resync from the ring; events the writer could not take are counted
//! as unpersisted and reported).

pub mod db;
pub mod entry;
pub mod stream;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use protocol::{EventKind, Stamps};
use tokio::sync::broadcast;

use crate::secrets::Secrets;

pub use db::{LogDb, SessionInfo};
pub use entry::Entry;

/// How the log is sized.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Events kept in memory for observers that (re)connect.
    pub ring: usize,
    /// Events an observer may fall behind the live stream before it is resynced.
    pub observer_queue: usize,
    /// Events waiting for the database writer before new ones are counted as unpersisted.
    pub writer_queue: usize,
    /// Disk cap of the event database, in bytes.
    pub disk_cap: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { ring: 10_000, observer_queue: 1024, writer_queue: 16_384, disk_cap: 256 << 20 }
    }
}

struct Ring {
    next_seq: u64,
    entries: VecDeque<Arc<Entry>>,
}

/// How an event serialized with `seq` 0 begins: `record` replaces it with the real number.
const UNNUMBERED: &str = r#"{"seq":0,"#;

/// An event as [`EventLog::record`] writes it: the fields of [`protocol::Event`], in its order
/// and with its attributes, borrowed, so nothing is copied to serialize it. The test
/// `the_written_json_is_the_protocols_byte_for_byte` fails if the two ever differ.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Unnumbered<'a> {
    seq: u64,
    client: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    node: &'a str,
    exchange: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ref: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<u64>,
    at: Stamps,
    #[serde(flatten)]
    kind: &'a EventKind,
}

/// What is recorded in place of an event that cannot be serialized.
fn unrecordable(e: &dyn std::fmt::Display) -> String {
    let message = serde_json::Value::String(format!("unrecordable event: {e}"));
    format!(
        r#"{UNNUMBERED}"client":"server","exchange":0,"at":{{}},"kind":"failure","from":"server","message":{message}}}"#
    )
}

/// The event log. Shared as `Arc<EventLog>`.
pub struct EventLog {
    config: LogConfig,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Entry>>,
    writer: Option<SyncSender<db::Command>>,
    db: Option<LogDb>,
    /// Numbers reserved on disk (persisted logs only).
    reservation: Option<Arc<db::Reservation>>,
    session: AtomicU64,
    /// The first `seq` of the current session: observers see nothing before it.
    session_first: AtomicU64,
    unpersisted: AtomicU64,
    next_exchange: AtomicU64,
    observers: AtomicU32,
    joined: AtomicU32,
    left: AtomicU32,
    /// Off (`--no-capture`): nothing is recorded.
    recording: bool,
    /// The task that merges observers' comings and goings, started once.
    presence: std::sync::Once,
    /// Values no event may hold (the token): scrubbed from every note, name and failure as it
    /// is recorded, whoever records it (faults, the instructor, the client registry). What the
    /// capture layer records it has scrubbed itself, so exchanges and frames, the bulk of the
    /// log, are not searched twice.
    secrets: std::sync::OnceLock<Arc<Secrets>>,
    /// The name of this server (replica), recorded in every event ([`EventLog::name_node`]).
    node: std::sync::OnceLock<String>,
    /// In a cluster (`--nats`): the stream that numbers and holds every replica's events
    /// ([`stream::join`]); this log's ring is then filled from the stream, not by `record`.
    stream: std::sync::OnceLock<stream::Shared>,
}

impl crate::identity::Recorder for EventLog {
    fn describe(&self, client: &str, info: protocol::ClientInfo) {
        self.record(client, 0, None, crate::clock::server_now(), EventKind::Client(info));
    }
}

impl stream::Follower for EventLog {
    fn admit(&self, seq: u64, json: String) {
        EventLog::admit(self, seq, json);
    }

    fn latest_seq(&self) -> u64 {
        EventLog::latest_seq(self)
    }

    fn ring_size(&self) -> u64 {
        self.config.ring as u64
    }

    fn delayed(&self, seconds: f64, late: usize, dropped: u64) {
        let node = self.node.get().map_or("this server", String::as_str);
        let text = format!(
            "{node} could not reach the event stream for {seconds:.1} s: {late} events published late, {dropped} dropped"
        );
        tracing::warn!("{text}");
        let at = Stamps { client_us: None, server_us: Some(crate::clock::now_us()) };
        self.record(
            protocol::SERVER_LANE,
            0,
            None,
            at,
            EventKind::Note(protocol::Note { what: protocol::NoteKind::Down, text }),
        );
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Where to resume an observer: what the ring holds after a `seq`, or where it must go to disk.
#[derive(Debug)]
pub struct Since {
    /// Events after the asked `seq` still in memory, oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// Events between the asked `seq` and the ring's oldest are on disk only: `(after, before)`.
    pub from_disk: Option<(u64, u64)>,
    /// The newest `seq` at the time of asking.
    pub latest: u64,
}

impl EventLog {
    /// A log persisted to `dir/events.sqlite3`, continuing its `seq` numbering, in a new session.
    pub fn open(dir: &Path, config: LogConfig, session_name: &str) -> rusqlite::Result<Arc<EventLog>> {
        let path = dir.join(db::FILE_NAME);
        let (db, conn, session, max_seq) = LogDb::open(&path, session_name, crate::clock::now_us())?;
        let reservation = Arc::new(db::Reservation::open(&path, max_seq + db::SEQ_BLOCK)?);
        let (tx, rx) = std::sync::mpsc::sync_channel(config.writer_queue);
        let cap = config.disk_cap;
        let r = reservation.clone();
        std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || db::writer(conn, session, cap, r, rx))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let mut log = Self::new(config, Some(tx), Some(db), session, max_seq + 1);
        log.reservation = Some(reservation);
        Ok(Arc::new(log))
    }

    /// A log kept in memory only (tests).
    pub fn in_memory(config: LogConfig) -> Arc<EventLog> {
        Arc::new(Self::new(config, None, None, 0, 1))
    }

    /// A log that records nothing (`--no-capture`): no database, no writer thread; observers
    /// are answered, with nothing to show.
    pub fn off(config: LogConfig) -> Arc<EventLog> {
        let mut log = Self::new(config, None, None, 0, 1);
        log.recording = false;
        Arc::new(log)
    }

    /// From now on, every note, name and failure is scrubbed of these secrets before it is
    /// numbered and kept (capture scrubs what it records).
    pub fn scrub_with(&self, secrets: Arc<Secrets>) {
        let _ = self.secrets.set(secrets);
    }

    /// Names the server (replica) every event records as the one that saw it. Set once, at
    /// start.
    pub fn name_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }

    /// Whether events are recorded at all (false with `--no-capture`).
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Starts (once) the task that merges observers' comings and goings into one presence
    /// event per second. Needs a Tokio runtime; called when the first observer connects.
    pub fn start_presence_ticker(self: &Arc<Self>) {
        if !self.recording {
            return;
        }
        self.presence.call_once(|| {
            let log = Arc::downgrade(self);
            tokio::spawn(async move {
                let second = std::time::Duration::from_secs(1);
                let mut every = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
                loop {
                    every.tick().await;
                    let Some(log) = log.upgrade() else { return };
                    log.presence_tick();
                }
            });
        });
    }

    fn new(
        config: LogConfig,
        writer: Option<SyncSender<db::Command>>,
        db: Option<LogDb>,
        session: u64,
        next_seq: u64,
    ) -> Self {
        let (live, _) = broadcast::channel(config.observer_queue.max(1));
        Self {
            config,
            ring: Mutex::new(Ring { next_seq, entries: VecDeque::with_capacity(config.ring.min(4096)) }),
            live,
            writer,
            db,
            reservation: None,
            session: AtomicU64::new(session),
            session_first: AtomicU64::new(next_seq),
            unpersisted: AtomicU64::new(0),
            next_exchange: AtomicU64::new(1),
            observers: AtomicU32::new(0),
            joined: AtomicU32::new(0),
            left: AtomicU32::new(0),
            recording: true,
            presence: std::sync::Once::new(),
            secrets: std::sync::OnceLock::new(),
            node: std::sync::OnceLock::new(),
            stream: std::sync::OnceLock::new(),
        }
    }

    /// A fresh correlation id for an exchange or a connection.
    pub fn next_exchange(&self) -> u64 {
        self.next_exchange.fetch_add(1, Ordering::Relaxed)
    }

    /// Exchange ids from `first` on (a replica's own range, so ids never collide in a cluster).
    pub fn number_exchanges_from(&self, first: u64) {
        self.next_exchange.store(first.max(1), Ordering::Relaxed);
    }

    /// In a cluster: how this replica's link to the event stream is.
    pub fn stream_state(&self) -> Option<protocol::EventStream> {
        self.stream.get().map(stream::Shared::state)
    }

    /// Joins the cluster's event stream at NATS `url` ([`stream`]): from now on events are
    /// numbered by the stream and this log follows it. `replica` is this start's number in the
    /// cluster: it names what this replica publishes and puts its exchange ids apart from every
    /// other replica's (from `replica` × 2³²). Fails only on a malformed URL.
    pub async fn join_stream(self: &Arc<Self>, url: &str, replica: u64) -> Result<(), String> {
        let weak: std::sync::Weak<dyn stream::Follower> = Arc::downgrade(self) as _;
        let shared =
            stream::connect(url, self.config.writer_queue, self.config.disk_cap, replica, weak).await?;
        self.stream.set(shared).map_err(|_| "this log already follows a stream".to_owned())?;
        self.number_exchanges_from(replica << 32);
        Ok(())
    }

    /// Whether events are numbered by a cluster's stream (`--nats`) rather than here.
    pub fn is_shared(&self) -> bool {
        self.stream.get().is_some()
    }

    /// Records an event now and answers its `seq`.
    pub fn record(
        &self,
        client: &str,
        exchange: u64,
        client_ref: Option<u64>,
        at: Stamps,
        kind: EventKind,
    ) -> u64 {
        self.record_caused(client, exchange, client_ref, None, at, kind)
    }

    /// Records an event that `cause` (another exchange) set off.
    pub fn record_caused(
        &self,
        client: &str,
        exchange: u64,
        client_ref: Option<u64>,
        cause: Option<u64>,
        at: Stamps,
        kind: EventKind,
    ) -> u64 {
        if !self.recording {
            return 0;
        }
        // Serialized before the lock is taken, with `seq` 0 (always the first field); under the
        // lock only the number is put in front, so the lock is held for a copy, not a serializer.
        let written_here = matches!(kind, EventKind::Note(_) | EventKind::Client(_) | EventKind::Failure(_));
        let node = self.node.get().map_or("", String::as_str);
        let event = Unnumbered { seq: 0, client, node, exchange, client_ref, cause, at, kind: &kind };
        let mut buf = Vec::with_capacity(512);
        let json = match serde_json::to_writer(&mut buf, &event).map(|()| String::from_utf8(buf)) {
            Ok(Ok(json)) => {
                debug_assert!(json.starts_with(UNNUMBERED), "seq is an event's first field");
                match self.secrets.get().filter(|_| written_here) {
                    Some(s) => s.scrub_owned(json),
                    None => json,
                }
            }
            Ok(Err(e)) => unrecordable(&e),
            Err(e) => unrecordable(&e),
        };
        let rest = json.strip_prefix(UNNUMBERED).unwrap_or_else(|| &json[1..]);
        if let Some(stream) = self.stream.get() {
            // Numbered by the stream; it comes back to the ring through `admit`.
            if !stream.push(rest.to_owned()) {
                self.unpersisted.fetch_add(1, Ordering::Relaxed);
            }
            return 0;
        }
        let server_us = at.server_us.unwrap_or_else(crate::clock::now_us);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = ring.next_seq;
        if let Some(r) = &self.reservation {
            r.cover(seq);
        }
        ring.next_seq += 1;
        let digits = seq.checked_ilog10().unwrap_or(0) as usize + 1;
        let mut numbered = String::with_capacity(r#"{"seq":,"#.len() + digits + rest.len());
        let _ = write!(numbered, r#"{{"seq":{seq},"#);
        numbered.push_str(rest);
        debug_assert_eq!(numbered.len(), numbered.capacity(), "no reallocation, none in into_boxed_str");
        let entry = Arc::new(Entry { seq, server_us, json: numbered.into_boxed_str() });
        if ring.entries.len() >= self.config.ring {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(entry.clone());
        drop(ring);
        if let Some(r) = self.reservation.as_ref().filter(|r| r.claim_extension(seq)) {
            // Once per half block: the next block is reserved on a thread of its own, so no
            // request waits for the disk.
            let r = r.clone();
            let spawned =
                std::thread::Builder::new().name("event-log-reserve".into()).spawn(move || r.extend(seq));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start reserving event numbers");
            }
        }
        if let Some(w) = &self.writer {
            match w.try_send(db::Command::Append(entry)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.unpersisted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        seq
    }

    /// Takes in an event the cluster's stream numbered `seq` (its JSON begins with that `seq`):
    /// kept in the ring and sent to observers, like one recorded here. One already admitted is
    /// ignored.
    pub fn admit(&self, seq: u64, json: String) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if seq < ring.next_seq {
            return;
        }
        ring.next_seq = seq + 1;
        let entry = Arc::new(Entry { seq, server_us: crate::clock::now_us(), json: json.into_boxed_str() });
        if ring.entries.len() >= self.config.ring {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry.clone());
        let _ = self.live.send(entry);
    }

    /// The events after `after` and before `before`, at most `limit` of them, from the disk (or
    /// in a cluster, the stream): what an observer resuming further back than the ring missed.
    pub async fn between(self: &Arc<Self>, after: u64, before: u64, limit: usize) -> Vec<(u64, String)> {
        if let Some(stream) = self.stream.get() {
            return stream.read(after, before, limit).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "events: cannot read the stream");
                Vec::new()
            });
        }
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.db().map(|db| db.events_between(after, before, limit)))
            .await
            .ok()
            .flatten()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    /// Follows new events. Subscribe before calling [`EventLog::since`], so nothing falls
    /// between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.live.subscribe()
    }

    /// What comes after `seq` (exclusive).
    pub fn since(&self, seq: u64) -> Since {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = ring.next_seq - 1;
        let oldest = ring.entries.front().map_or(ring.next_seq, |e| e.seq);
        let older = self.db.is_some() || self.stream.get().is_some();
        let from_disk = (seq + 1 < oldest && older).then_some((seq, oldest));
        let skip = ring.entries.partition_point(|e| e.seq <= seq);
        Since { entries: ring.entries.iter().skip(skip).cloned().collect(), from_disk, latest }
    }

    /// The newest `seq` so far (0 before the first event).
    pub fn latest_seq(&self) -> u64 {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner).next_seq - 1
    }

    /// The oldest `seq` still in memory.
    pub fn oldest_in_memory(&self) -> u64 {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.entries.front().map_or(ring.next_seq, |e| e.seq)
    }

    /// Events recorded but never handed to the database writer.
    pub fn unpersisted(&self) -> u64 {
        self.unpersisted.load(Ordering::Relaxed)
    }

    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    /// The first `seq` of the current session (an earlier session is read through
    /// `/api/sessions`, where it is the instructor's until published, never by observers).
    pub fn session_first_seq(&self) -> u64 {
        self.session_first.load(Ordering::Relaxed)
    }

    pub fn db(&self) -> Option<&LogDb> {
        self.db.as_ref()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Blocks until the writer has committed everything recorded so far.
    pub fn flush(&self) {
        if let Some(w) = &self.writer {
            let (tx, rx) = std::sync::mpsc::channel();
            if w.send(db::Command::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }

    /// A clean stop (blocking): commits everything recorded so far and lets the next start
    /// number on from the last event, with no gap. Without it (a crash), the next start skips
    /// to past the reserved block, so no `seq` an observer saw is ever reused.
    pub fn seal(&self) {
        if let (Some(w), Some(r)) = (&self.writer, &self.reservation) {
            {
                // Under the lock: events numbered from here on are reserved on disk first.
                let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
                r.lower(ring.next_seq - 1);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            if w.send(db::Command::Seal(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }

    /// Sends a command to the writer and waits for its answer (blocking).
    pub fn command<R>(
        &self,
        make: impl FnOnce(std::sync::mpsc::Sender<rusqlite::Result<R>>) -> db::Command,
    ) -> Option<rusqlite::Result<R>> {
        let w = self.writer.as_ref()?;
        let (tx, rx) = std::sync::mpsc::channel();
        w.send(make(tx)).ok()?;
        rx.recv().ok()
    }

    /// In a cluster: the session being recorded is `id`, from `first_seq` on (the board says
    /// so; observers see nothing before it).
    pub fn follow_session(&self, id: u64, first_seq: u64) {
        self.session.store(id, Ordering::Relaxed);
        self.session_first.store(first_seq, Ordering::Relaxed);
    }

    /// In a cluster: the events after `after` and before `before` (at most `limit`), read from
    /// the stream.
    pub async fn read_stream(
        &self,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, String> {
        match self.stream.get() {
            Some(stream) => stream.read(after, before, limit).await,
            None => Err("this log is not a cluster's stream".to_owned()),
        }
    }

    /// In a cluster: the oldest `seq` the stream still holds.
    pub async fn stream_oldest(&self) -> Result<u64, String> {
        match self.stream.get() {
            Some(stream) => stream.oldest().await,
            None => Err("this log is not a cluster's stream".to_owned()),
        }
    }

    /// In a cluster: deletes the events from `first` to `last` from the stream, in the
    /// background (a deleted session's).
    pub fn forget_stream(&self, first: u64, last: u64) {
        if let Some(stream) = self.stream.get() {
            stream.forget(first, last);
        }
    }

    /// Ends the current session and starts a new one (blocking); answers its id.
    pub fn new_session(&self, name: &str) -> Option<rusqlite::Result<u64>> {
        let now_us = crate::clock::now_us();
        let first = self.ring.lock().unwrap_or_else(PoisonError::into_inner).next_seq;
        let r = self.command(|reply| db::Command::NewSession { name: name.to_owned(), now_us, reply });
        if let Some(Ok(id)) = &r {
            self.session.store(*id, Ordering::Relaxed);
            self.session_first.store(first, Ordering::Relaxed);
        }
        r
    }

    /// An observer came; counted for the next presence event.
    pub fn observer_joined(&self) {
        self.observers.fetch_add(1, Ordering::Relaxed);
        self.joined.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observer_left(&self) {
        self.observers.fetch_sub(1, Ordering::Relaxed);
        self.left.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observers(&self) -> u32 {
        self.observers.load(Ordering::Relaxed)
    }

    /// Records one presence event for the observers who came and went since the last call,
    /// if any did. Called once a second: presence is merged, never one event per observer.
    pub fn presence_tick(&self) -> Option<u64> {
        let joined = self.joined.swap(0, Ordering::Relaxed);
        let left = self.left.swap(0, Ordering::Relaxed);
        if joined == 0 && left == 0 {
            return None;
        }
        let presence = protocol::Presence { observers: self.observers(), joined, left };
        let at = Stamps { client_us: None, server_us: Some(crate::clock::now_us()) };
        Some(self.record(protocol::SERVER_LANE, 0, None, at, EventKind::Presence(presence)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Event, Failure};

    #[test]
    fn the_written_json_is_the_protocols_byte_for_byte() {
        let log = EventLog::in_memory(LogConfig::default());
        log.name_node("replica-1");
        let at = Stamps { client_us: None, server_us: Some(1_700_000_000_123_456) };
        let request = EventKind::HttpRequest(protocol::HttpRequest {
            method: "POST".into(),
            path: "/transcripts".into(),
            query: Some("x=1".into()),
            headers: vec![protocol::Header::new("content-type", "application/json")],
            body: Some(protocol::Body {
                size: 19,
                text: Some(r#"{"studentName":"a"}"#.into()),
                hex: None,
                truncated: false,
            }),
        });
        let response = EventKind::HttpResponse(protocol::HttpResponse {
            status: 201,
            streaming: false,
            headers: vec![],
            body: Some(protocol::Body { size: 300, text: Some("é\"\n".into()), hex: None, truncated: true }),
        });
        log.record("s-abc", 7, Some(3), at, request.clone());
        log.record_caused("anon:0a1b2c3d", 8, None, Some(7), Stamps::default(), response.clone());
        let written = log.since(0).entries;
        assert_eq!(
            &*written[0].json,
            r#"{"seq":1,"client":"s-abc","node":"replica-1","exchange":7,"clientRef":3,"at":{"serverUs":1700000000123456},"kind":"httpRequest","method":"POST","path":"/transcripts","query":"x=1","headers":[{"name":"content-type","value":"application/json"}],"body":{"size":19,"text":"{\"studentName\":\"a\"}"}}"#
        );
        assert_eq!(
            &*written[1].json,
            r#"{"seq":2,"client":"anon:0a1b2c3d","node":"replica-1","exchange":8,"cause":7,"at":{},"kind":"httpResponse","status":201,"body":{"size":300,"text":"é\"\n","truncated":true}}"#
        );
        // And it is what the protocol's own type writes.
        let event = |seq, client: &str, exchange, client_ref, cause, at, kind| Event {
            seq,
            client: client.into(),
            node: "replica-1".into(),
            exchange,
            client_ref,
            cause,
            at,
            kind,
        };
        let ours = [
            event(1, "s-abc", 7, Some(3), None, at, request),
            event(2, "anon:0a1b2c3d", 8, None, Some(7), Stamps::default(), response),
        ];
        for (w, e) in written.iter().zip(ours) {
            assert_eq!(*w.json, serde_json::to_string(&e).unwrap());
        }
    }

    fn kind() -> EventKind {
        EventKind::Failure(Failure { from: protocol::Side::Client, message: "x".into() })
    }

    fn record(log: &EventLog) -> u64 {
        log.record("c", 1, None, Stamps::default(), kind())
    }

    #[test]
    fn the_stored_json_carries_the_assigned_seq() {
        let log = EventLog::in_memory(LogConfig::default());
        for _ in 0..3 {
            record(&log);
        }
        for e in log.since(0).entries {
            let event: Event = serde_json::from_str(&e.json).unwrap();
            assert_eq!(event.seq, e.seq);
            assert_eq!(event.client, "c");
        }
    }

    #[test]
    fn seq_increases_and_the_ring_is_bounded() {
        let log = EventLog::in_memory(LogConfig { ring: 5, ..LogConfig::default() });
        let seqs: Vec<u64> = (0..12).map(|_| record(&log)).collect();
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
        let s = log.since(0);
        assert_eq!(s.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9, 10, 11, 12]);
        assert_eq!(s.latest, 12);
        assert_eq!(log.oldest_in_memory(), 8);
        let s = log.since(10);
        assert_eq!(s.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12]);
        assert!(log.since(12).entries.is_empty());
    }

    #[test]
    fn entries_hold_the_event_json_with_its_seq() {
        let log = EventLog::in_memory(LogConfig::default());
        record(&log);
        let e = &log.since(0).entries[0];
        let ev: Event = serde_json::from_str(&e.json).unwrap();
        assert_eq!(ev.seq, 1);
        assert_eq!(ev.kind, kind());
    }

    #[test]
    fn presence_is_merged_into_one_event_per_tick() {
        let log = EventLog::in_memory(LogConfig::default());
        assert_eq!(log.presence_tick(), None);
        log.observer_joined();
        log.observer_joined();
        log.observer_joined();
        log.observer_left();
        let seq = log.presence_tick().unwrap();
        assert_eq!(log.presence_tick(), None, "nothing changed since");
        let ev: Event = serde_json::from_str(&log.since(seq - 1).entries[0].json).unwrap();
        assert_eq!(ev.kind, EventKind::Presence(protocol::Presence { observers: 2, joined: 3, left: 1 }));
    }

    #[test]
    fn persisted_events_survive_and_seq_continues_in_a_new_session() {
        let dir = tempfile::tempdir().unwrap();
        let first_session;
        {
            let log = EventLog::open(dir.path(), LogConfig::default(), "one").unwrap();
            first_session = log.session();
            for _ in 0..50 {
                record(&log);
            }
            log.seal();
        }
        let log = EventLog::open(dir.path(), LogConfig::default(), "two").unwrap();
        assert!(log.session() > first_session);
        assert_eq!(record(&log), 51, "after a clean stop, seq continues without a gap");
        log.flush();
        let db = log.db().unwrap();
        let old = db.events_between(10, 15, 100).unwrap();
        assert_eq!(old.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [11, 12, 13, 14]);
        let sessions = db.sessions().unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            (sessions[1].events, sessions[1].first_seq, sessions[1].last_seq),
            (50, Some(1), Some(50))
        );
        assert!(sessions[1].ended_us.is_some(), "the earlier session was closed");
        assert_eq!(db.session_page(sessions[0].id, 0, 100).unwrap().len(), 1);
    }

    #[test]
    fn after_a_crash_no_seq_an_observer_may_have_seen_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0;
        for round in 0..3 {
            let log = EventLog::open(dir.path(), LogConfig::default(), "crashing").unwrap();
            let first = record(&log);
            assert!(first > seen, "round {round}: {first} after {seen}");
            // Numbered and shown, but never stored: the process dies before the writer runs.
            for _ in 0..10 {
                seen = record(&log);
            }
            std::mem::forget(log);
        }
        // Many events in one run, most of them never stored (the writer's queue holds one):
        // the reservation moves ahead of the numbers handed out, not of the ones stored.
        let tiny = LogConfig { writer_queue: 1, ..LogConfig::default() };
        let log = EventLog::open(dir.path(), tiny, "busy").unwrap();
        let mut last = 0;
        for _ in 0..(db::SEQ_BLOCK as usize * 3 / 2) {
            last = record(&log);
        }
        assert!(log.unpersisted() > 0, "the writer could not keep up");
        std::mem::forget(log);
        let log = EventLog::open(dir.path(), LogConfig::default(), "after").unwrap();
        assert!(record(&log) > last);
    }

    #[test]
    fn an_event_numbered_after_the_seal_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), LogConfig::default(), "stopping").unwrap();
        let sealed = record(&log);
        log.seal();
        // A socket still open during the stop records one more event; then the process dies.
        let late = record(&log);
        std::mem::forget(log);
        let log = EventLog::open(dir.path(), LogConfig::default(), "next").unwrap();
        let next = record(&log);
        assert!(late > sealed && next > late, "{sealed} {late} {next}");
        // Without a late event, the next start numbers on with no gap.
        log.seal();
        drop(log);
        let log = EventLog::open(dir.path(), LogConfig::default(), "after").unwrap();
        assert_eq!(record(&log), next + 1);
    }

    #[test]
    fn pruning_keeps_the_database_under_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, conn, session, _) = LogDb::open(&dir.path().join("e.sqlite3"), "old", 0).unwrap();
        let big = "x".repeat(2000);
        for seq in 1..=2000i64 {
            conn.execute(
                "INSERT INTO chunks (first_seq, last_seq, session, at_us, events, data) VALUES (?1, ?1, ?2, 0, 1, ?3)",
                rusqlite::params![seq, session as i64, big],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO sessions (name, started_us) VALUES ('current', 1)", []).unwrap();
        let current = conn.last_insert_rowid() as u64;
        conn.execute(
            "INSERT INTO chunks (first_seq, last_seq, session, at_us, events, data) VALUES (5000, 5000, ?1, 0, 1, 'kept')",
            rusqlite::params![current as i64],
        )
        .unwrap();
        let removed = db::prune(&conn, current, 1 << 20).unwrap();
        assert_eq!(removed, 1, "the whole old session went");
        let left: i64 = conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 1, "the current session's chunk stays");
    }
}
