//! The board: what the instructor has set for the whole room — the faults armed, "server
//! down", the hold and what waits in it, the highlighted lane, who is muted. One server keeps
//! it in memory; the replicas of a cluster (`--nats`) keep one board in a JetStream stream,
//! `WIRESCOPE_BOARD`, so a fault armed through one replica hits requests answered by every
//! replica, and "release next" releases the oldest message held anywhere.
//!
//! Every change is a compare-and-set: take the board at its version, change a copy, put it
//! back only if no one put another in between (else take the newer one and change that),
//! then wait until this server's copy has the new version. Changes made at once on several
//! replicas never undo each other ([`Keeper`] is where the board is put; one contract suite
//! runs against both keepers). One-shot actions — close or cut the matching WebSockets — are
//! not state: they are announced to the servers running at that moment ([`Actor`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use futures_util::StreamExt;
use protocol::instructor::{Fault, Held};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log::stream::{Link, next_message};

/// The stream of a cluster's board, and its one subject (only the newest board is kept).
pub const STREAM: &str = "WIRESCOPE_BOARD";
pub const SUBJECT: &str = "wirescope.board";
/// Where one-shot actions are announced (plain NATS: only the servers running now matter).
pub const ACTIONS: &str = "wirescope.actions";
/// How long a change waits to be put and seen before it counts as out of reach.
const WAIT: Duration = Duration::from_secs(5);
/// How often a change is tried again when another replica's came first.
const TRIES: usize = 50;

/// What the instructor has set for the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Board {
    /// Faults in force (closing and cutting are actions, never kept).
    pub faults: Vec<Fault>,
    /// The id the next fault gets.
    pub next_fault: u64,
    /// Until when the server plays dead (server clock, µs).
    pub down_until_us: i64,
    pub hold_on: bool,
    pub hold_timeout_ms: u64,
    /// What waits for the instructor, oldest first, on whichever server holds it.
    pub held: Vec<Held>,
    pub next_held: u64,
    pub highlight: Option<String>,
    /// Lane ids the instructor muted.
    pub muted: BTreeSet<String>,
    /// Issued ids muted, each with the lane it was muted as.
    pub muted_keys: BTreeMap<String, String>,
    /// A cluster's recorded sessions, oldest first (the last one is being recorded): spans of
    /// the event stream. At most [`MAX_SESSIONS`]; one server keeps its own in its database.
    pub sessions: Vec<Session>,
    pub next_session: u64,
}

/// Sessions a cluster's board lists at most; past it the oldest goes from the list (its events
/// stay in the stream until its size cap pushes them out).
pub const MAX_SESSIONS: usize = 500;

/// A recorded session of a cluster: the events of the stream from `first_seq` to `last_seq`
/// (to the newest while it is being recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: u64,
    pub name: String,
    pub started_us: i64,
    pub ended_us: Option<i64>,
    pub first_seq: u64,
    pub last_seq: Option<u64>,
    pub published: bool,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            faults: Vec::new(),
            next_fault: 1,
            down_until_us: 0,
            hold_on: false,
            hold_timeout_ms: 30_000,
            held: Vec::new(),
            next_held: 1,
            highlight: None,
            muted: BTreeSet::new(),
            muted_keys: BTreeMap::new(),
            sessions: Vec::new(),
            next_session: 1,
        }
    }
}

impl Board {
    /// Nothing armed, not down, not holding: requests go straight on.
    pub fn idle(&self, now_us: i64) -> bool {
        self.faults.is_empty() && !self.hold_on && self.down_until_us <= now_us
    }

    /// The session being recorded (none before the first is started).
    pub fn current_session(&self) -> Option<&Session> {
        self.sessions.last()
    }

    /// Ends the session being recorded (its last event: the one before `first_seq`) and starts
    /// `name` from `first_seq`; answers its id. The list keeps at most [`MAX_SESSIONS`].
    pub fn start_session(&mut self, name: &str, first_seq: u64, now_us: i64) -> u64 {
        // Never before the one being recorded began (a replica behind the stream asks for less).
        let first_seq = first_seq.max(self.sessions.last().map_or(0, |s| s.first_seq));
        if let Some(current) = self.sessions.last_mut() {
            current.ended_us = Some(now_us);
            current.last_seq = Some(first_seq.saturating_sub(1).max(current.first_seq.saturating_sub(1)));
        }
        let id = self.next_session;
        self.next_session += 1;
        let session = Session {
            id,
            name: name.to_owned(),
            started_us: now_us,
            ended_us: None,
            first_seq,
            last_seq: None,
            published: false,
        };
        self.sessions.push(session);
        if self.sessions.len() > MAX_SESSIONS {
            self.sessions.remove(0);
        }
        id
    }
}

/// A board and its version (each put makes a higher one; 0 before the first).
#[derive(Debug, Clone, Default)]
pub struct Versioned {
    pub version: u64,
    pub board: Arc<Board>,
}

/// Close (with a code and reason) or cut the open WebSockets that match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub client: Option<String>,
    pub path: Option<String>,
    /// `None`: cut, with no close frame.
    pub close: Option<(u16, String)>,
    /// What it is, for the note a server writes when it closed any (`kicked by the instructor`).
    pub what: String,
    /// The node that announced it (it acted already), by name.
    pub from: String,
    /// The process that announced it ([`instance`]): how it knows its own (two replicas may be
    /// given the same name).
    #[serde(default)]
    pub instance: u64,
}

/// This process's number among a cluster's replicas: random, drawn once. What a replica sends
/// over NATS carries it, so it skips what it sent itself (names may repeat, this does not
/// in practice: 64 random bits).
pub fn instance() -> u64 {
    static INSTANCE: OnceLock<u64> = OnceLock::new();
    *INSTANCE.get_or_init(|| {
        let mut b = [0u8; 8];
        // Without the random source, the time (µs) still tells two processes apart.
        if getrandom::fill(&mut b).is_err() {
            return crate::clock::now_us() as u64;
        }
        u64::from_le_bytes(b)
    })
}

/// What carries out an action on one server (the faults' sockets implement it).
pub trait Actor: Send + Sync + 'static {
    fn act(&self, action: &Action);
}

/// Why a board could not be put.
#[derive(Debug)]
pub enum PutError {
    /// Another was put since the version given: take the newer one and try again.
    Stale,
    /// The keeper is out of reach.
    Unreachable(String),
    /// The board would be this many bytes, more than one NATS message takes.
    TooLarge(usize),
}

/// Largest board a cluster keeps (a NATS message is at most 1 MiB by default). Every list on
/// the board is capped well below it; this is the last guard.
pub const MAX_BYTES: usize = 1_000_000;

/// The board's keeper is out of reach (a cluster's NATS): nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the room's shared state is out of reach: {}", self.0)
    }
}

impl From<Unreachable> for crate::error::ApiError {
    fn from(e: Unreachable) -> Self {
        tracing::warn!(error = %e, "board: a change was not made");
        crate::error::ApiError::Unavailable(1)
    }
}

type Put<'a> = Pin<Box<dyn Future<Output = Result<u64, PutError>> + Send + 'a>>;

/// Where the board is kept: in this server ([`Here`]), or a cluster's stream ([`InStream`]).
pub trait Keeper: Send + Sync + 'static {
    /// Puts `next` if the kept board is still at `version`; answers the new version. `here`
    /// is this server's copy (a keeper that is not followed sets it itself).
    fn put<'a>(&'a self, here: &'a watch::Sender<Versioned>, version: u64, next: &'a Board) -> Put<'a>;
    /// Tells the other servers to carry out `action` (this one did already).
    fn announce(&self, action: &Action);
    /// The newest version kept (0: none yet), asked of the keeper itself.
    fn newest(&self) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
}

/// The board of one server: in memory.
pub struct Here;

impl Keeper for Here {
    fn put<'a>(&'a self, here: &'a watch::Sender<Versioned>, version: u64, next: &'a Board) -> Put<'a> {
        let put = self.put_now(here, version, next.clone());
        Box::pin(std::future::ready(if put { Ok(version + 1) } else { Err(PutError::Stale) }))
    }

    fn announce(&self, _: &Action) {}

    fn newest(&self) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        // Nothing is newer than this server's own copy: the caller's version is the newest.
        Box::pin(std::future::ready(Ok(0)))
    }
}

impl Here {
    /// Puts `next` in place of the board at `version`, if it still is; answers whether.
    fn put_now(&self, here: &watch::Sender<Versioned>, version: u64, next: Board) -> bool {
        let mut put = false;
        here.send_if_modified(|v| {
            put = v.version == version;
            if put {
                *v = Versioned { version: version + 1, board: Arc::new(next) };
            }
            put
        });
        put
    }
}

/// The board of a cluster: the newest message of a JetStream subject, put only if it is still
/// the one the change was made to (`Nats-Expected-Last-Subject-Sequence`); its stream sequence
/// is the version. Every replica follows the subject into its copy.
pub struct InStream {
    js: jetstream::Context,
    client: async_nats::Client,
}

impl Keeper for InStream {
    fn put<'a>(&'a self, _: &'a watch::Sender<Versioned>, version: u64, next: &'a Board) -> Put<'a> {
        Box::pin(async move {
            let json: bytes::Bytes =
                serde_json::to_vec(next).map_err(|e| PutError::Unreachable(e.to_string()))?.into();
            if json.len() > MAX_BYTES {
                return Err(PutError::TooLarge(json.len()));
            }
            let wrong = |e: jetstream::context::PublishError| match e.kind() {
                PublishErrorKind::WrongLastSequence => PutError::Stale,
                _ => PutError::Unreachable(e.to_string()),
            };
            for first in [true, false] {
                let message = jetstream::context::Publish::build()
                    .expected_last_subject_sequence(version)
                    .payload(json.clone());
                let acked = match self.js.send_publish(SUBJECT, message).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(ack) => return Ok(ack.sequence),
                    // The first server of a cluster makes the stream.
                    Err(e) if first && e.kind() == PublishErrorKind::StreamNotFound => {
                        stream_of(&self.js).await.map_err(PutError::Unreachable)?;
                    }
                    Err(e) => return Err(wrong(e)),
                }
            }
            Err(PutError::Unreachable("no stream".to_owned()))
        })
    }

    fn newest(&self) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move {
            let mut stream = stream_of(&self.js).await?;
            Ok(stream.info().await.map_err(|e| e.to_string())?.state.last_sequence)
        })
    }

    fn announce(&self, action: &Action) {
        let Ok(json) = serde_json::to_vec(action) else { return };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.publish(ACTIONS, json.into()).await {
                tracing::warn!(error = %e, "board: an action could not be announced");
            }
        });
    }
}

/// This server's copy of the board, and where changes to it are put.
pub struct Boards {
    here: watch::Sender<Versioned>,
    keeper: OnceLock<Arc<dyn Keeper>>,
}

impl Default for Boards {
    fn default() -> Self {
        Self { here: watch::Sender::new(Versioned::default()), keeper: OnceLock::new() }
    }
}

impl std::fmt::Debug for Boards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boards").field("version", &self.here.borrow().version).finish_non_exhaustive()
    }
}

impl Boards {
    /// A board kept by `keeper` (tests; servers start with their own and may join a cluster).
    pub fn kept_by(keeper: Arc<dyn Keeper>) -> Self {
        let boards = Self::default();
        let _ = boards.keeper.set(keeper);
        boards
    }

    fn keeper(&self) -> &dyn Keeper {
        self.keeper.get().map_or(&Here, |k| &**k)
    }

    /// The board now.
    pub fn now(&self) -> Arc<Board> {
        self.here.borrow().board.clone()
    }

    /// Reads the board now (without keeping it).
    pub fn read<R>(&self, f: impl FnOnce(&Board) -> R) -> R {
        f(&self.here.borrow().board)
    }

    /// The board now and its version.
    pub fn versioned(&self) -> Versioned {
        self.here.borrow().clone()
    }

    /// Told of every new version.
    pub fn watch(&self) -> watch::Receiver<Versioned> {
        self.here.subscribe()
    }

    /// Changes the board with `change` (run again on a newer board when another server's
    /// change came first) and answers what `change` answered; returns once this server's copy
    /// shows the change. A change that changes nothing puts nothing.
    pub async fn update<R>(&self, mut change: impl FnMut(&mut Board) -> R) -> Result<R, Unreachable> {
        let mut rx = self.here.subscribe();
        for _ in 0..TRIES {
            let Versioned { version, board } = rx.borrow_and_update().clone();
            let mut next = (*board).clone();
            let answer = change(&mut next);
            if next == *board {
                // Nothing to change here — unless this copy is behind the cluster's board (a
                // "release next" on a replica that has not yet seen what was held elsewhere).
                match tokio::time::timeout(WAIT, self.keeper().newest()).await {
                    Ok(Ok(newest)) if newest > version => {
                        if !matches!(
                            tokio::time::timeout(WAIT, rx.wait_for(|v| v.version >= newest)).await,
                            Ok(Ok(_))
                        ) {
                            return Err(Unreachable("the newest board never came".to_owned()));
                        }
                        continue;
                    }
                    Ok(Ok(_)) => return Ok(answer),
                    Ok(Err(e)) => return Err(Unreachable(e)),
                    Err(_) => return Err(Unreachable("no answer in 5 s".to_owned())),
                }
            }
            match tokio::time::timeout(WAIT, self.keeper().put(&self.here, version, &next)).await {
                Ok(Ok(put)) => {
                    return match tokio::time::timeout(WAIT, rx.wait_for(|v| v.version >= put)).await {
                        Ok(Ok(_)) => Ok(answer),
                        _ => Err(Unreachable("the change was put but never came back".to_owned())),
                    };
                }
                Ok(Err(PutError::Stale)) => {
                    // Another came first: wait until this copy has it, then redo the change.
                    if !matches!(
                        tokio::time::timeout(WAIT, rx.wait_for(|v| v.version > version)).await,
                        Ok(Ok(_))
                    ) {
                        return Err(Unreachable("a newer board never came".to_owned()));
                    }
                }
                Ok(Err(PutError::Unreachable(e))) => return Err(Unreachable(e)),
                Ok(Err(PutError::TooLarge(n))) => {
                    return Err(Unreachable(format!("the board would be {n} bytes, more than {MAX_BYTES}")));
                }
                Err(_) => return Err(Unreachable("no answer in 5 s".to_owned())),
            }
        }
        Err(Unreachable(format!("{TRIES} other changes came first")))
    }

    /// Makes `change` soon, without waiting: at once on one server, in the background in a
    /// cluster (a failure there is logged).
    pub fn update_soon(self: &Arc<Self>, mut change: impl FnMut(&mut Board) + Send + 'static) {
        if self.keeper.get().is_none() {
            let Versioned { version, board } = self.versioned();
            let mut next = (*board).clone();
            change(&mut next);
            if next != *board && Here.put_now(&self.here, version, next) {
                return;
            }
        }
        let boards = self.clone();
        tokio::spawn(async move {
            if let Err(e) = boards.update(change).await {
                tracing::warn!(error = %e, "board: a change was not made");
            }
        });
    }

    /// Announces `action` to the other servers (the caller carried it out here).
    pub fn announce(&self, action: &Action) {
        self.keeper().announce(action);
    }

    /// Takes in the board a cluster's stream holds at `version`, unless this copy is newer.
    fn adopt(&self, version: u64, board: Board) {
        self.here.send_if_modified(|v| {
            let newer = version > v.version;
            if newer {
                *v = Versioned { version, board: Arc::new(board) };
            }
            newer
        });
    }

    /// Keeps the board in the cluster's stream from now on (what this server set before is
    /// left behind: it joins before it serves), follows it, and hands actions announced by
    /// other processes (not this one: [`instance`]) to `actor`. Fails only when it joined
    /// already; an unreachable NATS is retried.
    pub async fn join(self: &Arc<Self>, link: &Link, actor: Weak<dyn Actor>) -> Result<(), String> {
        let keeper = Arc::new(InStream { js: link.js.clone(), client: link.client.clone() });
        self.keeper.set(keeper.clone()).map_err(|_| "this board is kept already".to_owned())?;
        self.here.send_replace(Versioned::default());
        tokio::spawn(follow(link.clone(), Arc::downgrade(self)));
        tokio::spawn(hear(link.client.clone(), actor));
        // Serve with the cluster's board, not an empty one: wait (a while) until it is here.
        let mut rx = self.here.subscribe();
        let first = async {
            let newest = keeper.newest().await?;
            rx.wait_for(|v| v.version >= newest).await.map_err(|e| e.to_string())?;
            Ok::<u64, String>(newest)
        };
        match tokio::time::timeout(WAIT, first).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "board: serving before the cluster's board came"),
            Err(_) => tracing::warn!("board: serving before the cluster's board came (none in 5 s)"),
        }
        Ok(())
    }
}

async fn stream_of(js: &jetstream::Context) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

/// Follows the board's subject into `boards`, forever (from its newest message again after
/// every reconnection).
async fn follow(link: Link, boards: Weak<Boards>) {
    loop {
        let result = async {
            let stream = stream_of(&link.js).await?;
            let config = consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                filter_subject: SUBJECT.to_owned(),
                ..Default::default()
            };
            let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            while let Some(message) = next_message(&mut messages, &link.reconnected).await {
                let message = message?;
                let version = message.info().map_err(|e| e.to_string())?.stream_sequence;
                let Some(boards) = boards.upgrade() else { return Ok(()) };
                match serde_json::from_slice::<Board>(&message.payload) {
                    Ok(board) => boards.adopt(version, board),
                    Err(e) => tracing::warn!(version, error = %e, "board: a message that is not a board"),
                }
            }
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "board: not following the cluster's board (retrying)");
        }
        if boards.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Hands the actions other processes announce to `actor`, forever.
async fn hear(client: async_nats::Client, actor: Weak<dyn Actor>) {
    let mut subscription = loop {
        match client.subscribe(ACTIONS).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "board: cannot hear actions yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    while let Some(message) = subscription.next().await {
        let Some(actor) = actor.upgrade() else { return };
        match serde_json::from_slice::<Action>(&message.payload) {
            Ok(action) if action.instance != instance() => actor.act(&action),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "board: a message that is not an action"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_made_at_once_all_land() {
        let boards = Arc::new(Boards::default());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let b = boards.clone();
                tokio::spawn(async move {
                    b.update(|b| {
                        b.next_fault += 1;
                        b.next_fault
                    })
                    .await
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (2..22).collect::<Vec<_>>(), "each change saw the one before");
        assert_eq!(boards.versioned().version, 20);
    }

    #[tokio::test]
    async fn a_change_that_changes_nothing_puts_nothing() {
        let boards = Boards::default();
        assert_eq!(boards.update(|b| b.hold_on).await, Ok(false));
        assert_eq!(boards.versioned().version, 0);
    }

    #[tokio::test]
    async fn a_soon_change_on_one_server_is_made_at_once() {
        let boards = Arc::new(Boards::default());
        boards.update_soon(|b| b.highlight = Some("c-ana".into()));
        assert_eq!(boards.now().highlight.as_deref(), Some("c-ana"));
    }

    #[test]
    fn a_new_session_ends_the_last_one_where_it_begins_and_the_list_is_capped() {
        let mut board = Board::default();
        assert_eq!(board.start_session("one", 1, 10), 1);
        assert_eq!(board.start_session("two", 41, 20), 2);
        let one = &board.sessions[0];
        assert_eq!((one.first_seq, one.last_seq, one.ended_us), (1, Some(40), Some(20)));
        assert_eq!(board.current_session().map(|s| (s.id, s.first_seq, s.last_seq)), Some((2, 41, None)));
        // Started again before anything was recorded: an empty span, not a negative one; and
        // never from before the current one began (spans do not overlap).
        board.start_session("three", 30, 30);
        assert_eq!(board.sessions[1].last_seq, Some(40));
        assert_eq!(board.sessions[2].first_seq, 41);
        for n in 0..MAX_SESSIONS {
            board.start_session(&format!("s{n}"), 41, 40);
        }
        assert_eq!(board.sessions.len(), MAX_SESSIONS);
        assert_eq!(board.sessions[0].name, "s0", "the oldest went");
    }

    #[test]
    fn a_board_read_back_is_the_same_and_old_boards_still_read() {
        let mut board = Board { hold_on: true, ..Board::default() };
        board.muted.insert("c-ana".into());
        let json = serde_json::to_string(&board).unwrap();
        assert_eq!(serde_json::from_str::<Board>(&json).unwrap(), board);
        // A board from a server that knew fewer fields gets the rest at their defaults.
        let old: Board = serde_json::from_str(r#"{"holdOn":true}"#).unwrap();
        assert_eq!((old.hold_on, old.hold_timeout_ms, old.next_fault), (true, 30_000, 1));
    }
}
