//! The wire tap, in one place: a tower layer that records every HTTP exchange and WebSocket
//! handshake under the API paths, and (through [`tap::TapIo`], installed by [`crate::ws`]) every
//! WebSocket frame. Handlers never see it: they run inside the layer, and what they set off
//! is linked to the exchange through [`crate::cause`].
//!
//! Recorded for each HTTP exchange: the client (its `X-Wirescope-Client` id, or a pseudonym of
//! its remote address), a correlation id, method, path, query, headers and body previews (secrets
//! redacted) of request and response, and the server's receive and respond times. Static files
//! of the app are not recorded, nor the observer stream's own frames (no feedback loop).

pub mod frames;
pub mod tap;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use protocol::{EventKind, Header, Hop, HttpRequest, HttpResponse, Stamps, Step, WsAccept, WsUpgrade};
use tower::{Layer, Service};

use crate::clock::{now_us, server_now as now};
use crate::error::ApiError;
use crate::identity::{Clients, ConnectionLane, client_id, pseudonym, query_param, remote_ip};
use crate::log::EventLog;
use crate::paths::{EXCHANGE_HEADER, INSTRUCTOR_PREFIX, OBSERVE_PATH, is_api_path, under};
use crate::secrets::{REDACTED, Secrets};
use crate::serve::DropConnection;
pub use tap::{Tap, TapIo};

/// Headers whose values are never stored or shown.
const SECRET_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];
/// Headers that carry a client's address: stored as `[address]` (the instructor maps lanes to
/// addresses through the client registry instead).
const ADDRESS_HEADERS: [&str; 4] = ["x-forwarded-for", "x-real-ip", "forwarded", "true-client-ip"];
/// Request bodies up to this size are read before the handler runs, so the request event
/// carries its preview; a larger one is recorded with what was read by then.
const BUFFER_LIMIT: usize = (1 << 20) + 1;

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
    /// How long a request body may take before it must keep up a minimum rate (then 408).
    pub body_grace: std::time::Duration,
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

impl Capture {
    fn headers(&self, headers: &HeaderMap) -> Vec<Header> {
        headers
            .iter()
            .map(|(name, value)| {
                let value = if SECRET_HEADERS.contains(&name.as_str()) {
                    REDACTED.to_owned()
                } else if name == header::USER_AGENT {
                    // Every screen sees what kind of program it is, only the instructor more.
                    format!("[{}]", export::names::agent_name(&String::from_utf8_lossy(value.as_bytes())))
                } else if ADDRESS_HEADERS.contains(&name.as_str()) {
                    "[address]".to_owned()
                } else {
                    self.secrets.scrub(&String::from_utf8_lossy(value.as_bytes())).into_owned()
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
/// (the same bytes, then whatever was not read), the full size if known, and whether the
/// body came too slowly ([`crate::limits::body_due`]; then what was read is all there is).
async fn buffer(body: Body, declared: Option<u64>, grace: std::time::Duration) -> (Bytes, Body, u64, bool) {
    let mut body = body;
    let mut head = BytesMut::new();
    let start = tokio::time::Instant::now();
    loop {
        if head.len() >= BUFFER_LIMIT {
            let seen = head.len() as u64;
            let head = head.freeze();
            let rest = body.into_data_stream();
            let first =
                futures_util::stream::once(futures_util::future::ready(Ok::<_, axum::Error>(head.clone())));
            let chained = futures_util::StreamExt::chain(first, rest);
            return (head, Body::from_stream(chained), declared.unwrap_or(seen).max(seen), false);
        }
        let due = crate::limits::body_due(start, grace, head.len());
        let Ok(frame) = tokio::time::timeout_at(due, body.frame()).await else {
            let head = head.freeze();
            let size = declared.unwrap_or(head.len() as u64);
            return (head, Body::empty(), size, true);
        };
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            // A body that breaks mid-way: hand on what arrived; the handler sees it cut short.
            Some(Err(_)) | None => {
                let head = head.freeze();
                let size = head.len() as u64;
                return (head.clone(), Body::from(head), size, false);
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
        // A balancer's health check (HAProxy every 500 ms, marked by the configuration the
        // project writes) is not traffic anyone made: it would bury the diagram.
        let probe =
            path == crate::paths::HEALTH_PATH && req.headers().contains_key(crate::paths::PROBE_HEADER);
        let captured = self.capture.enabled && is_api_path(path) && path != OBSERVE_PATH && !probe;
        // Take the service that was polled ready; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !captured {
            return Box::pin(inner.call(req));
        }
        let cap = self.capture.clone();
        Box::pin(async move {
            let received = now_us();
            let log = cap.log.clone();
            let exchange = log.next_exchange();
            let headers = req.headers();
            let query = req.uri().query().map(str::to_owned);
            // The remote address is read only when it is needed: for the lane of a client
            // without an id (worked out once per connection), or to describe a client seen
            // for the first time.
            let id = client_id(&req);
            let known = id.is_some_and(|id| cap.clients.knows(id));
            let (addr, client): (Option<Arc<str>>, Arc<str>) = match id {
                Some(id) => ((!known).then(|| remote_ip(&req)).flatten().map(Arc::from), id.into()),
                None => match req.extensions().get::<ConnectionLane>() {
                    Some(lane) => lane.of(&req),
                    None => {
                        let addr = remote_ip(&req).map(Arc::<str>::from);
                        let lane = pseudonym(addr.as_deref()).into();
                        (addr, lane)
                    }
                },
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
            let path = cap.secrets.scrub(req.uri().path()).into_owned();
            let query = query.map(|q| cap.secrets.scrub_owned(q));
            let upgrade =
                headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));

            // The balancer's hand-off is drawn after the request it handed on (it began when the
            // balancer had the request, and lasted until this replica had it).
            // A time that is not a balancer's (a minute off, or ahead) is not drawn.
            let handoff = req.extensions().get::<crate::hops::Handoff>().and_then(|h| {
                let took_us = h.took_until(received)?;
                let hop = Hop { step: Step::Handoff { server: h.server.clone() }, took_us };
                Some((Stamps { client_us: None, server_us: Some(h.at_us) }, EventKind::Hop(hop)))
            });
            if upgrade {
                let headers = cap.headers(req.headers());
                log.record(
                    &client,
                    exchange,
                    client_ref,
                    at,
                    EventKind::WsUpgrade(WsUpgrade { path, query, headers }),
                );
                if let Some((at, hop)) = handoff {
                    log.record(&client, exchange, client_ref, at, hop);
                }
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
                if let Some(DropConnection(why)) = res.extensions().get::<DropConnection>() {
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
            let accept = crate::compress::accept_encoding(req.headers());
            let (parts, body) = req.into_parts();
            // The answers meant for the instructor alone (clients with their addresses, every
            // session) are recorded by their size only.
            let private = under(parts.uri.path(), INSTRUCTOR_PREFIX)
                || (under(parts.uri.path(), "/api/sessions")
                    && parts.headers.contains_key(header::AUTHORIZATION));
            // A request without a body (most GETs) is handed on as it came: nothing to read.
            let (head, body, size, late) = if axum::body::HttpBody::size_hint(&body).exact() == Some(0) {
                (Bytes::new(), body, 0, false)
            } else {
                buffer(body, declared, cap.body_grace).await
            };
            let body_preview = (size > 0).then(|| cap.body(&head, size));
            let request = HttpRequest {
                method: parts.method.to_string(),
                path,
                query,
                headers: req_headers,
                body: body_preview,
            };
            log.record(&client, exchange, client_ref, at, EventKind::HttpRequest(request));
            if let Some((at, hop)) = handoff {
                log.record(&client, exchange, client_ref, at, hop);
            }

            let res = if late {
                // A body trickling in too slowly: cut (the connection closes, since the rest
                // of the body is never read), and nobody else waits for it.
                ApiError::RequestTimeout(crate::extract::slow_body(cap.body_grace)).into_response()
            } else {
                let handled = crate::cause::scope(exchange, inner.call(Request::from_parts(parts, body)));
                let (res, dropped) =
                    crate::hops::collect(steps_into(&log, &client, exchange, client_ref), handled).await;
                if dropped > 0 {
                    let hop = Hop { step: Step::Dropped { count: dropped }, took_us: 0 };
                    log.record(&client, exchange, client_ref, now(), EventKind::Hop(hop));
                }
                res?
            };
            if let Some(DropConnection(why)) = res.extensions().get::<DropConnection>() {
                let message = format!("no answer: {why}");
                let failure = protocol::Failure { from: protocol::Side::Server, message };
                log.record(&client, exchange, client_ref, now(), EventKind::Failure(failure));
                return Ok(res);
            }
            let status = res.status();
            let mut headers = cap.headers(res.headers());
            if matches!(status, StatusCode::NOT_MODIFIED | StatusCode::NO_CONTENT) {
                // A 304 or 204 goes without a length (the connection layer drops it).
                headers.retain(|h| h.name != header::CONTENT_LENGTH.as_str());
            }
            let exact = axum::body::HttpBody::size_hint(res.body()).exact();
            // Compressed on the way out ([`crate::compress`], outside this layer): the body shown
            // is the handler's, the encoding sent is noted with the headers.
            if let Some(encoding) = crate::compress::chosen(accept.as_ref(), res.headers(), exact) {
                // The length sent is the compressed one: the body's own size is in its preview.
                headers.retain(|h| h.name != header::CONTENT_LENGTH.as_str());
                headers.push(Header::new(header::CONTENT_ENCODING.as_str(), encoding.token()));
                if !crate::compress::varies_by_encoding(res.headers()) {
                    headers.push(Header::new(header::VARY.as_str(), "accept-encoding"));
                }
                for h in headers.iter_mut().filter(|h| h.name == header::ETAG.as_str()) {
                    h.value = crate::conditional::weakened(&h.value);
                }
            }
            let streaming = exact.is_none() || exact.is_some_and(|n| n > BUFFER_LIMIT as u64);
            let (res, body) = if streaming || status == StatusCode::SWITCHING_PROTOCOLS {
                (res, None)
            } else {
                let (parts, body) = res.into_parts();
                let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                let preview = (!bytes.is_empty()).then(|| {
                    if private {
                        protocol::Body {
                            size: bytes.len() as u64,
                            truncated: true,
                            ..protocol::Body::default()
                        }
                    } else {
                        cap.body(&bytes, bytes.len() as u64)
                    }
                });
                (Response::from_parts(parts, Body::from(bytes)), preview)
            };
            let response = HttpResponse { status: status.as_u16(), streaming, headers, body };
            log.record(&client, exchange, client_ref, now(), EventKind::HttpResponse(response));
            Ok(res)
        })
    }
}

/// Where the steps of an exchange's handling go ([`crate::hops`]): each recorded the moment it
/// is noted, at the time it began, so nothing it set off is numbered before it.
fn steps_into(
    log: &Arc<EventLog>,
    client: &Arc<str>,
    exchange: u64,
    client_ref: Option<u64>,
) -> crate::hops::Sink {
    let (log, client) = (log.clone(), client.clone());
    Arc::new(move |noted: crate::hops::Noted| {
        let at = Stamps { client_us: None, server_us: Some(noted.started_us) };
        let hop = Hop { step: noted.step, took_us: noted.took_us };
        log.record(&client, exchange, client_ref, at, EventKind::Hop(hop));
    })
}
