//! `/ws/events`: the lecture's WebSocket patterns — presence, rooms with chat history, the
//! ping-pong demo, a periodic `tick`, and `transcriptChanged` pushed to every connection when
//! a REST write succeeds (linked, in the event log, to the request that caused it).
//!
//! Rate limits and mutes key on the id the server issued the client ([`crate::ids`], a signed
//! cookie), not on the lane id the client chose: a client that renames itself keeps its limits
//! and its mute.
//!
//! Each connection has a bounded outgoing queue; a client too slow to keep up is closed with
//! 1013 Try Again Later (it reconnects and rejoins) rather than slowing anyone else.

pub mod relay;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::channel::{
    CHANNEL_VERSION, ChatLine, ClientMsg, MAX_MESSAGE_BYTES, Peer, ROOM_HISTORY, ServerEnvelope, ServerMsg,
};
use tokio::sync::mpsc;

use self::relay::Relay;

use crate::board::Boards;
use crate::changes::ChangeFeed;
use crate::error::ApiError;
use crate::extract::QueryText;
use crate::identity::valid_client_id;
use crate::ids::{Identified, Issuer};
use crate::limits::{CHAT_LIMIT, CHAT_WINDOW, NAME_LIMIT, NICKNAME_CHARS as MAX_NAME};
use crate::shutdown::Shutdown;
use crate::ws::{Message, WebSocket, WebSocketUpgrade};

/// What `/ws/events` needs: the hub, the change feed it forwards, the stop signal, the tick.
#[derive(Clone)]
pub struct Ctx {
    pub hub: Arc<Hub>,
    pub changes: Arc<ChangeFeed>,
    pub shutdown: Shutdown,
    pub tick: Duration,
    /// Issues and checks the ids limits key on.
    pub issuer: Arc<Issuer>,
}

/// `/ws/events`.
pub fn routes() -> Router<Ctx> {
    Router::new().route(crate::paths::EVENTS_PATH, get(upgrade))
}

/// Messages a connection may have waiting before it counts as too slow.
const QUEUE: usize = 256;
/// How often every connection gets a `tick`.
pub const TICK: Duration = Duration::from_secs(5);
const MAX_TEXT: usize = 2000;
const MAX_ROUNDS: u32 = 100;

/// What goes out on a connection: a message, and the exchange that caused it (if any).
type Out = (ServerMsg, Option<u64>);

struct Conn {
    peer: Peer,
    /// The id the server issued this client: what its limits and mute key on.
    key: String,
    greeted: bool,
    rooms: HashSet<String>,
    tx: mpsc::Sender<Out>,
    overflow: Arc<AtomicBool>,
}

struct Room {
    members: HashSet<u64>,
    history: VecDeque<ChatLine>,
    /// Last join, leave or line: an empty room is forgotten [`ROOM_KEEP`] after it.
    touched: Instant,
}

impl Default for Room {
    fn default() -> Self {
        Self { members: HashSet::new(), history: VecDeque::new(), touched: Instant::now() }
    }
}

/// How long an empty room keeps its history for whoever comes back.
pub const ROOM_KEEP: Duration = Duration::from_secs(3600);
/// Most rooms at once; a join that would open one more takes the place of the empty room
/// untouched the longest, and is refused when none is empty.
pub const MAX_ROOMS: usize = 1000;
/// Most rooms one connection is in at once (so no one connection fills [`MAX_ROOMS`]).
pub const ROOMS_PER_CONNECTION: usize = 20;

#[derive(Default)]
struct Inner {
    conns: HashMap<u64, Conn>,
    rooms: HashMap<String, Room>,
    /// Recent chat and hello times per issued id, for the rate limits.
    recent: HashMap<String, (VecDeque<Instant>, VecDeque<Instant>)>,
}

/// Most clients muted at once (lane ids, and issued ids); a mute past it is refused. The
/// mutes are on the room's board, which a cluster keeps in one NATS message (at most 1 MiB).
pub const MAX_MUTED: usize = 2_000;

/// Counts an action in a sliding window; false when over the limit.
fn allow(times: &mut VecDeque<Instant>, limit: usize, window: Duration) -> bool {
    let now = Instant::now();
    while times.front().is_some_and(|t| now.duration_since(*t) > window) {
        times.pop_front();
    }
    if times.len() >= limit {
        return false;
    }
    times.push_back(now);
    true
}

/// Everyone connected to `/ws/events`.
pub struct Hub {
    /// Chat lines a client may send per [`CHAT_WINDOW`].
    pub chat_limit: usize,
    /// The room's board, where mutes are kept: the instructor mutes a lane id, and with it the
    /// issued ids connected or chatting as it, which stay muted under any lane they come back
    /// as and are unmuted with that lane (a muted client that takes another's lane id mutes
    /// nobody else).
    board: Arc<Boards>,
    /// Passes joins, leaves and chat lines to the other replicas of a cluster.
    relay: OnceLock<Relay>,
    /// In a cluster: the issuer that ids issued by other replicas are counted against.
    issuer: OnceLock<std::sync::Weak<Issuer>>,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    open: AtomicU32,
    started: std::sync::Once,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(CHAT_LIMIT, Arc::default())
    }
}

impl Hub {
    /// A hub allowing `chat_limit` chat lines per client per 10 seconds, its mutes on `board`.
    pub fn new(chat_limit: usize, board: Arc<Boards>) -> Self {
        Self {
            chat_limit,
            board,
            relay: OnceLock::new(),
            issuer: OnceLock::new(),
            inner: Mutex::default(),
            next_id: AtomicU64::new(1),
            open: AtomicU32::new(0),
            started: std::sync::Once::new(),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("open", &self.open).finish_non_exhaustive()
    }
}

/// Queues a message for a connection. A message that a later one supersedes (someone came
/// or went, a tick, the lab's figures: the next tick, every few seconds, carries the true
/// count of watchers) takes at most half the queue, and is dropped past it, so a crowd
/// joining at once never crowds out chat lines and changes; anything else that finds the
/// queue full marks the connection too slow, and it is closed with 1013.
fn send_to(conn: &Conn, out: Out) {
    if supersedable(&out.0) {
        if conn.tx.capacity() > QUEUE / 2 {
            let _ = conn.tx.try_send(out);
        }
    } else if conn.tx.try_send(out).is_err() {
        conn.overflow.store(true, Ordering::Relaxed);
    }
}

fn supersedable(msg: &ServerMsg) -> bool {
    matches!(
        msg,
        ServerMsg::Joined { .. } | ServerMsg::Left { .. } | ServerMsg::Tick { .. } | ServerMsg::LabReport(_)
    )
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open `/ws/events` connections.
    pub fn watchers(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Sends `msg` to every connection.
    pub fn broadcast(&self, msg: &ServerMsg, cause: Option<u64>) {
        for conn in self.lock().conns.values() {
            send_to(conn, (msg.clone(), cause));
        }
    }

    /// Sends `msg` to the members of `room`.
    pub fn to_room(&self, room: &str, msg: &ServerMsg, cause: Option<u64>) {
        let inner = self.lock();
        if let Some(r) = inner.rooms.get(room) {
            for id in &r.members {
                if let Some(conn) = inner.conns.get(id) {
                    send_to(conn, (msg.clone(), cause));
                }
            }
        }
    }

    /// Clients whose chat is refused.
    pub fn muted(&self) -> Vec<String> {
        self.board.read(|b| b.muted.iter().cloned().collect())
    }

    /// Mutes (or unmutes) the lane `client`, and with it every issued id connected as that
    /// lane now (on this server; the others add theirs when they see the mute) or chatting as
    /// it later: renaming itself afterwards does not unmute a client. Unmuting the lane frees
    /// the ids muted as it. Past [`MAX_MUTED`]: 409.
    pub async fn set_muted(&self, client: &str, muted: bool) -> Result<(), ApiError> {
        let keys: Vec<String> = self
            .lock()
            .conns
            .values()
            .filter(|c| c.peer.client_id == client)
            .map(|c| c.key.clone())
            .collect();
        let done = self
            .board
            .update(|b| {
                if !muted {
                    b.muted.remove(client);
                    b.muted_keys.retain(|_, lane| lane != client);
                    return true;
                }
                let new_keys = keys.iter().filter(|k| !b.muted_keys.contains_key(*k)).count();
                let new_lane = usize::from(!b.muted.contains(client));
                if b.muted.len() + new_lane > MAX_MUTED || b.muted_keys.len() + new_keys > MAX_MUTED {
                    return false;
                }
                b.muted.insert(client.to_owned());
                for key in &keys {
                    b.muted_keys.entry(key.clone()).or_insert_with(|| client.to_owned());
                }
                true
            })
            .await?;
        if done {
            Ok(())
        } else {
            Err(ApiError::Conflict(format!("{MAX_MUTED} clients are muted already; unmute one first")))
        }
    }

    /// Mutes the issued ids `keys` (each with the lane it is muted as), soon, where their lane
    /// is still muted.
    fn mute_keys(&self, keys: Vec<(String, String)>) {
        self.board.update_soon(move |b| {
            for (key, lane) in &keys {
                if b.muted.contains(lane) && b.muted_keys.len() < MAX_MUTED {
                    b.muted_keys.entry(key.clone()).or_insert_with(|| lane.clone());
                }
            }
        });
    }

    /// Passes `msg` (a join, a leave, a chat line from the client issued `key`) to the other
    /// replicas of a cluster.
    fn relay(&self, msg: &ServerMsg, key: Option<&str>) {
        if let Some(relay) = self.relay.get() {
            relay.send(relay::News::Msg { msg: msg.clone(), key: key.map(str::to_owned) });
        }
    }

    /// Joins the other replicas of a cluster at `link`: what happens on this hub is passed to
    /// theirs and theirs to this one, so a room's members talk whichever replica they reached;
    /// a lane muted through another replica mutes the ids connected as it here.
    pub fn join_cluster(
        self: &Arc<Self>,
        link: &crate::log::stream::Link,
        issuer: &Arc<Issuer>,
    ) -> Result<(), String> {
        let hears: std::sync::Weak<dyn relay::Hears> = Arc::downgrade(self) as _;
        let relay = relay::start(link.client.clone(), hears);
        self.relay.set(relay).map_err(|_| "this hub joined a cluster already".to_owned())?;
        let _ = self.issuer.set(Arc::downgrade(issuer));
        let hub = Arc::downgrade(self);
        issuer.on_issue(move |addr| {
            if let Some(relay) = hub.upgrade().as_ref().and_then(|h| h.relay.get()) {
                relay.send(relay::News::Issued { addr });
            }
        });
        let hub = Arc::downgrade(self);
        let mut board = self.board.watch();
        tokio::spawn(async move {
            while board.changed().await.is_ok() {
                let b = board.borrow_and_update().board.clone();
                let Some(hub) = hub.upgrade() else { return };
                let keys: Vec<(String, String)> = hub
                    .lock()
                    .conns
                    .values()
                    .filter(|c| b.muted.contains(&c.peer.client_id) && !b.muted_keys.contains_key(&c.key))
                    .map(|c| (c.key.clone(), c.peer.client_id.clone()))
                    .collect();
                if !keys.is_empty() {
                    hub.mute_keys(keys);
                }
            }
        });
        Ok(())
    }
}

impl relay::Hears for Hub {
    fn renamed(&self, key: String) {
        let mut inner = self.lock();
        let (_, names) = inner.recent.entry(key).or_default();
        names.push_back(Instant::now());
        if names.len() > NAME_LIMIT {
            names.pop_front();
        }
    }

    fn issued(&self, addr: std::net::IpAddr) {
        if let Some(issuer) = self.issuer.get().and_then(std::sync::Weak::upgrade) {
            issuer.issued_elsewhere(addr, Instant::now());
        }
    }

    /// Takes in what another replica's hub relayed: delivered to this one's connections; a
    /// chat line kept in its room's history and counted against its sender's rate limit here
    /// too (so a client with sockets on two replicas has one allowance, not two).
    fn hear(&self, msg: ServerMsg, key: Option<String>) {
        let mut inner = self.lock();
        match &msg {
            ServerMsg::Chat(line) => {
                if let Some(key) = key {
                    let (chat, _) = inner.recent.entry(key).or_default();
                    chat.push_back(Instant::now());
                    if chat.len() > self.chat_limit {
                        chat.pop_front();
                    }
                }
                if !inner.rooms.contains_key(&line.room) && inner.rooms.len() >= MAX_ROOMS {
                    return;
                }
                let Inner { conns, rooms, .. } = &mut *inner;
                let r = rooms.entry(line.room.clone()).or_default();
                r.touched = Instant::now();
                r.history.push_back(line.clone());
                if r.history.len() > ROOM_HISTORY {
                    r.history.pop_front();
                }
                for member in &r.members {
                    if let Some(c) = conns.get(member) {
                        send_to(c, (msg.clone(), None));
                    }
                }
            }
            ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {
                for conn in inner.conns.values() {
                    send_to(conn, (msg.clone(), None));
                }
            }
            _ => {}
        }
    }
}

impl Hub {
    /// The instructor renames a client on the channel.
    pub fn rename(&self, client: &str, name: &str) {
        let name: String = name.trim().chars().take(MAX_NAME).collect();
        if name.is_empty() {
            return;
        }
        for conn in self.lock().conns.values_mut().filter(|c| c.peer.client_id == client) {
            conn.peer.name = name.clone();
        }
    }

    /// Forgets what no longer matters at `now`: empty rooms untouched for [`ROOM_KEEP`], and
    /// rate-limit entries with nothing left in their windows. Run on every tick.
    pub fn sweep(&self, now: Instant) {
        let mut inner = self.lock();
        let window = CHAT_WINDOW.max(crate::limits::NAME_WINDOW);
        inner.recent.retain(|_, (chat, names)| {
            chat.iter().chain(names.iter()).any(|t| now.saturating_duration_since(*t) <= window)
        });
        inner
            .rooms
            .retain(|_, r| !r.members.is_empty() || now.saturating_duration_since(r.touched) < ROOM_KEEP);
    }

    /// Rooms and rate entries held (for tests and the bench).
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.rooms.len(), inner.recent.len())
    }

    /// Starts (once) the hub's own tasks: the tick, and forwarding transcript changes.
    fn start(&self, state: &Ctx) {
        self.started.call_once(|| {
            let hub = Arc::downgrade(&state.hub);
            let issuer = Arc::downgrade(&state.issuer);
            let tick = state.tick;
            tokio::spawn(async move {
                let mut every = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
                loop {
                    every.tick().await;
                    let Some(hub) = hub.upgrade() else { return };
                    hub.broadcast(&ServerMsg::Tick { watchers: hub.watchers() }, None);
                    hub.sweep(Instant::now());
                    if let Some(issuer) = issuer.upgrade() {
                        issuer.sweep(Instant::now());
                    }
                }
            });
            let hub = Arc::downgrade(&state.hub);
            let mut changes = state.changes.subscribe();
            tokio::spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(change) => {
                            let Some(hub) = hub.upgrade() else { return };
                            let cause = change.cause;
                            hub.broadcast(&ServerMsg::TranscriptChanged(change), cause);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        });
    }

    fn add(&self, client_id: String, key: String) -> (u64, mpsc::Receiver<Out>, Arc<AtomicBool>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let conn = Conn {
            peer: Peer { name: client_id.clone(), client_id },
            key,
            greeted: false,
            rooms: HashSet::new(),
            tx,
            overflow: overflow.clone(),
        };
        self.lock().conns.insert(id, conn);
        self.open.fetch_add(1, Ordering::Relaxed);
        (id, rx, overflow)
    }

    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.remove(&id) else { return };
        for room in &conn.rooms {
            if let Some(r) = inner.rooms.get_mut(room) {
                r.members.remove(&id);
                r.touched = Instant::now();
            }
        }
        let connected = self.open.fetch_sub(1, Ordering::Relaxed) - 1;
        if conn.greeted {
            let msg = ServerMsg::Left { peer: conn.peer, connected };
            for other in inner.conns.values() {
                send_to(other, (msg.clone(), None));
            }
            self.relay(&msg, None);
        }
    }

    /// Handles one client message; answers what goes back to the sender only.
    fn handle(&self, id: u64, msg: ClientMsg, pingpong: &mut Option<(u32, u32)>) -> Vec<ServerMsg> {
        let err = |m: &str| vec![ServerMsg::Error { message: m.to_owned() }];
        let mut inner = self.lock();
        let connected = self.open.load(Ordering::Relaxed);
        match msg {
            ClientMsg::Hello { name } => {
                let name = name.trim().chars().take(MAX_NAME).collect::<String>();
                if name.is_empty() {
                    return err("hello: name must not be empty");
                }
                let Some(key) = inner.conns.get(&id).map(|c| c.key.clone()) else {
                    return Vec::new();
                };
                let renaming = inner.conns.get(&id).is_some_and(|c| c.greeted && c.peer.name != name);
                if renaming
                    && !allow(
                        &mut inner.recent.entry(key.clone()).or_default().1,
                        NAME_LIMIT,
                        crate::limits::NAME_WINDOW,
                    )
                {
                    return err("hello: too many name changes; wait a minute");
                }
                let Some(conn) = inner.conns.get_mut(&id) else { return Vec::new() };
                conn.peer.name = name;
                let first = !conn.greeted;
                conn.greeted = true;
                let peer = conn.peer.clone();
                if first {
                    let joined = ServerMsg::Joined { peer: peer.clone(), connected };
                    for (other_id, other) in &inner.conns {
                        if *other_id != id {
                            send_to(other, (joined.clone(), None));
                        }
                    }
                    self.relay(&joined, None);
                } else if renaming && let Some(relay) = self.relay.get() {
                    relay.send(relay::News::Renamed { key });
                }
                vec![ServerMsg::Welcome { version: CHANNEL_VERSION, client_id: peer.client_id, connected }]
            }
            ClientMsg::Join { room } => {
                if !valid_room(&room) {
                    return err("join: a room name is 1 to 40 letters, digits, spaces, - or _");
                }
                let Some(conn) = inner.conns.get(&id) else { return Vec::new() };
                if !conn.rooms.contains(&room) && conn.rooms.len() >= ROOMS_PER_CONNECTION {
                    return err("join: you are in 20 rooms already; leave one first");
                }
                if !inner.rooms.contains_key(&room) && inner.rooms.len() >= MAX_ROOMS {
                    // Full: the empty room untouched the longest makes way, else a refusal.
                    let oldest = inner
                        .rooms
                        .iter()
                        .filter(|(_, r)| r.members.is_empty())
                        .min_by_key(|(_, r)| r.touched)
                        .map(|(name, _)| name.clone());
                    match oldest {
                        Some(name) => {
                            inner.rooms.remove(&name);
                        }
                        None => return err("join: too many rooms are open; join one that exists"),
                    }
                }
                let Some(conn) = inner.conns.get_mut(&id) else { return Vec::new() };
                conn.rooms.insert(room.clone());
                let r = inner.rooms.entry(room.clone()).or_default();
                r.members.insert(id);
                r.touched = Instant::now();
                vec![ServerMsg::History {
                    members: r.members.len() as u32,
                    messages: r.history.iter().cloned().collect(),
                    room,
                }]
            }
            ClientMsg::Leave { room } => {
                let was = inner.conns.get_mut(&id).is_some_and(|c| c.rooms.remove(&room));
                if !was {
                    return err("leave: you are not in that room");
                }
                if let Some(r) = inner.rooms.get_mut(&room) {
                    r.members.remove(&id);
                    r.touched = Instant::now();
                }
                Vec::new()
            }
            ClientMsg::Chat { room, text } => {
                let Some(conn) = inner.conns.get(&id) else { return Vec::new() };
                if !conn.rooms.contains(&room) {
                    return err("chat: join the room first");
                }
                let (client, key) = (conn.peer.client_id.clone(), conn.key.clone());
                let (key_muted, lane_muted) =
                    self.board.read(|b| (b.muted_keys.contains_key(&key), b.muted.contains(&client)));
                if key_muted {
                    return err("chat: the instructor muted you");
                }
                if lane_muted {
                    // Muted as this lane: the id is muted from now on, under any lane.
                    self.mute_keys(vec![(key, client)]);
                    return err("chat: the instructor muted you");
                }
                if !allow(&mut inner.recent.entry(key.clone()).or_default().0, self.chat_limit, CHAT_WINDOW) {
                    return err(&format!(
                        "chat: slow down (at most {} lines in 10 seconds)",
                        self.chat_limit
                    ));
                }
                let Some(conn) = inner.conns.get(&id) else { return Vec::new() };
                let text = text.trim().to_owned();
                if text.is_empty() || text.chars().count() > MAX_TEXT {
                    return err("chat: text must be 1 to 2000 characters");
                }
                let line = ChatLine {
                    room: room.clone(),
                    from: conn.peer.clone(),
                    text,
                    at_us: crate::clock::now_us(),
                };
                let Inner { conns, rooms, .. } = &mut *inner;
                let r = rooms.entry(room).or_default();
                r.touched = Instant::now();
                r.history.push_back(line.clone());
                if r.history.len() > ROOM_HISTORY {
                    r.history.pop_front();
                }
                let msg = ServerMsg::Chat(line);
                for member in &r.members {
                    if let Some(c) = conns.get(member) {
                        send_to(c, (msg.clone(), None));
                    }
                }
                self.relay(&msg, Some(&key));
                Vec::new()
            }
            ClientMsg::Pingpong { rounds } => {
                if !(1..=MAX_ROUNDS).contains(&rounds) {
                    return err("pingpong: rounds must be 1 to 100");
                }
                *pingpong = Some((rounds, 1));
                vec![ServerMsg::Ping { n: 1 }]
            }
            ClientMsg::Pong { n } => match *pingpong {
                Some((rounds, expected)) if n == expected => {
                    if n >= rounds {
                        *pingpong = None;
                        vec![ServerMsg::PingpongDone { rounds }]
                    } else {
                        *pingpong = Some((rounds, n + 1));
                        vec![ServerMsg::Ping { n: n + 1 }]
                    }
                }
                Some((_, expected)) => err(&format!("pong: expected pong {expected}, got {n}")),
                None => err("pong: no ping-pong is running (send pingpong first)"),
            },
        }
    }
}

fn valid_room(room: &str) -> bool {
    (1..=40).contains(&room.chars().count())
        && room.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
        && !room.trim().is_empty()
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Ctx>,
    QueryText(q): QueryText,
    who: Identified,
) -> Response {
    let client_id = q.get("client").filter(|c| valid_client_id(c)).cloned();
    // `since`: the last transcript change this client saw; the ones after it are replayed.
    let since = match q.get("since").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            let problem = ("since".to_owned(), "must be a non-negative integer".to_owned());
            return ApiError::Validation([problem].into()).into_response();
        }
    };
    state.hub.start(&state);
    // Its limits and mute key on the id the server issued it (a new one goes back with the 101).
    let key = who.key.clone();
    who.hand_over(
        ws.max_message_size(MAX_MESSAGE_BYTES)
            .on_upgrade(move |socket| run(socket, state, client_id, key, since)),
    )
}

impl FromRef<Ctx> for Arc<Issuer> {
    fn from_ref(ctx: &Ctx) -> Self {
        ctx.issuer.clone()
    }
}

async fn run(mut socket: WebSocket, state: Ctx, client_id: Option<String>, key: String, since: Option<u64>) {
    let hub = state.hub.clone();
    let client_id = client_id.unwrap_or_else(|| format!("anon-{}", hub.next_id.load(Ordering::Relaxed)));
    let (id, mut rx, overflow) = hub.add(client_id, key);
    // Subscribed first, then the backlog read: a change in between comes both ways and is sent
    // once (the live copy is skipped when the replay already had it).
    let backlog = since.map(|since| {
        let after = state.changes.since(since);
        // A `since` past the newest change is from another database (`--reset`): replay it all.
        if since > after.latest { state.changes.since(0).changes } else { after.changes }
    });
    let replayed = backlog.as_ref().and_then(|b| b.last()).map_or(0, |c| c.seq);
    let shutdown = state.shutdown.clone();
    let mut seq = 0u64;
    let mut pingpong = None;
    let mut send = async |socket: &mut WebSocket, msg: ServerMsg, cause: Option<u64>| {
        seq += 1;
        let env = ServerEnvelope { msg, seq, at_us: crate::clock::now_us() };
        let text = serde_json::to_string(&env).unwrap_or_default();
        socket.send_caused(Message::text(text), cause).await.is_ok()
    };
    for change in backlog.into_iter().flatten() {
        let cause = change.cause;
        if !send(&mut socket, ServerMsg::TranscriptChanged(change), cause).await {
            hub.remove(id);
            return;
        }
    }
    loop {
        tokio::select! {
            () = shutdown.wait() => {
                socket.close(1001, "server shutting down").await;
                break;
            }
            out = rx.recv() => {
                let Some((msg, cause)) = out else { break };
                if matches!(&msg, ServerMsg::TranscriptChanged(c) if c.seq <= replayed) {
                    continue;
                }
                if !send(&mut socket, msg, cause).await {
                    break;
                }
                if overflow.load(Ordering::Relaxed) {
                    socket.close(1013, "too slow: messages were piling up").await;
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let replies = match serde_json::from_str::<ClientMsg>(&text) {
                        Ok(m) => hub.handle(id, m, &mut pingpong),
                        Err(e) => vec![ServerMsg::Error { message: describe(&text, &e) }],
                    };
                    for r in replies {
                        if !send(&mut socket, r, None).await {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = ServerMsg::Error { message: "binary frames are not part of this protocol: send JSON text".into() };
                    if !send(&mut socket, e, None).await {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    socket.fail(&e).await;
                    break;
                }
                None => break,
            },
        }
    }
    hub.remove(id);
}

/// Why a client message was not understood, in one line.
fn describe(text: &str, e: &serde_json::Error) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(_) => format!("not JSON: {e}"),
        Ok(v) => match v.get("type").and_then(|t| t.as_str()) {
            None => "a message is {\"type\": NAME, \"data\": {…}}".to_owned(),
            Some(t) if !["hello", "join", "leave", "chat", "pingpong", "pong"].contains(&t) => {
                format!("unknown type \"{t}\" (known: hello, join, leave, chat, pingpong, pong)")
            }
            Some(t) => format!("bad data for \"{t}\": {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of lane `client`, issued the id `k-{client}`.
    fn add(hub: &Hub, client: impl Into<String>) -> (u64, mpsc::Receiver<Out>, Arc<AtomicBool>) {
        let client = client.into();
        hub.add(client.clone(), format!("k-{client}"))
    }

    #[test]
    fn empty_rooms_and_old_rate_entries_are_forgotten_and_rooms_are_capped() {
        let hub = Hub::new(5, Arc::default());
        let (id, _rx, _) = add(&hub, "c-ana".to_owned());
        let mut pp = None;
        for room in ["a", "b"] {
            assert!(matches!(
                hub.handle(id, ClientMsg::Join { room: room.into() }, &mut pp)[..],
                [ServerMsg::History { .. }]
            ));
        }
        hub.handle(id, ClientMsg::Chat { room: "a".into(), text: "hi".into() }, &mut pp);
        hub.handle(id, ClientMsg::Leave { room: "b".into() }, &mut pp);
        assert_eq!(hub.sizes(), (2, 1));
        // An hour on: the empty room goes, the one with a member stays; the chat entry goes.
        hub.sweep(Instant::now() + ROOM_KEEP + Duration::from_secs(1));
        assert_eq!(hub.sizes(), (1, 0));
        let crowded = hub.handle(id, ClientMsg::Join { room: "r0".into() }, &mut pp);
        assert!(matches!(crowded[..], [ServerMsg::History { .. }]));
        for n in 2..=ROOMS_PER_CONNECTION {
            hub.handle(id, ClientMsg::Join { room: format!("mine{n}") }, &mut pp);
        }
        let refused = hub.handle(id, ClientMsg::Join { room: "one-more".into() }, &mut pp);
        assert!(
            matches!(&refused[..], [ServerMsg::Error { message }] if message.contains("20 rooms")),
            "{refused:?}"
        );
        // Many connections together fill the hub up to its cap, and no further.
        let mut n = hub.sizes().0;
        while n < MAX_ROOMS {
            let (other, _rx, _) = add(&hub, format!("c-{n}"));
            for _ in 0..ROOMS_PER_CONNECTION.min(MAX_ROOMS - n) {
                let got = hub.handle(other, ClientMsg::Join { room: format!("r{n}") }, &mut pp);
                assert!(matches!(got[..], [ServerMsg::History { .. }]), "room {n}");
                n += 1;
            }
        }
        let (last, _rx, _) = add(&hub, "c-last".to_owned());
        let refused = hub.handle(last, ClientMsg::Join { room: "one-too-many".into() }, &mut pp);
        assert!(
            matches!(&refused[..], [ServerMsg::Error { message, .. }] if message.contains("too many rooms")),
            "{refused:?}"
        );
        assert_eq!(hub.sizes().0, MAX_ROOMS);
        // Once a room is empty, a new one takes its place.
        hub.handle(id, ClientMsg::Leave { room: "r0".into() }, &mut pp);
        let got = hub.handle(last, ClientMsg::Join { room: "one-too-many".into() }, &mut pp);
        assert!(matches!(got[..], [ServerMsg::History { .. }]), "{got:?}");
        assert_eq!(hub.sizes().0, MAX_ROOMS);
    }

    #[test]
    fn a_crowd_joining_at_once_never_crowds_out_a_chat_line() {
        let hub = Hub::new(5, Arc::default());
        let (slow, mut rx, overflow) = add(&hub, "c-slow".to_owned());
        let (talker, _rx2, _) = add(&hub, "c-talk".to_owned());
        let mut pp = None;
        for id in [slow, talker] {
            hub.handle(id, ClientMsg::Join { room: "lecture".into() }, &mut pp);
        }
        // Three hundred students arrive while this connection reads nothing.
        for n in 0..300 {
            let peer = Peer { client_id: format!("c-{n}"), name: format!("S{n}") };
            hub.broadcast(&ServerMsg::Joined { peer, connected: n }, None);
        }
        hub.handle(talker, ClientMsg::Chat { room: "lecture".into(), text: "hello".into() }, &mut pp);
        assert!(!overflow.load(Ordering::Relaxed), "not too slow: the arrivals took half the queue at most");
        let mut got = Vec::new();
        while let Ok((m, _)) = rx.try_recv() {
            got.push(m);
        }
        assert_eq!(got.iter().filter(|m| matches!(m, ServerMsg::Joined { .. })).count(), QUEUE / 2);
        assert!(
            matches!(got.last(), Some(ServerMsg::Chat(line)) if line.text == "hello"),
            "{:?}",
            got.last()
        );
        // What is not superseded still marks a connection that stopped reading too slow.
        for seq in 0..=QUEUE as u64 {
            let change = protocol::channel::Change {
                seq,
                kind: protocol::channel::ChangeKind::StudentCreated,
                student_id: 1,
                course: None,
                at_us: 0,
                cause: None,
            };
            hub.broadcast(&ServerMsg::TranscriptChanged(change), None);
        }
        assert!(overflow.load(Ordering::Relaxed));
    }

    #[test]
    fn chat_lines_and_renames_on_other_replicas_count_against_the_same_allowance() {
        use relay::Hears;
        let hub = Hub::new(3, Arc::default());
        let (ana, _rx, _) = hub.add("c-ana".into(), "k-1".into());
        let mut pp = None;
        hub.handle(ana, ClientMsg::Hello { name: "Ana".into() }, &mut pp);
        hub.handle(ana, ClientMsg::Join { room: "r".into() }, &mut pp);
        let line = |text: &str| ChatLine {
            room: "r".into(),
            from: Peer { client_id: "c-ana".into(), name: "Ana".into() },
            text: text.into(),
            at_us: 0,
        };
        // Three lines from the same issued id on another replica: none left here.
        for n in 0..3 {
            hub.hear(ServerMsg::Chat(line(&format!("elsewhere {n}"))), Some("k-1".into()));
        }
        let answer = hub.handle(ana, ClientMsg::Chat { room: "r".into(), text: "here".into() }, &mut pp);
        assert!(
            matches!(&answer[..], [ServerMsg::Error { message }] if message.contains("slow down")),
            "{answer:?}"
        );
        // The same for renames.
        for _ in 0..NAME_LIMIT {
            hub.renamed("k-1".into());
        }
        let answer = hub.handle(ana, ClientMsg::Hello { name: "Anna".into() }, &mut pp);
        assert!(
            matches!(&answer[..], [ServerMsg::Error { message }] if message.contains("name changes")),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_mute_follows_the_issued_id_and_the_mute_list_is_capped() {
        let hub = Hub::default();
        let chat = |id: u64| {
            let mut pp = None;
            hub.handle(id, ClientMsg::Join { room: "r".into() }, &mut pp);
            let answer = hub.handle(id, ClientMsg::Chat { room: "r".into(), text: "hi".into() }, &mut pp);
            !answer.iter().any(|m| matches!(m, ServerMsg::Error { message } if message.contains("muted")))
        };
        let (ana, _rx, _) = hub.add("c-ana".into(), "k-1".into());
        let (bob, _rx2, _) = hub.add("c-bob".into(), "k-2".into());
        hub.set_muted("c-ana", true).await.unwrap();
        assert!(!chat(ana));
        // Ana comes back as Bob's lane: still muted, and Bob is not.
        let (ana_as_bob, _rx3, _) = hub.add("c-bob".into(), "k-1".into());
        assert!(!chat(ana_as_bob));
        assert!(chat(bob), "a muted client taking another's lane id mutes nobody else");
        assert_eq!(hub.muted(), ["c-ana"]);
        // Unmuting Bob's lane (never muted) frees nobody; unmuting Ana's frees her id.
        hub.set_muted("c-bob", false).await.unwrap();
        assert!(!chat(ana_as_bob));
        hub.set_muted("c-ana", false).await.unwrap();
        assert!(chat(ana_as_bob) && hub.muted().is_empty());
        // Muted as a lane while away: the id that chats as it next is muted under any lane.
        hub.set_muted("c-away", true).await.unwrap();
        let (away, _rx4, _) = hub.add("c-away".into(), "k-3".into());
        assert!(!chat(away));
        let (away_renamed, _rx5, _) = hub.add("c-fresh".into(), "k-3".into());
        assert!(!chat(away_renamed));
        hub.set_muted("c-away", false).await.unwrap();
        for n in 0..MAX_MUTED {
            hub.set_muted(&format!("c-{n}"), true).await.unwrap();
        }
        assert!(matches!(hub.set_muted("c-one-more", true).await, Err(ApiError::Conflict(_))));
        assert_eq!(hub.muted().len(), MAX_MUTED);
        hub.set_muted("c-0", false).await.unwrap();
        hub.set_muted("c-one-more", true).await.expect("room again after an unmute");
    }

    #[test]
    fn room_names_are_short_and_plain() {
        assert!(valid_room("lab"));
        assert!(valid_room("group 2_b"));
        assert!(!valid_room(""));
        assert!(!valid_room("   "));
        assert!(!valid_room("a/b"));
        assert!(!valid_room(&"r".repeat(41)));
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let d = |t: &str| describe(t, &serde_json::from_str::<ClientMsg>(t).unwrap_err());
        assert!(d("{nope").starts_with("not JSON"));
        assert!(d(r#"{"type":"dance","data":{}}"#).starts_with("unknown type \"dance\""));
        assert!(d(r#"{"type":"join","data":{}}"#).starts_with("bad data for \"join\""));
        assert!(d(r#"[1]"#).starts_with("a message is"));
    }

    #[test]
    fn ping_pong_runs_its_rounds_in_order() {
        let hub = Hub::default();
        let (id, _rx, _) = add(&hub, "c-1");
        let mut pp = None;
        assert_eq!(hub.handle(id, ClientMsg::Pingpong { rounds: 2 }, &mut pp), [ServerMsg::Ping { n: 1 }]);
        assert!(matches!(&hub.handle(id, ClientMsg::Pong { n: 2 }, &mut pp)[..], [ServerMsg::Error { .. }]));
        assert_eq!(hub.handle(id, ClientMsg::Pong { n: 1 }, &mut pp), [ServerMsg::Ping { n: 2 }]);
        assert_eq!(
            hub.handle(id, ClientMsg::Pong { n: 2 }, &mut pp),
            [ServerMsg::PingpongDone { rounds: 2 }]
        );
        assert!(matches!(&hub.handle(id, ClientMsg::Pong { n: 3 }, &mut pp)[..], [ServerMsg::Error { .. }]));
    }
}
