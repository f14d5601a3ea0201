//! The wire tap, in one place: a tower layer that records every HTTP exchange and WebSocket
//! handshake under the API paths, and (through [`tap::TapIo`], installed by [`crate::ws`]) every
//! WebSocket frame. Nothing else in the server knows capture exists.
//!
//! Recorded for each HTTP exchange: the client (its `X-Wirescope-Client` id, or its remote
//! address), a correlation id, method, path, query, headers and body previews (secrets
//! redacted) of request and response, and the server's receive and respond times. Static files
//! of the app are not recorded, nor the observer stream's own frames (no feedback loop).

pub mod frames;
pub mod tap;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use protocol::{ClientInfo, EventKind, Header, HttpRequest, HttpResponse, Stamps, WsAccept, WsUpgrade};
use tower::{Layer, Service};

use crate::log::EventLog;
pub use tap::{Tap, TapIo};

/// Lane of events that belong to no client (presence, the server's own notes).
pub const SERVER_LANE: &str = "server";
/// Header carrying a browser's client id.
pub const CLIENT_HEADER: &str = "x-wirescope-client";
/// Header carrying the client's own correlation id for an exchange.
pub const EXCHANGE_HEADER: &str = "x-wirescope-exchange";
/// The observer stream: never captured itself.
pub const OBSERVE_PATH: &str = "/ws/observe";

/// Headers whose values are never stored or shown.
const SECRET_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];
const REDACTED: &str = "[redacted]";
/// Request bodies up to this size are read before the handler runs, so the request event
/// carries its preview; a larger one is recorded with what was read by then.
const BUFFER_LIMIT: usize = (1 << 20) + 1;

/// A client id as the app makes them: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_client_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Values that must never appear in captured data (e.g. the instructor token).
#[derive(Debug, Default)]
pub struct Secrets(RwLock<Vec<String>>);

impl Secrets {
    pub fn add(&self, secret: impl Into<String>) {
        let s = secret.into();
        if !s.is_empty() {
            self.0.write().unwrap_or_else(PoisonError::into_inner).push(s);
        }
    }

    /// The longest secret, in bytes: a preview is scrubbed over this many bytes beyond its
    /// cut, so a secret that straddles the cut is still caught whole.
    pub fn margin(&self) -> usize {
        longest(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The preview of a message of `size` bytes whose first bytes are `head`: every secret
    /// replaced (in text and binary alike) before the preview is cut to `limit` bytes.
    pub fn preview(&self, head: &[u8], size: u64, limit: usize) -> protocol::Body {
        let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let window = &head[..head.len().min(limit.saturating_add(longest(&secrets)))];
        let mut body = if secrets.iter().any(|s| contains(window, s.as_bytes())) {
            let mut scrubbed = window.to_vec();
            for s in secrets.iter() {
                scrubbed = replace_bytes(&scrubbed, s.as_bytes(), REDACTED.as_bytes());
            }
            protocol::Body::capture(&scrubbed, limit)
        } else {
            protocol::Body::capture(window, limit)
        };
        body.truncated = body.truncated || (head.len().min(limit) as u64) < size;
        body.size = size;
        body
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = text.to_owned();
        for s in secrets.iter().filter(|s| text.contains(s.as_str())) {
            out = out.replace(s.as_str(), REDACTED);
        }
        out
    }
}

fn longest(secrets: &[String]) -> usize {
    secrets.iter().map(String::len).max().unwrap_or(0)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if !needle.is_empty() && hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The clients seen so far and what they call themselves.
#[derive(Debug, Default)]
pub struct Clients {
    known: RwLock<HashMap<String, ClientInfo>>,
    /// Name changes a client asked for itself: recent times, and whether the instructor set
    /// its name (then the client cannot change it).
    renames: Mutex<HashMap<String, (VecDeque<Instant>, bool)>>,
}

/// Why a client's own nickname change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenameRefused {
    TooMany,
    SetByInstructor,
}

impl std::fmt::Display for RenameRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RenameRefused::TooMany => "too many name changes; wait a minute",
            RenameRefused::SetByInstructor => "the instructor set this name",
        })
    }
}

/// Beyond this many clients, new ones are still captured but no longer described.
const MAX_CLIENTS: usize = 50_000;
/// Most clients sent to a screen that joins ([`Clients::roster`]); later ones are named by
/// their `client` events as they act.
pub const ROSTER_LIMIT: usize = 5_000;
/// The window of [`crate::events::NAME_LIMIT`].
const NAME_WINDOW: Duration = Duration::from_secs(60);

impl Clients {
    /// Notes a client; records a `client` event the first time it is seen.
    pub fn seen(&self, log: &EventLog, key: &str, addr: Option<&str>, user_agent: Option<&str>) {
        if self.known.read().unwrap_or_else(PoisonError::into_inner).contains_key(key) {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if known.contains_key(key) || known.len() >= MAX_CLIENTS {
            return;
        }
        let info = ClientInfo {
            nickname: None,
            addr: addr.map(str::to_owned),
            user_agent: user_agent.map(str::to_owned),
        };
        known.insert(key.to_owned(), info.clone());
        drop(known);
        log.record(key, 0, None, now(), EventKind::Client(info));
    }

    /// A nickname the client asked for itself: at most [`crate::events::NAME_LIMIT`] changes a
    /// minute, and never over a name the instructor set.
    pub fn rename_by_client(&self, log: &EventLog, key: &str, nickname: &str) -> Result<(), RenameRefused> {
        let nickname = normalize(nickname);
        if self.nickname(key).unwrap_or_default() == nickname {
            return Ok(());
        }
        // Held until the name is set, so an instructor's name cannot slip in between.
        let mut renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        {
            if renames.len() >= MAX_CLIENTS && !renames.contains_key(key) {
                return Err(RenameRefused::TooMany);
            }
            let (times, pinned) = renames.entry(key.to_owned()).or_default();
            if *pinned {
                return Err(RenameRefused::SetByInstructor);
            }
            let now = Instant::now();
            while times.front().is_some_and(|t| now.duration_since(*t) > NAME_WINDOW) {
                times.pop_front();
            }
            if times.len() >= crate::events::NAME_LIMIT {
                return Err(RenameRefused::TooMany);
            }
            times.push_back(now);
        }
        self.rename(log, key, nickname);
        drop(renames);
        Ok(())
    }

    /// The instructor names a client: the name stays until the instructor changes it.
    pub fn rename_by_instructor(&self, log: &EventLog, key: &str, nickname: &str) {
        let nickname = normalize(nickname);
        let mut renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        renames.entry(key.to_owned()).or_default().1 = !nickname.is_empty();
        self.rename(log, key, nickname);
    }

    /// Names a client that has no name yet, without fixing it: the client (the instructor's
    /// own tab, a simulated student) may rename itself later.
    pub fn name_if_unnamed(&self, log: &EventLog, key: &str, nickname: &str) {
        let renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        if self.nickname(key).is_none() {
            self.rename(log, key, normalize(nickname));
        }
        drop(renames);
    }

    /// Sets a client's nickname (already normalized); records a `client` event when it changed.
    /// Callers hold the `renames` lock.
    fn rename(&self, log: &EventLog, key: &str, nickname: String) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        let info = known.entry(key.to_owned()).or_default();
        let new = (!nickname.is_empty()).then_some(nickname);
        if info.nickname == new {
            return;
        }
        info.nickname = new;
        let info = info.clone();
        drop(known);
        log.record(key, 0, None, now(), EventKind::Client(info));
    }

    /// Whether the client was seen before.
    pub fn knows(&self, key: &str) -> bool {
        self.known.read().unwrap_or_else(PoisonError::into_inner).contains_key(key)
    }

    /// Every known client and what it is called now (for a screen that joins late), at most
    /// [`ROSTER_LIMIT`]: named clients first, then the rest, each group by key.
    pub fn roster(&self) -> Vec<protocol::ClientEntry> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<protocol::ClientEntry> = known
            .iter()
            .map(|(k, info)| protocol::ClientEntry { client: k.clone(), info: info.clone() })
            .collect();
        drop(known);
        all.sort_by(|a, b| {
            (a.info.nickname.is_none(), &a.client).cmp(&(b.info.nickname.is_none(), &b.client))
        });
        all.truncate(ROSTER_LIMIT);
        all
    }

    pub fn nickname(&self, key: &str) -> Option<String> {
        self.known.read().unwrap_or_else(PoisonError::into_inner).get(key).and_then(|i| i.nickname.clone())
    }
}

fn now() -> Stamps {
    Stamps { client_us: None, server_us: Some(crate::now_us()) }
}

/// A nickname as stored: trimmed, at most 40 characters.
fn normalize(nickname: &str) -> String {
    nickname.trim().chars().take(40).collect()
}

/// The lane key of a request's client: its `X-Wirescope-Client` id (or `client=` on a
/// WebSocket URL), else `addr:IP`.
pub fn client_key<B>(req: &Request<B>) -> String {
    match client_id(req) {
        Some(id) => id.to_owned(),
        None => addr_key(remote_ip(req).as_deref()),
    }
}

/// The client id a request names, if it names a valid one.
fn client_id<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_param(req.uri().query(), "client"))
        .filter(|id| valid_client_id(id))
}

fn remote_ip<B>(req: &Request<B>) -> Option<String> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

fn addr_key(ip: Option<&str>) -> String {
    format!("addr:{}", ip.unwrap_or("unknown"))
}

/// What the capture layer needs.
#[derive(Clone)]
pub struct Capture {
    pub log: Arc<EventLog>,
    pub clients: Arc<Clients>,
    pub secrets: Arc<Secrets>,
    /// Largest body preview kept per message.
    pub preview: usize,
    /// Off: requests pass untouched (for measuring what capture costs).
    pub enabled: bool,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("preview", &self.preview).field("enabled", &self.enabled).finish()
    }
}

impl<S> Layer<S> for Capture {
    type Service = CaptureService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CaptureService { capture: self.clone(), inner }
    }
}

/// The service the [`Capture`] layer wraps around the router.
#[derive(Clone)]
pub struct CaptureService<S> {
    capture: Capture,
    inner: S,
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

impl Capture {
    fn headers(&self, headers: &HeaderMap) -> Vec<Header> {
        headers
            .iter()
            .map(|(name, value)| {
                let value = if SECRET_HEADERS.contains(&name.as_str()) {
                    REDACTED.to_owned()
                } else {
                    self.secrets.scrub(&String::from_utf8_lossy(value.as_bytes()))
                };
                Header::new(name.as_str(), value)
            })
            .collect()
    }

    fn body(&self, bytes: &[u8], size: u64) -> protocol::Body {
        self.secrets.preview(bytes, size, self.preview)
    }
}

/// Reads a request body up to [`BUFFER_LIMIT`]: answers what was read, the body to hand on
/// (the same bytes, then whatever was not read), and the full size if known.
async fn buffer(body: Body, declared: Option<u64>) -> (Bytes, Body, u64) {
    let mut body = body;
    let mut head = BytesMut::new();
    loop {
        if head.len() >= BUFFER_LIMIT {
            let seen = head.len() as u64;
            let head = head.freeze();
            let rest = body.into_data_stream();
            let first =
                futures_util::stream::once(futures_util::future::ready(Ok::<_, axum::Error>(head.clone())));
            let chained = futures_util::StreamExt::chain(first, rest);
            return (head, Body::from_stream(chained), declared.unwrap_or(seen).max(seen));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            // A body that breaks mid-way: hand on what arrived; the handler sees it cut short.
            Some(Err(_)) | None => {
                let head = head.freeze();
                let size = head.len() as u64;
                return (head.clone(), Body::from(head), size);
            }
        }
    }
}

impl<S> Service<Request<Body>> for CaptureService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let captured = self.capture.enabled && crate::assets::is_api_path(path) && path != OBSERVE_PATH;
        // Take the service that was polled ready; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !captured {
            return Box::pin(inner.call(req));
        }
        let cap = self.capture.clone();
        Box::pin(async move {
            let received = crate::now_us();
            let log = cap.log.clone();
            let exchange = log.next_exchange();
            let headers = req.headers();
            let query = req.uri().query().map(str::to_owned);
            // The remote address is formatted once, and only when it is needed: for the lane
            // of a client without an id, or to describe a client seen for the first time.
            let id = client_id(&req);
            let known = id.is_some_and(|id| cap.clients.knows(id));
            let addr = if known { None } else { remote_ip(&req) };
            let client: Arc<str> = match id {
                Some(id) => id.into(),
                None => addr_key(addr.as_deref()).into(),
            };
            let client_ref = headers
                .get(EXCHANGE_HEADER)
                .and_then(|v| v.to_str().ok())
                .or_else(|| query_param(query.as_deref(), "ref"))
                .and_then(|v| v.parse().ok());
            if !known {
                let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
                cap.clients.seen(&log, &client, addr.as_deref(), user_agent);
            }
            let at = Stamps { client_us: None, server_us: Some(received) };
            let path = cap.secrets.scrub(req.uri().path());
            let query = query.map(|q| cap.secrets.scrub(&q));
            let upgrade =
                headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));

            if upgrade {
                let headers = cap.headers(req.headers());
                log.record(
                    &client,
                    exchange,
                    client_ref,
                    at,
                    EventKind::WsUpgrade(WsUpgrade { path, query, headers }),
                );
                let tap = Tap {
                    log: log.clone(),
                    client: client.clone(),
                    exchange,
                    client_ref,
                    preview: cap.preview,
                    secrets: cap.secrets.clone(),
                };
                req.extensions_mut().insert(tap);
                let res = crate::cause::scope(exchange, inner.call(req)).await?;
                if let Some(crate::faults::DropConnection(why)) =
                    res.extensions().get::<crate::faults::DropConnection>()
                {
                    let failure = protocol::Failure {
                        from: protocol::Side::Server,
                        message: format!("no answer: {why}"),
                    };
                    log.record(&client, exchange, client_ref, now(), EventKind::Failure(failure));
                    return Ok(res);
                }
                let accept = WsAccept { status: res.status().as_u16(), headers: cap.headers(res.headers()) };
                log.record(&client, exchange, client_ref, now(), EventKind::WsAccept(accept));
                return Ok(res);
            }

            let declared =
                headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let req_headers = cap.headers(req.headers());
            let (parts, body) = req.into_parts();
            let (head, body, size) = buffer(body, declared).await;
            let body_preview = (size > 0).then(|| cap.body(&head, size));
            let request = HttpRequest {
                method: parts.method.to_string(),
                path,
                query,
                headers: req_headers,
                body: body_preview,
            };
            log.record(&client, exchange, client_ref, at, EventKind::HttpRequest(request));

            let res = crate::cause::scope(exchange, inner.call(Request::from_parts(parts, body))).await?;
            if let Some(crate::faults::DropConnection(why)) =
                res.extensions().get::<crate::faults::DropConnection>()
            {
                let message = format!("no answer: {why}");
                let failure = protocol::Failure { from: protocol::Side::Server, message };
                log.record(&client, exchange, client_ref, now(), EventKind::Failure(failure));
                return Ok(res);
            }
            let status = res.status();
            let headers = cap.headers(res.headers());
            let exact = axum::body::HttpBody::size_hint(res.body()).exact();
            let streaming = exact.is_none() || exact.is_some_and(|n| n > BUFFER_LIMIT as u64);
            let (res, body) = if streaming || status == StatusCode::SWITCHING_PROTOCOLS {
                (res, None)
            } else {
                let (parts, body) = res.into_parts();
                let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                let preview = (!bytes.is_empty()).then(|| cap.body(&bytes, bytes.len() as u64));
                (Response::from_parts(parts, Body::from(bytes)), preview)
            };
            let response = HttpResponse { status: status.as_u16(), streaming, headers, body };
            log.record(&client, exchange, client_ref, now(), EventKind::HttpResponse(response));
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_and_plain() {
        assert!(valid_client_id("c-9f3a_x"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"x".repeat(65)));
    }

    #[test]
    fn secrets_are_scrubbed_wherever_they_appear() {
        let s = Secrets::default();
        s.add("tok123");
        assert_eq!(s.scrub("Bearer tok123 and tok123"), "Bearer [redacted] and [redacted]");
        assert_eq!(s.scrub("nothing here"), "nothing here");
    }

    #[test]
    fn a_secret_straddling_the_preview_cut_leaves_no_part_behind() {
        let s = Secrets::default();
        s.add("ABCDEFGHIJKLMNOP");
        // The secret starts 3 bytes before the 10-byte cut.
        let msg = b"1234567ABCDEFGHIJKLMNOP tail";
        let p = s.preview(msg, msg.len() as u64, 10);
        assert_eq!((p.text.as_deref(), p.size, p.truncated), (Some("1234567[re"), msg.len() as u64, true));
        // Binary payloads are scrubbed before they are shown as hex.
        let bin = [&[0xff, 0x00][..], b"ABCDEFGHIJKLMNOP"].concat();
        let p = s.preview(&bin, bin.len() as u64, 64);
        let hex = p.hex.unwrap();
        assert!(!hex.contains(&"ABCDEFGH".bytes().map(|b| format!("{b:02x}")).collect::<String>()), "{hex}");
        // Without secrets, or without one in the message, the preview is the plain cut.
        let p = s.preview(b"plain text", 10, 5);
        assert_eq!((p.text.as_deref(), p.truncated), (Some("plain"), true));
        let p = Secrets::default().preview(b"plain text", 10, 64);
        assert_eq!((p.text.as_deref(), p.truncated), (Some("plain text"), false));
    }

    #[test]
    fn repeating_a_long_name_is_no_change_and_costs_nothing() {
        let log = EventLog::in_memory(crate::log::LogConfig::default());
        let clients = Clients::default();
        let long = "A name far longer than the forty characters that are kept";
        for _ in 0..10 {
            assert_eq!(clients.rename_by_client(&log, "c-1", &format!("  {long} ")), Ok(()));
        }
        assert_eq!(clients.nickname("c-1").map(|n| n.chars().count()), Some(40));
        assert_eq!(clients.rename_by_client(&log, "c-1", "Ana"), Ok(()), "one real change of three");
        clients.rename_by_instructor(&log, "c-1", "Student 7");
        assert_eq!(clients.rename_by_client(&log, "c-1", "Bob"), Err(RenameRefused::SetByInstructor));
        assert_eq!(clients.rename_by_client(&log, "c-1", "Student 7 "), Ok(()), "the same name is no change");
    }

    #[test]
    fn query_parameters_are_found_by_exact_name() {
        assert_eq!(query_param(Some("client=a&ref=3"), "ref"), Some("3"));
        assert_eq!(query_param(Some("xclient=a"), "client"), None);
        assert_eq!(query_param(None, "client"), None);
    }
}
