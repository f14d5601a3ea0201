//! The fault console's machinery: deliberate disturbances applied to matching requests and
//! connections, holding requests until the instructor releases them, and "server down".
//!
//! Never touched: the app's static files, observers (`/ws/observe`), instructor calls and the
//! lab's controls (`/api/lab`). Every fault applied to a request is recorded as a note on the
//! exchange it hit, and a held frame as a note on its client's lane, so every screen draws it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use protocol::instructor::{Fault, FaultKind, Held, HoldState, NewFault, Target};
use protocol::{EventKind, Note, NoteKind};

use crate::board::{Action, Actor, Board, Boards};
use crate::clock::{now_us, server_now};
use crate::error::ApiError;
use crate::identity::client_key;
use crate::log::EventLog;
use crate::paths::{INSTRUCTOR_PREFIX, LAB_PATH, OBSERVE_PATH, PROBE_HEADER, is_api_path};
use crate::serve::drop_connection;
use crate::ws::{Control, FrameGate, SocketSpec, Sockets};

/// Most messages held at once; more pass through (noted), so a hold never grows without bound.
pub const MAX_HELD: usize = 256;
/// Most faults armed at once; one more is refused (409).
pub const MAX_FAULTS: usize = 100;
/// How long past its timeout a held message's entry stays on the board when the server that
/// held it went away (killed) and so never took it off.
const HELD_GRACE_US: i64 = 5_000_000;

/// Faults in force, the hold, and whether the server plays dead: all on the room's board
/// ([`crate::board`]), so in a cluster every replica applies what the instructor armed on any.
pub struct Faults {
    board: Arc<Boards>,
    /// Requests each unlimited fault disturbed on this server (a limited fault's uses are
    /// counted on the board, where the cluster spends each use once).
    applied_here: Mutex<HashMap<u64, u64>>,
    pub sockets: Arc<Sockets>,
    /// Where held WebSocket frames are noted (HTTP holds are noted by the middleware).
    log: Option<Arc<EventLog>>,
    /// This server's node name (on the actions it announces).
    node: String,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(Arc::default(), None, "server")
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

fn matches(t: &Target, path: &str, client: &str) -> bool {
    t.path.as_deref().is_none_or(|p| path.starts_with(p)) && t.client.as_deref().is_none_or(|c| c == client)
}

/// Checks a new fault; answers the problems by field.
pub fn validate(f: &NewFault) -> Result<(), ApiError> {
    let mut problems = std::collections::BTreeMap::new();
    match &f.fault {
        FaultKind::Latency { fixed_ms, jitter_ms } if fixed_ms + jitter_ms > 60_000 => {
            problems.insert(
                "fault.fixedMs".to_owned(),
                "latency plus jitter must be at most 60000 ms".to_owned(),
            );
        }
        FaultKind::Status { status, retry_after_s } => {
            if ![429, 503].contains(status) {
                problems.insert("fault.status".to_owned(), "must be 429 or 503".to_owned());
            }
            if *retry_after_s > 3600 {
                problems.insert("fault.retryAfterS".to_owned(), "must be at most 3600".to_owned());
            }
        }
        FaultKind::Close { code } if ![1001, 1011, 4000].contains(code) => {
            problems.insert("fault.code".to_owned(), "must be 1001, 1011 or 4000".to_owned());
        }
        _ => {}
    }
    if let Some(p) = &f.target.path
        && (!p.starts_with('/') || p.chars().count() > HELD_TEXT)
    {
        problems.insert(
            "target.path".to_owned(),
            format!("must start with / and be at most {HELD_TEXT} characters"),
        );
    }
    if let Some(c) = &f.target.client
        && c.chars().count() > HELD_TEXT
    {
        problems.insert("target.client".to_owned(), format!("must be at most {HELD_TEXT} characters"));
    }
    if problems.is_empty() { Ok(()) } else { Err(ApiError::Validation(problems)) }
}

impl Faults {
    /// Faults on `board`, noting held WebSocket frames (and actions announced by other
    /// servers) in `log`; `node` names this server on the actions it announces.
    pub fn new(board: Arc<Boards>, log: Option<Arc<EventLog>>, node: &str) -> Self {
        Self { board, applied_here: Mutex::default(), sockets: Arc::default(), log, node: node.to_owned() }
    }

    /// The room's board the faults are kept on.
    pub fn board(&self) -> &Arc<Boards> {
        &self.board
    }

    /// A WebSocket frame from `client` arrived: while holding is on, it waits for the
    /// instructor (or the timeout) before the server reads it.
    pub async fn hold_frame(&self, client: &str, what: &str) {
        // A frame's note belongs to no exchange: it is drawn on the client's lane.
        let note = |text: String, kind: NoteKind| self.note_on(client, 0, kind, text);
        self.hold_noted(client, "FRAME", what, what, note).await;
    }

    /// Notes what a fault did, on the exchange being handled (if it is a recorded one).
    fn note(&self, client: &str, what: NoteKind, text: String) {
        self.note_on(client, crate::cause::current().unwrap_or(0), what, text);
    }

    fn note_on(&self, client: &str, exchange: u64, what: NoteKind, text: String) {
        if let Some(log) = &self.log {
            log.record(client, exchange, None, server_now(), EventKind::Note(Note { what, text }));
        }
    }

    /// Closes (`close`: code and reason) or cuts the open WebSockets that match, here and on
    /// every other server of the cluster; answers how many were here. `what` names it in the
    /// note each other server writes when it had any.
    pub fn close_everywhere(
        &self,
        client: Option<&str>,
        path: Option<&str>,
        close: Option<(u16, &str)>,
        what: &str,
    ) -> usize {
        let action = Action {
            client: client.map(str::to_owned),
            path: path.map(str::to_owned),
            close: close.map(|(code, reason)| (code, reason.to_owned())),
            what: what.to_owned(),
            from: self.node.clone(),
            instance: crate::board::instance(),
        };
        self.board.announce(&action);
        self.sockets.control(client, path, &control_of(&action))
    }

    /// Adds a fault. Closing and cutting apply at once to the matching open WebSockets, on
    /// every server (the answer counts this one's); everything else applies to what comes next.
    pub async fn add(&self, f: NewFault) -> Result<(Fault, usize), ApiError> {
        let once = matches!(f.fault, FaultKind::Close { .. } | FaultKind::Cut);
        let fault = self
            .board
            .update(|b| {
                let fault = Fault {
                    id: b.next_fault,
                    target: f.target.clone(),
                    fault: f.fault.clone(),
                    times: f.times,
                    applied: 0,
                };
                if !once {
                    if b.faults.len() >= MAX_FAULTS {
                        return None;
                    }
                    b.faults.push(fault.clone());
                }
                b.next_fault += 1;
                Some(fault)
            })
            .await?
            .ok_or_else(|| {
                ApiError::Conflict(format!("{MAX_FAULTS} faults are armed already; remove one first"))
            })?;
        let close = match &fault.fault {
            FaultKind::Close { code } => Some(Some((*code, "closed by the instructor (fault)"))),
            FaultKind::Cut => Some(None),
            _ => None,
        };
        let hit = close.map_or(0, |close| {
            let what = if close.is_some() { "fault: close" } else { "fault: cut" };
            self.close_everywhere(f.target.client.as_deref(), f.target.path.as_deref(), close, what)
        });
        Ok((Fault { applied: hit as u64, ..fault }, hit))
    }

    pub async fn remove(&self, id: u64) -> Result<bool, ApiError> {
        Ok(self
            .board
            .update(|b| {
                let before = b.faults.len();
                b.faults.retain(|r| r.id != id);
                b.faults.len() != before
            })
            .await?)
    }

    pub async fn clear(&self) -> Result<(), ApiError> {
        Ok(self.board.update(|b| b.faults.clear()).await?)
    }

    /// The faults in force, each with how often it was applied (a limited fault: in the whole
    /// cluster; an unlimited one: on this server).
    pub fn list(&self) -> Vec<Fault> {
        let here = self.applied_here.lock().unwrap_or_else(PoisonError::into_inner);
        let mut faults = self.board.now().faults.clone();
        for f in &mut faults {
            f.applied += here.get(&f.id).copied().unwrap_or(0);
        }
        faults
    }

    /// The faults that apply to this request now. A limited fault's use is taken on the board
    /// (so a cluster spends each use once, whichever replica answers); an unlimited one is
    /// counted here.
    pub async fn take(&self, path: &str, client: &str) -> Vec<FaultKind> {
        let board = self.board.now();
        let hits: Vec<&Fault> = board.faults.iter().filter(|r| matches(&r.target, path, client)).collect();
        if hits.is_empty() {
            return Vec::new();
        }
        // (id, limited, what) of every fault that applies, in the order they were armed.
        let taken: Vec<(u64, bool, FaultKind)> = if hits.iter().all(|f| f.times.is_none()) {
            hits.iter().map(|f| (f.id, false, f.fault.clone())).collect()
        } else {
            let claimed = self.board.update(|b| spend(b, path, client)).await;
            claimed.unwrap_or_else(|e| {
                // Said on the diagram, not only in the server's log.
                self.note(client, NoteKind::Fault, format!("limited faults not applied: {e}"));
                hits.iter().filter(|f| f.times.is_none()).map(|f| (f.id, false, f.fault.clone())).collect()
            })
        };
        let mut here = self.applied_here.lock().unwrap_or_else(PoisonError::into_inner);
        if here.len() > MAX_FAULTS {
            here.retain(|id, _| board.faults.iter().any(|f| f.id == *id));
        }
        for (id, _, _) in taken.iter().filter(|(_, limited, _)| !limited) {
            *here.entry(*id).or_default() += 1;
        }
        taken.into_iter().map(|(_, _, kind)| kind).collect()
    }

    /// The server plays dead for `seconds` (every server of a cluster): open WebSockets are
    /// cut, new requests refused. Answers how many were cut here.
    pub async fn down(&self, seconds: u64) -> Result<usize, ApiError> {
        let until = now_us() + seconds as i64 * 1_000_000;
        self.board.update(|b| b.down_until_us = until).await?;
        Ok(self.close_everywhere(None, None, None, "server down"))
    }

    pub fn down_for_s(&self) -> u64 {
        let left = self.board.now().down_until_us - now_us();
        if left > 0 { (left as u64).div_ceil(1_000_000) } else { 0 }
    }

    pub async fn set_hold(&self, on: bool, timeout_ms: Option<u64>) -> Result<(), ApiError> {
        self.board
            .update(|b| {
                b.hold_on = on;
                if let Some(t) = timeout_ms {
                    b.hold_timeout_ms = t.clamp(100, 600_000);
                }
                if !on {
                    b.held.clear();
                }
            })
            .await?;
        Ok(())
    }

    /// Releases the `n` oldest held messages (all when `None`), wherever they are held;
    /// answers how many.
    pub async fn release(&self, n: Option<usize>) -> Result<usize, ApiError> {
        Ok(self
            .board
            .update(|b| {
                let k = n.unwrap_or(b.held.len()).min(b.held.len());
                b.held.drain(..k);
                k
            })
            .await?)
    }

    pub fn hold_state(&self) -> HoldState {
        let b = self.board.now();
        HoldState { on: b.hold_on, timeout_ms: b.hold_timeout_ms, held: b.held.clone() }
    }

    /// Nothing to apply: no fault armed, not down, not holding (the common case, checked
    /// before anything is worked out about a request).
    pub fn idle(&self) -> bool {
        self.board.read(|b| b.idle(now_us()))
    }

    /// Holds a message (`what`, e.g. `GET /x` or `frame on /ws/echo`) while holding is on,
    /// noting it held and then how it was released — the same for requests and frames. It
    /// waits on the board (where "release" takes it off, on any server) for at most the hold's
    /// timeout. At most [`MAX_HELD`] wait at once; past that a message passes, noted as not held.
    async fn hold_noted(
        &self,
        client: &str,
        method: &str,
        path: &str,
        what: &str,
        note: impl Fn(String, NoteKind),
    ) {
        if !self.board.read(|b| b.hold_on) {
            return;
        }
        let since_us = now_us();
        let entry = self
            .board
            .update(|b| {
                if !b.hold_on {
                    return None;
                }
                // Entries whose server went away without taking them off.
                let stale = since_us - b.hold_timeout_ms as i64 * 1000 - HELD_GRACE_US;
                b.held.retain(|h| h.since_us > stale);
                if b.held.len() >= MAX_HELD {
                    return Some(None);
                }
                let id = b.next_held;
                b.next_held += 1;
                // Cut to a size the board can hold 256 of (a path is the sender's to choose).
                let held = Held {
                    id,
                    client: cut(client, HELD_TEXT),
                    method: cut(method, HELD_TEXT),
                    path: cut(path, HELD_TEXT),
                    since_us,
                };
                b.held.push(held);
                Some(Some((id, b.hold_timeout_ms)))
            })
            .await;
        let (id, timeout_ms) = match entry {
            Ok(None) => return,
            Ok(Some(Some(held))) => held,
            Ok(Some(None)) => {
                note(format!("not held ({MAX_HELD} messages wait already): {what}"), NoteKind::Held);
                return;
            }
            Err(e) => {
                note(format!("not held ({e}): {what}"), NoteKind::Held);
                return;
            }
        };
        note(format!("held: {what}"), NoteKind::Held);
        // A message whose request or socket goes away while held leaves the list at once.
        let mut unhold = Unhold { board: self.board.clone(), id: Some(id) };
        let mut board = self.board.watch();
        let gone = |v: &crate::board::Versioned| !v.board.held.iter().any(|h| h.id == id);
        let wait = tokio::time::timeout(Duration::from_millis(timeout_ms), board.wait_for(gone));
        // (Not kept: what it answers holds the board's lock.)
        let released = matches!(wait.await, Ok(Ok(_)));
        unhold.id = None;
        if released {
            note(format!("released: {what}"), NoteKind::Released);
        } else {
            if let Err(e) = self.board.update(|b| b.held.retain(|h| h.id != id)).await {
                tracing::warn!(error = %e, "faults: a held message's entry stays until it is stale");
            }
            note(format!("released after the hold timeout: {what}"), NoteKind::Released);
        }
    }
}

/// Longest client, method or path kept for a held message on the board.
const HELD_TEXT: usize = 200;

/// At most `max` characters of `text`.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Takes a held message off the board when what waits for it goes away (dropped) first.
struct Unhold {
    board: Arc<Boards>,
    id: Option<u64>,
}

impl Drop for Unhold {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.board.update_soon(move |b| b.held.retain(|h| h.id != id));
        }
    }
}

/// Takes one use of each limited fault that applies to `path` from `client` (a fault used up
/// goes); answers every fault that applies: (id, limited, what), in the order armed.
fn spend(b: &mut Board, path: &str, client: &str) -> Vec<(u64, bool, FaultKind)> {
    let mut out = Vec::new();
    for r in b.faults.iter_mut().filter(|r| matches(&r.target, path, client)) {
        out.push((r.id, r.times.is_some(), r.fault.clone()));
        if let Some(t) = &mut r.times {
            r.applied += 1;
            *t = t.saturating_sub(1);
        }
    }
    b.faults.retain(|r| r.times != Some(0));
    out
}

fn control_of(action: &Action) -> Control {
    match &action.close {
        Some((code, reason)) => Control::Close(*code, reason.clone()),
        None => Control::Cut,
    }
}

/// Carries out what another server of the cluster announced, on this one's sockets, and
/// notes it when it closed any.
impl Actor for Faults {
    fn act(&self, action: &Action) {
        let n = self.sockets.control(action.client.as_deref(), action.path.as_deref(), &control_of(action));
        if n > 0 {
            let lane = action.client.as_deref().unwrap_or(protocol::SERVER_LANE);
            let text = format!("{} (from {}): {n} connection(s) here", action.what, action.from);
            self.note_on(lane, 0, NoteKind::Fault, text);
        }
    }
}

/// Paths no fault, hold or "down" ever touches: the app's files, the observers' stream and
/// what only the instructor does (`/api/instructor/…`, and starting or stopping the lab at
/// `/api/lab`; the lab's feeds stay open to faults).
pub fn exempt(path: &str) -> bool {
    !is_api_path(path) || path == OBSERVE_PATH || path.starts_with(INSTRUCTOR_PREFIX) || path == LAB_PATH
}

impl FrameGate for Faults {
    fn pass<'a>(
        &'a self,
        client: &'a str,
        what: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.hold_frame(client, what))
    }
}

/// The middleware: applies "down", the hold and the matching faults to a request.
pub async fn middleware(State(faults): State<Arc<Faults>>, mut req: Request, next: Next) -> Response {
    // Every WebSocket is registered (a fault armed later still reaches it); a plain request
    // with nothing armed goes straight on.
    let upgrade = req.headers().contains_key(axum::http::header::UPGRADE);
    // A balancer's health check is never disturbed: held or refused, it would take every
    // replica out of the balancer at once.
    let probe = req.uri().path() == crate::paths::HEALTH_PATH && req.headers().contains_key(PROBE_HEADER);
    if exempt(req.uri().path()) || probe || (!upgrade && faults.idle()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let client = client_key(&req);
    let method = req.method().to_string();
    if faults.down_for_s() > 0 {
        faults.note(&client, NoteKind::Down, format!("server down: {method} {path} refused"));
        return drop_connection("the server is down (fault)");
    }
    let what = format!("{method} {path}");
    faults.hold_noted(&client, &method, &path, &what, |text, kind| faults.note(&client, kind, text)).await;
    let kinds = faults.take(&path, &client).await;
    let mut duplicate = false;
    let mut drop_response = false;
    let mut reorder = false;
    for k in &kinds {
        match k {
            FaultKind::Latency { fixed_ms, jitter_ms } => {
                let jitter = if *jitter_ms > 0 { rand_below(*jitter_ms + 1) } else { 0 };
                let ms = fixed_ms + jitter;
                faults.note(&client, NoteKind::Fault, format!("latency +{ms} ms"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            FaultKind::Status { status, retry_after_s } => {
                faults.note(
                    &client,
                    NoteKind::Fault,
                    format!("answered {status} (Retry-After {retry_after_s} s)"),
                );
                return if *status == 429 {
                    ApiError::TooManyRequests(*retry_after_s).into_response()
                } else {
                    ApiError::Unavailable(*retry_after_s).into_response()
                };
            }
            FaultKind::DropRequest => {
                faults.note(
                    &client,
                    NoteKind::Fault,
                    "request dropped: the connection closes, no answer".to_owned(),
                );
                return drop_connection("request dropped (fault)");
            }
            FaultKind::DropResponse => drop_response = true,
            FaultKind::Duplicate => duplicate = !upgrade,
            FaultKind::ReorderFrames => reorder = upgrade,
            FaultKind::Close { .. } | FaultKind::Cut => {}
        }
    }
    if upgrade {
        if reorder {
            faults.note(
                &client,
                NoteKind::Fault,
                "frames on this connection leave in swapped pairs".to_owned(),
            );
        }
        let gate: Arc<dyn FrameGate> = faults.clone();
        req.extensions_mut().insert(SocketSpec {
            sockets: faults.sockets.clone(),
            gate,
            client: client.clone(),
            path: path.clone(),
            reorder,
        });
    }
    let res = if duplicate {
        let (parts, body) = req.into_parts();
        // Kept whole to be sent twice: at most the largest body any handler takes.
        let bytes = match http_body_util::Limited::new(body, crate::limits::BODY_LIMIT).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                let why = format!("the body is larger than {} bytes (1 MiB)", crate::limits::BODY_LIMIT);
                return ApiError::PayloadTooLarge(why).into_response();
            }
            Err(e) => return ApiError::BadRequest(format!("could not read the body: {e}")).into_response(),
        };
        faults.note(&client, NoteKind::Fault, "request delivered twice".to_owned());
        let first = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
        let _ = next.clone().run(first).await;
        next.run(Request::from_parts(parts, Body::from(bytes))).await
    } else {
        next.run(req).await
    };
    if drop_response {
        faults.note(
            &client,
            NoteKind::Fault,
            format!("response dropped after the handler answered {}", res.status().as_u16()),
        );
        return drop_connection("response dropped (fault)");
    }
    res
}

/// A random number below `n` (for jitter).
fn rand_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_by_path_prefix_and_client() {
        let t = Target { path: Some("/transcripts".into()), client: None };
        assert!(matches(&t, "/transcripts/1", "c-a"));
        assert!(!matches(&t, "/studentids", "c-a"));
        let t = Target { path: None, client: Some("c-a".into()) };
        assert!(matches(&t, "/anything", "c-a") && !matches(&t, "/anything", "c-b"));
        assert!(matches(&Target::default(), "/x", "y"));
    }

    #[tokio::test]
    async fn limited_faults_wear_out() {
        let f = Faults::default();
        f.add(NewFault { target: Target::default(), fault: FaultKind::DropRequest, times: Some(2) })
            .await
            .unwrap();
        f.add(NewFault { target: Target::default(), fault: FaultKind::Duplicate, times: None })
            .await
            .unwrap();
        assert_eq!(f.take("/x", "c").await.len(), 2);
        assert_eq!(f.take("/x", "c").await.len(), 2);
        assert_eq!(f.take("/x", "c").await, [FaultKind::Duplicate]);
        assert_eq!(f.list()[0].applied, 3);
    }

    #[tokio::test]
    async fn a_held_message_whose_request_goes_away_leaves_the_list_and_long_paths_are_cut() {
        let f = Arc::new(Faults::default());
        f.set_hold(true, Some(60_000)).await.unwrap();
        let long = format!("frame on /{}", "x".repeat(5000));
        let waiting = tokio::spawn({
            let f = f.clone();
            async move { f.hold_frame("c-ana", &long).await }
        });
        let mut board = f.board().watch();
        board.wait_for(|v| v.board.held.len() == 1).await.unwrap();
        assert_eq!(f.hold_state().held[0].path.chars().count(), HELD_TEXT);
        waiting.abort();
        board.wait_for(|v| v.board.held.is_empty()).await.unwrap();
        f.set_hold(false, None).await.unwrap();
    }

    #[tokio::test]
    async fn faults_are_capped() {
        let f = Faults::default();
        let nf = || NewFault { target: Target::default(), fault: FaultKind::Duplicate, times: None };
        for _ in 0..MAX_FAULTS {
            f.add(nf()).await.unwrap();
        }
        assert!(matches!(f.add(nf()).await, Err(ApiError::Conflict(_))));
        // Closing and cutting are not kept: they still go through.
        let cut = NewFault { target: Target::default(), fault: FaultKind::Cut, times: None };
        assert_eq!(f.add(cut).await.unwrap().1, 0);
        assert_eq!(f.list().len(), MAX_FAULTS);
    }

    #[tokio::test]
    async fn release_takes_the_oldest_off_the_board_and_its_waiter_goes_on() {
        let f = Arc::new(Faults::default());
        f.set_hold(true, Some(60_000)).await.unwrap();
        let first = tokio::spawn({
            let f = f.clone();
            async move { f.hold_frame("c-ana", "first").await }
        });
        let mut board = f.board().watch();
        board.wait_for(|v| v.board.held.len() == 1).await.unwrap();
        let second = tokio::spawn({
            let f = f.clone();
            async move { f.hold_frame("c-ben", "second").await }
        });
        board.wait_for(|v| v.board.held.len() == 2).await.unwrap();
        assert_eq!(f.release(Some(1)).await.unwrap(), 1);
        first.await.unwrap();
        assert_eq!(f.hold_state().held.iter().map(|h| h.client.as_str()).collect::<Vec<_>>(), ["c-ben"]);
        f.set_hold(false, None).await.unwrap();
        second.await.unwrap();
        assert!(f.hold_state().held.is_empty());
    }

    #[tokio::test]
    async fn the_hold_queue_is_bounded() {
        let f = Arc::new(Faults::default());
        f.set_hold(true, Some(60_000)).await.unwrap();
        let waiting: Vec<_> = (0..MAX_HELD)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.hold_frame("c-ana", "frame on /ws/echo").await })
            })
            .collect();
        while f.hold_state().held.len() < MAX_HELD {
            tokio::task::yield_now().await;
        }
        // One more passes at once instead of waiting behind the full queue.
        tokio::time::timeout(Duration::from_secs(5), f.hold_frame("c-ben", "one more"))
            .await
            .expect("a message past the bound is not held");
        assert_eq!(f.hold_state().held.len(), MAX_HELD);
        waiting.iter().for_each(tokio::task::JoinHandle::abort);
    }

    #[test]
    fn only_api_traffic_can_be_disturbed() {
        assert!(exempt("/"));
        assert!(exempt("/app.js"));
        assert!(exempt("/ws/observe"));
        assert!(exempt("/api/instructor/faults"));
        assert!(exempt("/api/lab"), "the instructor starts and stops the lab whatever is armed");
        assert!(!exempt("/api/lab/changes"));
        assert!(!exempt("/transcripts/1"));
        assert!(!exempt("/ws/events"));
    }

    #[test]
    fn faults_are_validated() {
        let nf = |fault| NewFault { target: Target::default(), fault, times: None };
        assert!(validate(&nf(FaultKind::Status { status: 500, retry_after_s: 1 })).is_err());
        assert!(validate(&nf(FaultKind::Close { code: 1000 })).is_err());
        assert!(validate(&nf(FaultKind::Latency { fixed_ms: 59_000, jitter_ms: 5_000 })).is_err());
        assert!(validate(&nf(FaultKind::Status { status: 503, retry_after_s: 2 })).is_ok());
        let long = NewFault {
            target: Target { path: Some(format!("/{}", "x".repeat(HELD_TEXT))), client: None },
            fault: FaultKind::Cut,
            times: None,
        };
        assert!(validate(&long).is_err(), "a path the board would have to carry is short");
    }
}
