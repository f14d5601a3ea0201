//! The server's WebSocket endpoint plumbing: an upgrade extractor and a socket type on
//! tungstenite, with the wire tap installed when the capture layer asked for one.
//!
//! Also what every endpoint needs for clean failures: a message over the size limit closes
//! with 1009, invalid UTF-8 with 1007, a protocol violation with 1002 — and the server then
//! reads (and drops) what the client was still sending, so the client sees that close code
//! instead of a reset connection.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

pub use tokio_tungstenite::tungstenite::Message;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::capture::{Tap, TapIo};
use crate::error::ApiError;
use crate::limits::MAX_MESSAGE_BYTES;

/// Asked before a client's data frame is handed to its handler: "may this frame pass now?"
/// The answer comes when it may (the fault console holds frames while the instructor holds
/// messages). The socket knows nothing more of faults than this.
pub trait FrameGate: Send + Sync {
    /// Waits until a frame from `client` (`what` describes it) may pass.
    fn pass<'a>(&'a self, client: &'a str, what: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// What the server may do to an open WebSocket from outside its handler (faults, moderation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close with this code and reason (a close frame, then the handshake).
    Close(u16, String),
    /// Cut the connection: no close frame (the client sees 1006).
    Cut,
}

struct Entry {
    client: String,
    path: String,
    ctl: mpsc::Sender<Control>,
}

/// Controls waiting for one socket; a socket acts on the first (a close or a cut ends it).
const CONTROL_QUEUE: usize = 4;

/// Every open WebSocket that faults and moderation may reach (observers are not in it).
#[derive(Default)]
pub struct Sockets {
    open: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets").finish_non_exhaustive()
    }
}

impl Sockets {
    fn register(self: &Arc<Self>, client: String, path: String) -> (Registration, mpsc::Receiver<Control>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Entry { client, path, ctl: tx });
        (Registration { sockets: self.clone(), id }, rx)
    }

    /// Sends `ctl` to every open socket matching `client` (if given) and `path` prefix (if
    /// given); answers how many.
    pub fn control(&self, client: Option<&str>, path: Option<&str>, ctl: &Control) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.values()
            .filter(|e| client.is_none_or(|c| e.client == c) && path.is_none_or(|p| e.path.starts_with(p)))
            // A full queue already holds a close or a cut this socket will act on first.
            .filter(|e| {
                matches!(e.ctl.try_send(ctl.clone()), Ok(()) | Err(mpsc::error::TrySendError::Full(_)))
            })
            .count()
    }

    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a socket from [`Sockets`] when it ends.
struct Registration {
    sockets: Arc<Sockets>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sockets.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// Put into a request's extensions (by the fault layer) for the upgrade to pick up: where to
/// register the socket, what its frames pass through, and whether they are to be reordered.
#[derive(Clone)]
pub struct SocketSpec {
    pub sockets: Arc<Sockets>,
    pub gate: Arc<dyn FrameGate>,
    pub client: String,
    pub path: String,
    pub reorder: bool,
}

/// How long a closing socket waits for the client's answer (and drains what it still sends).
const CLOSE_GRACE: Duration = Duration::from_secs(3);

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

/// A request to switch to WebSocket. Rejections are JSON errors (426 when it is not one).
pub struct WebSocketUpgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
    tap: Option<Tap>,
    spec: Option<SocketSpec>,
    config: WebSocketConfig,
    /// Counts the socket open while it runs (absent when not served by [`crate::serve`]).
    guard: Option<crate::serve::UpgradeGuard>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade").field("tap", &self.tap).finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if parts.method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        let upgrade = |why: &str| ApiError::UpgradeRequired(format!("this is a WebSocket endpoint: {why}"));
        if !header_has(&parts.headers, header::CONNECTION, "upgrade")
            || !header_has(&parts.headers, header::UPGRADE, "websocket")
        {
            return Err(upgrade("send Connection: Upgrade and Upgrade: websocket"));
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
            return Err(upgrade("only Sec-WebSocket-Version 13 is spoken"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or_else(|| upgrade("Sec-WebSocket-Key is missing"))?;
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| upgrade("this connection cannot be upgraded"))?;
        let tap = parts.extensions.remove::<Tap>();
        let spec = parts.extensions.remove::<SocketSpec>();
        let guard = parts.extensions.get::<crate::serve::Upgrades>().map(crate::serve::Upgrades::guard);
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE_BYTES);
        config.max_frame_size = Some(MAX_MESSAGE_BYTES);
        Ok(Self { key, on_upgrade, tap, spec, config, guard })
    }
}

impl WebSocketUpgrade {
    /// Largest message (and frame) accepted; bigger ones close the socket with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = Some(bytes);
        self.config.max_frame_size = Some(bytes);
        self
    }

    /// Small buffers for sockets that mostly send (observers): thousands of them stay cheap.
    pub fn small_buffers(mut self) -> Self {
        self.config.read_buffer_size = 1024;
        self.config.write_buffer_size = 0;
        self.config.max_write_buffer_size = 4 << 20;
        self.config.max_message_size = Some(64 * 1024);
        self.config.max_frame_size = Some(64 * 1024);
        self
    }

    /// Answers 101 and runs `callback` on the socket once the connection has switched.
    pub fn on_upgrade<C, F>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Self { key, on_upgrade, tap, spec, config, guard } = self;
        tokio::spawn(async move {
            let _guard = guard;
            let Ok(upgraded) = on_upgrade.await else { return };
            // Back to the bare socket when nothing was read past the handshake: the HTTP
            // connection's buffers go, which is most of what an idle WebSocket would cost.
            let io: Box<dyn Io> = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                Ok(parts) if parts.read_buf.is_empty() => Box::new(parts.io.into_inner()),
                Ok(parts) => Box::new(Prefixed { head: parts.read_buf, io: parts.io.into_inner() }),
                Err(upgraded) => Box::new(TokioIo::new(upgraded)),
            };
            let io = TapIo::new(io, tap);
            let stream = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            let reorder = spec.as_ref().is_some_and(|s| s.reorder);
            let (registration, ctl, hold) = match spec {
                Some(s) => {
                    let (r, rx) = s.sockets.register(s.client.clone(), s.path.clone());
                    (Some(r), Some(rx), Some((s.gate, s.client, s.path)))
                }
                None => (None, None, None),
            };
            callback(WebSocket { stream, ctl, reorder, held: None, hold, _registration: registration }).await;
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .unwrap_or_default()
    }
}

/// What a WebSocket runs over.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A socket with bytes already read from it (they are read first).
struct Prefixed {
    head: bytes::Bytes,
    io: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            let chunk = self.head.split_to(n);
            buf.put_slice(&chunk);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

type Socket = TapIo<Box<dyn Io>>;

/// An open server-side WebSocket.
pub struct WebSocket {
    stream: WebSocketStream<Socket>,
    ctl: Option<mpsc::Receiver<Control>>,
    /// Swap the server's data frames in pairs (a fault).
    reorder: bool,
    /// A data frame waiting for its partner (reordering).
    held: Option<(Message, Option<u64>)>,
    /// Where the client's frames wait while the instructor holds messages.
    hold: Option<(Arc<dyn FrameGate>, String, String)>,
    _registration: Option<Registration>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").finish_non_exhaustive()
    }
}

/// How a socket ended, from the server's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The client closed (or the server did, and the client answered).
    Closed,
    /// The connection dropped without a close handshake.
    Lost,
}

/// The close code for a read error, if it is the client's fault and deserves one.
pub fn close_code_for(e: &WsError) -> Option<(u16, &'static str)> {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some((1009, "message too big")),
        WsError::Capacity(_) => Some((1009, "message too big")),
        WsError::Utf8(_) => Some((1007, "text frame is not valid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing) => {
            None
        }
        WsError::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

impl WebSocket {
    /// The next message: `None` once the connection is closed or broken (or closed or cut by
    /// the server from outside). Pings are answered (pong) and close frames echoed by the
    /// implementation itself.
    pub async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        loop {
            let ctl = async {
                match &mut self.ctl {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let flush_held = async {
                if self.held.is_some() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                m = self.stream.next() => {
                    if let (Some((gate, client, path)), Some(Ok(msg))) = (&self.hold, &m)
                        && (msg.is_text() || msg.is_binary())
                    {
                        let what = format!("frame on {path}");
                        gate.pass(client, &what).await;
                    }
                    return m;
                }
                c = ctl => match c {
                    Some(Control::Close(code, reason)) => {
                        self.close_ref(code, &reason).await;
                        return None;
                    }
                    Some(Control::Cut) => {
                        let _ = self.stream.get_mut().shutdown().await;
                        return None;
                    }
                    None => self.ctl = None,
                },
                () = flush_held => {
                    if let Some((m, cause)) = self.held.take() {
                        let _ = self.send_now(m, cause).await;
                    }
                }
            }
        }
    }

    async fn send_now(&mut self, msg: Message, cause: Option<u64>) -> Result<(), WsError> {
        self.stream.get_mut().set_cause(cause);
        let r = self.stream.send(msg).await;
        self.stream.get_mut().set_cause(None);
        r
    }

    pub async fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.send_caused(msg, None).await
    }

    /// Sends a message that exchange `cause` set off; the tap records the link. With the
    /// reorder fault, data frames leave in swapped pairs.
    pub async fn send_caused(&mut self, msg: Message, cause: Option<u64>) -> Result<(), WsError> {
        if self.reorder && (msg.is_text() || msg.is_binary()) {
            match self.held.take() {
                None => {
                    self.held = Some((msg, cause));
                    return Ok(());
                }
                Some((first, first_cause)) => {
                    self.send_now(msg, cause).await?;
                    return self.send_now(first, first_cause).await;
                }
            }
        }
        self.send_now(msg, cause).await
    }

    /// Queues a message without flushing (for batches; call [`WebSocket::flush`] after).
    pub async fn feed(&mut self, msg: Message) -> Result<(), WsError> {
        self.stream.feed(msg).await
    }

    pub async fn flush(&mut self) -> Result<(), WsError> {
        self.stream.flush().await
    }

    /// Closes with `code` and `reason`, then waits (briefly) for the client's close frame,
    /// reading and dropping anything it still sends.
    pub async fn close(mut self, code: u16, reason: &str) {
        self.close_ref(code, reason).await;
    }

    async fn close_ref(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        if self.stream.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let drain = async {
            // Until the client's close frame arrives: through the protocol while it still
            // reads, then as raw bytes (after an oversized or broken message it cannot).
            while let Some(Ok(_)) = self.stream.next().await {}
            // On the heap: an array here would sit in every socket's future, used or not.
            let mut sink = vec![0u8; 16 * 1024];
            while !self.stream.get_ref().client_closed() && !self.stream.get_ref().client_eof() {
                match self.stream.get_mut().read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }

    /// Ends the socket after a read error: with the fitting close code when the client broke a
    /// rule (1009, 1007, 1002), otherwise by dropping it.
    pub async fn fail(self, e: &WsError) {
        match close_code_for(e) {
            Some((code, reason)) => self.close(code, reason).await,
            None => tracing::debug!(error = %e, "websocket ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sockets_control_queue_is_bounded() {
        let sockets = Arc::new(Sockets::default());
        let (_registration, rx) = sockets.register("c-ana".to_owned(), "/ws/echo".to_owned());
        for _ in 0..10 {
            assert_eq!(sockets.control(Some("c-ana"), None, &Control::Cut), 1, "still reached");
        }
        assert_eq!(rx.len(), CONTROL_QUEUE);
        assert_eq!(sockets.control(Some("c-ben"), None, &Control::Cut), 0);
    }
}
