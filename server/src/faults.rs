//! The fault console's machinery: deliberate disturbances applied to matching requests and
//! connections, holding requests until the instructor releases them, and "server down".
//!
//! Never touched: the app's static files, observers (`/ws/observe`), instructor calls and the
//! lab's controls (`/api/lab`). Every fault applied to a request is recorded as a note on the
//! exchange it hit, and a held frame as a note on its client's lane, so every screen draws it.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use protocol::instructor::{Fault, FaultKind, Held, HoldState, NewFault, Target};
use protocol::{EventKind, Note, NoteKind};
use tokio::sync::oneshot;

use crate::clock::server_now;
use crate::error::ApiError;
use crate::identity::client_key;
use crate::log::EventLog;
use crate::paths::{INSTRUCTOR_PREFIX, LAB_PATH, OBSERVE_PATH, is_api_path};
use crate::serve::drop_connection;
use crate::ws::{Control, FrameGate, SocketSpec, Sockets};

struct Waiting {
    held: Held,
    release: oneshot::Sender<()>,
}

struct Hold {
    on: bool,
    timeout_ms: u64,
    waiting: Vec<Waiting>,
}

/// Most messages held at once; more pass through (noted), so a hold never grows without bound.
pub const MAX_HELD: usize = 256;

/// Faults in force, the hold, and whether the server plays dead.
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    next_id: AtomicU64,
    down_until_us: AtomicI64,
    hold: Mutex<Hold>,
    next_held: AtomicU64,
    pub sockets: Arc<Sockets>,
    /// Where held WebSocket frames are noted (HTTP holds are noted by the middleware).
    log: Option<Arc<EventLog>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            down_until_us: AtomicI64::new(0),
            hold: Mutex::new(Hold { on: false, timeout_ms: 30_000, waiting: Vec::new() }),
            next_held: AtomicU64::new(1),
            sockets: Arc::default(),
            log: None,
        }
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
        && !p.starts_with('/')
    {
        problems.insert("target.path".to_owned(), "must start with /".to_owned());
    }
    if problems.is_empty() { Ok(()) } else { Err(ApiError::Validation(problems)) }
}

impl Faults {
    /// Faults that note held WebSocket frames in `log`.
    pub fn with_log(log: Arc<EventLog>) -> Self {
        Self { log: Some(log), ..Self::default() }
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

    /// Adds a fault. Closing and cutting apply at once to the matching open WebSockets
    /// (answers how many); everything else applies to what comes next.
    pub fn add(&self, f: NewFault) -> (Fault, usize) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ctl = match &f.fault {
            FaultKind::Close { code } => {
                Some(Control::Close(*code, "closed by the instructor (fault)".to_owned()))
            }
            FaultKind::Cut => Some(Control::Cut),
            _ => None,
        };
        let hit =
            ctl.map_or(0, |c| self.sockets.control(f.target.client.as_deref(), f.target.path.as_deref(), &c));
        let fault = Fault { id, target: f.target, fault: f.fault, times: f.times, applied: hit as u64 };
        if !matches!(fault.fault, FaultKind::Close { .. } | FaultKind::Cut) {
            self.rules.lock().unwrap_or_else(PoisonError::into_inner).push(fault.clone());
        }
        (fault, hit)
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    pub fn list(&self) -> Vec<Fault> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The faults that apply to this request now (counting down the limited ones).
    pub fn take(&self, path: &str, client: &str) -> Vec<FaultKind> {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for r in rules.iter_mut().filter(|r| matches(&r.target, path, client)) {
            out.push(r.fault.clone());
            r.applied += 1;
            if let Some(t) = &mut r.times {
                *t = t.saturating_sub(1);
            }
        }
        rules.retain(|r| r.times != Some(0));
        out
    }

    /// The server plays dead for `seconds`: open WebSockets are cut, new requests refused.
    pub fn down(&self, seconds: u64) -> usize {
        self.down_until_us.store(crate::clock::now_us() + seconds as i64 * 1_000_000, Ordering::Relaxed);
        self.sockets.control(None, None, &Control::Cut)
    }

    pub fn down_for_s(&self) -> u64 {
        let left = self.down_until_us.load(Ordering::Relaxed) - crate::clock::now_us();
        if left > 0 { (left as u64).div_ceil(1_000_000) } else { 0 }
    }

    pub fn set_hold(&self, on: bool, timeout_ms: Option<u64>) {
        let mut h = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        h.on = on;
        if let Some(t) = timeout_ms {
            h.timeout_ms = t.clamp(100, 600_000);
        }
        if !on {
            for w in h.waiting.drain(..) {
                let _ = w.release.send(());
            }
        }
    }

    /// Releases the `n` oldest held requests (all when `None`); answers how many.
    pub fn release(&self, n: Option<usize>) -> usize {
        let mut h = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        let k = n.unwrap_or(h.waiting.len()).min(h.waiting.len());
        for w in h.waiting.drain(..k) {
            let _ = w.release.send(());
        }
        k
    }

    pub fn hold_state(&self) -> HoldState {
        let h = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        HoldState {
            on: h.on,
            timeout_ms: h.timeout_ms,
            held: h.waiting.iter().map(|w| w.held.clone()).collect(),
        }
    }

    /// Nothing to apply: no fault armed, not down, not holding (the common case, checked
    /// before anything is worked out about a request).
    pub fn idle(&self) -> bool {
        self.down_for_s() == 0
            && !self.hold.lock().unwrap_or_else(PoisonError::into_inner).on
            && self.rules.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Holds a message (`what`, e.g. `GET /x` or `frame on /ws/echo`) while holding is on,
    /// noting it held and then how it was released — the same for requests and frames. At
    /// most [`MAX_HELD`] wait at once; past that a message passes, noted as not held.
    async fn hold_noted(
        &self,
        client: &str,
        method: &str,
        path: &str,
        what: &str,
        note: impl Fn(String, NoteKind),
    ) {
        let (rx, timeout, id) = {
            let mut h = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
            if !h.on {
                return;
            }
            if h.waiting.len() >= MAX_HELD {
                drop(h);
                note(format!("not held ({MAX_HELD} messages wait already): {what}"), NoteKind::Held);
                return;
            }
            let (tx, rx) = oneshot::channel();
            let id = self.next_held.fetch_add(1, Ordering::Relaxed);
            let held = Held {
                id,
                client: client.to_owned(),
                method: method.to_owned(),
                path: path.to_owned(),
                since_us: crate::clock::now_us(),
            };
            h.waiting.push(Waiting { held, release: tx });
            (rx, Duration::from_millis(h.timeout_ms), id)
        };
        note(format!("held: {what}"), NoteKind::Held);
        if tokio::time::timeout(timeout, rx).await.is_ok() {
            note(format!("released: {what}"), NoteKind::Released);
        } else {
            self.hold.lock().unwrap_or_else(PoisonError::into_inner).waiting.retain(|w| w.held.id != id);
            note(format!("released after the hold timeout: {what}"), NoteKind::Released);
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
    if exempt(req.uri().path()) || (!upgrade && faults.idle()) {
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
    let kinds = faults.take(&path, &client);
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

    #[test]
    fn limited_faults_wear_out() {
        let f = Faults::default();
        f.add(NewFault { target: Target::default(), fault: FaultKind::DropRequest, times: Some(2) });
        f.add(NewFault { target: Target::default(), fault: FaultKind::Duplicate, times: None });
        assert_eq!(f.take("/x", "c").len(), 2);
        assert_eq!(f.take("/x", "c").len(), 2);
        assert_eq!(f.take("/x", "c"), [FaultKind::Duplicate]);
        assert_eq!(f.list()[0].applied, 3);
    }

    #[tokio::test]
    async fn the_hold_queue_is_bounded() {
        let f = Arc::new(Faults::default());
        f.set_hold(true, Some(60_000));
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
    }
}
