//! `Idempotency-Key` for POSTs: a client that retries a POST with the same key gets the first
//! answer again instead of a second effect (one student, not two).
//!
//! Keys are per client (the `X-Wirescope-Client` id or address), kept for ten minutes. A retry
//! that arrives while the first is still running waits for it. One server keeps them in memory
//! (at most 10,000); a cluster keeps them in PostgreSQL ([`Keys`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::identity::client_key;

pub const HEADER: &str = protocol::IDEMPOTENCY_HEADER;
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a key is kept.
pub const KEEP: Duration = Duration::from_secs(600);
const MAX_KEYS: usize = 10_000;

/// An answer kept for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A future a key store answers with.
pub type Answer<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a POST with a key may do.
pub enum Claim {
    /// The key was answered before: answer the same.
    Replay(Stored),
    /// The key is this request's: run it, then [`Pending::finish`].
    Run(Box<dyn Pending>),
    /// Another request with the key is still running (elsewhere) and did not finish in time.
    Busy,
}

/// A claimed key, until its request is answered.
pub trait Pending: Send {
    /// Keeps `answer` for the key's retries; `None` (a failure worth retrying for real)
    /// gives the key up, so a retry runs again.
    fn finish(self: Box<Self>, answer: Option<Stored>) -> Answer<'static, ()>;
}

/// Where keys and their answers are kept: in memory ([`Idempotency`], one server) or in a
/// cluster's PostgreSQL, so a retry that the balancer sends to another replica is answered
/// the same. One contract test suite (`server/tests/stores.rs`) runs against both.
pub trait Keys: Send + Sync + 'static {
    /// Claims `key` (already scoped to its client and path), waiting while another request
    /// with it runs; an error when the store cannot be reached.
    fn claim(&self, key: String) -> Answer<'_, Result<Claim, String>>;
}

type Slot = Arc<tokio::sync::Mutex<Option<Stored>>>;

/// Keys → (when first seen, the answer), and the keys in the order they came.
type Slots = (HashMap<String, (Instant, Slot)>, VecDeque<String>);

/// The keys of one server, in memory.
#[derive(Default)]
pub struct Idempotency {
    slots: Mutex<Slots>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency").finish_non_exhaustive()
    }
}

impl Idempotency {
    fn slot(&self, key: String) -> Slot {
        let mut guard = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *guard;
        let now = Instant::now();
        while let Some(oldest) = order.front() {
            let stale = map.get(oldest).is_none_or(|(t, _)| now.duration_since(*t) > KEEP);
            if stale || map.len() > MAX_KEYS {
                let k = order.pop_front().unwrap_or_default();
                map.remove(&k);
            } else {
                break;
            }
        }
        if let Some((_, slot)) = map.get(&key) {
            return slot.clone();
        }
        let slot = Slot::default();
        map.insert(key.clone(), (now, slot.clone()));
        order.push_back(key);
        slot
    }
}

/// A key claimed in memory: its slot, locked until the answer is in.
struct Held(tokio::sync::OwnedMutexGuard<Option<Stored>>);

impl Pending for Held {
    fn finish(self: Box<Self>, answer: Option<Stored>) -> Answer<'static, ()> {
        let mut held = self.0;
        *held = answer;
        Box::pin(std::future::ready(()))
    }
}

impl Keys for Idempotency {
    fn claim(&self, key: String) -> Answer<'_, Result<Claim, String>> {
        let slot = self.slot(key);
        Box::pin(async move {
            let held = slot.lock_owned().await;
            Ok(match held.as_ref() {
                Some(s) => Claim::Replay(s.clone()),
                None => Claim::Run(Box::new(Held(held))),
            })
        })
    }
}

fn response(s: &Stored, replayed: bool) -> Response {
    let mut res = Response::new(Body::from(s.body.clone()));
    *res.status_mut() = s.status;
    *res.headers_mut() = s.headers.clone();
    if replayed {
        res.headers_mut().insert(HeaderName::from_static(REPLAYED), HeaderValue::from_static("true"));
    }
    res
}

pub async fn middleware(State(keys): State<Arc<dyn Keys>>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200);
    let (Some(key), true) = (key, req.method() == Method::POST) else {
        return next.run(req).await;
    };
    let scoped = format!("{}|{}|{key}", client_key(&req), req.uri().path());
    let pending = match keys.claim(scoped).await {
        Ok(Claim::Replay(s)) => return response(&s, true),
        Ok(Claim::Run(pending)) => pending,
        Ok(Claim::Busy) => {
            return ApiError::Conflict(format!(
                "a request with {HEADER} {key} is still being answered; retry later"
            ))
            .into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "idempotency keys out of reach");
            return ApiError::Unavailable(1).into_response();
        }
    };
    let res = next.run(req).await;
    // Only answers worth repeating are kept: a failure (5xx) may be retried for real.
    if res.status().is_server_error() {
        pending.finish(None).await;
        return res;
    }
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let s = Stored { status: parts.status, headers: parts.headers, body };
    let out = response(&s, false);
    pending.finish(Some(s)).await;
    out
}
