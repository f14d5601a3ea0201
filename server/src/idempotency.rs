//! `Idempotency-Key` for POSTs: a client that retries a POST with the same key gets the first
//! answer again instead of a second effect (one student, not two).
//!
//! Keys are per client (the `X-Wirescope-Client` id or address), kept for ten minutes, at most
//! 10,000 at a time. A retry that arrives while the first is still running waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::identity::client_key;

pub const HEADER: &str = protocol::IDEMPOTENCY_HEADER;
pub const REPLAYED: &str = "idempotent-replayed";
const KEEP: Duration = Duration::from_secs(600);
const MAX_KEYS: usize = 10_000;

#[derive(Clone)]
struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

type Slot = Arc<tokio::sync::Mutex<Option<Stored>>>;

/// Keys → (when first seen, the answer), and the keys in the order they came.
type Slots = (HashMap<String, (Instant, Slot)>, VecDeque<String>);

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

fn response(s: &Stored, replayed: bool) -> Response {
    let mut res = Response::new(Body::from(s.body.clone()));
    *res.status_mut() = s.status;
    *res.headers_mut() = s.headers.clone();
    if replayed {
        res.headers_mut().insert(HeaderName::from_static(REPLAYED), HeaderValue::from_static("true"));
    }
    res
}

pub async fn middleware(State(keys): State<Arc<Idempotency>>, req: Request, next: Next) -> Response {
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
    let slot = keys.slot(scoped);
    let mut stored = slot.lock().await;
    if let Some(s) = stored.as_ref() {
        return response(s, true);
    }
    let res = next.run(req).await;
    // Only answers worth repeating are kept: a failure (5xx) may be retried for real.
    if res.status().is_server_error() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let s = Stored { status: parts.status, headers: parts.headers, body };
    let out = response(&s, false);
    *stored = Some(s);
    out
}
