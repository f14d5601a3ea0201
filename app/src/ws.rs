//! WebSocket connections from this browser, every step recorded as it happens.

use std::cell::RefCell;
use std::rc::Rc;

use protocol::{Body, CloseInfo, EventKind, Failure, Opcode, Side, WsAccept, WsClose, WsFrame, WsUpgrade};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::recorder::{PREVIEW_BYTES, Recorder};

/// `ws://` or `wss://` URL for a same-origin path, matching the page's own scheme.
pub fn url(path: &str) -> String {
    let loc = web_sys::window().map(|w| w.location());
    let (proto, host) =
        loc.map(|l| (l.protocol().unwrap_or_default(), l.host().unwrap_or_default())).unwrap_or_default();
    let scheme = if proto == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{host}{path}")
}

/// What a [`Socket`] reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    Open,
    Text(String),
    Binary(Vec<u8>),
    /// The connection ended: `clean` is false when no close handshake happened (1006).
    Closed {
        code: u16,
        reason: String,
        clean: bool,
    },
}

/// A JavaScript event callback kept alive while the socket is open.
type Handler = Closure<dyn FnMut(web_sys::Event)>;

/// A browser WebSocket that records its Upgrade, 101, frames and close handshake.
#[derive(Clone)]
pub struct Socket {
    inner: Rc<Inner>,
}

struct Inner {
    ws: WebSocket,
    rec: Recorder,
    exchange: u64,
    handlers: RefCell<Vec<Handler>>,
    opened: std::cell::Cell<bool>,
    closing: std::cell::Cell<bool>,
}

impl Drop for Inner {
    /// The browser's socket outlives this one (its close handshake is still under way when a
    /// page goes): it must not call closures that are dropped with us.
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

impl Socket {
    /// Opens `path` (same origin) and calls `on_event` for everything that happens on it.
    pub fn connect(
        rec: Recorder,
        path: &str,
        mut on_event: impl FnMut(&Socket, SocketEvent) + 'static,
    ) -> Result<Socket, String> {
        let exchange = rec.exchange();
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path.to_owned(), None),
        };
        rec.record(exchange, EventKind::WsUpgrade(WsUpgrade { path: path_only, query, headers: vec![] }));
        let sep = if path.contains('?') { '&' } else { '?' };
        let tagged = format!("{path}{sep}client={}&ref={exchange}", rec.client());
        let ws = match WebSocket::new(&url(&tagged)) {
            Ok(ws) => ws,
            Err(e) => {
                let message = format!("could not open: {}", js_error_text(&e));
                rec.record(
                    exchange,
                    EventKind::Failure(Failure { from: Side::Client, message: message.clone() }),
                );
                return Err(message);
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let socket = Socket {
            inner: Rc::new(Inner {
                ws,
                rec,
                exchange,
                handlers: RefCell::new(Vec::new()),
                opened: false.into(),
                closing: false.into(),
            }),
        };
        // The handlers hold only a weak reference, so a dropped Socket is not kept alive by
        // its own callbacks; the owner keeps it while it wants events.
        let weak = Rc::downgrade(&socket.inner);
        let on_event = Rc::new(RefCell::new(move |s: &Socket, e: SocketEvent| on_event(s, e)));
        let make = |kind: &'static str| {
            let weak = weak.clone();
            let on_event = on_event.clone();
            Handler::new(move |ev: web_sys::Event| {
                let Some(inner) = weak.upgrade() else { return };
                let s = Socket { inner };
                if let Some(report) = s.observe(kind, ev) {
                    (on_event.borrow_mut())(&s, report);
                }
            })
        };
        let (open, message, close) = (make("open"), make("message"), make("close"));
        socket.inner.ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        socket.inner.ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        socket.inner.ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        socket.inner.handlers.borrow_mut().extend([open, message, close]);
        Ok(socket)
    }

    /// Records what the browser just saw and translates it for the owner.
    fn observe(&self, kind: &str, ev: web_sys::Event) -> Option<SocketEvent> {
        let i = &self.inner;
        match kind {
            "open" => {
                i.opened.set(true);
                i.rec.record(i.exchange, EventKind::WsAccept(WsAccept { status: 101, headers: vec![] }));
                Some(SocketEvent::Open)
            }
            "message" => {
                let ev: MessageEvent = ev.dyn_into().ok()?;
                let data = ev.data();
                let (opcode, payload, report) = if let Some(text) = data.as_string() {
                    let body = Body::capture(text.as_bytes(), PREVIEW_BYTES);
                    (Opcode::Text, body, SocketEvent::Text(text))
                } else {
                    let bytes = js_sys::Uint8Array::new(&data).to_vec();
                    (Opcode::Binary, Body::capture(&bytes, PREVIEW_BYTES), SocketEvent::Binary(bytes))
                };
                i.rec.record(
                    i.exchange,
                    EventKind::WsFrame(WsFrame { from: Side::Server, opcode, fin: true, payload }),
                );
                Some(report)
            }
            "close" => {
                let ev: CloseEvent = ev.dyn_into().ok()?;
                let (code, reason, clean) = (ev.code(), ev.reason(), ev.was_clean());
                if !i.opened.get() {
                    let message = format!("the server refused the WebSocket ({code})");
                    i.rec.record(i.exchange, EventKind::Failure(Failure { from: Side::Client, message }));
                } else if clean {
                    let close = Some(CloseInfo { code, reason: reason.clone() });
                    i.rec.record(
                        i.exchange,
                        EventKind::WsClose(WsClose { from: Side::Server, close: close.clone(), clean }),
                    );
                    if !i.closing.get() {
                        // The server closed first; the browser answered with the same code.
                        i.rec.record(
                            i.exchange,
                            EventKind::WsClose(WsClose { from: Side::Client, close, clean }),
                        );
                    }
                } else {
                    i.rec.record(
                        i.exchange,
                        EventKind::WsClose(WsClose { from: Side::Server, close: None, clean: false }),
                    );
                }
                self.release_handlers();
                Some(SocketEvent::Closed { code, reason, clean })
            }
            _ => None,
        }
    }

    /// Sends a text frame.
    pub fn send_text(&self, text: &str) -> Result<(), String> {
        let i = &self.inner;
        i.ws.send_with_str(text).map_err(|e| js_error_text(&e))?;
        let payload = Body::capture(text.as_bytes(), PREVIEW_BYTES);
        i.rec.record(
            i.exchange,
            EventKind::WsFrame(WsFrame { from: Side::Client, opcode: Opcode::Text, fin: true, payload }),
        );
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &str) {
        let i = &self.inner;
        if i.closing.replace(true) {
            return;
        }
        if i.ws.close_with_code_and_reason(code, reason).is_ok() {
            let close = Some(CloseInfo { code, reason: reason.to_owned() });
            i.rec.record(i.exchange, EventKind::WsClose(WsClose { from: Side::Client, close, clean: true }));
        }
    }

    /// Detaches the callbacks; they are dropped after the current one has returned.
    fn release_handlers(&self) {
        let i = &self.inner;
        i.ws.set_onopen(None);
        i.ws.set_onmessage(None);
        i.ws.set_onclose(None);
        let handlers = std::mem::take(&mut *i.handlers.borrow_mut());
        leptos::task::spawn_local(async move { drop(handlers) });
    }
}

/// The echo demo: open `/ws/echo`, send `text`, wait for the echo, close with 1000.
/// `done` is called once the connection has ended, with how it ended.
pub fn echo_once(rec: Recorder, text: String, done: impl Fn(Result<String, String>) + 'static) {
    let holder: Rc<RefCell<Option<Socket>>> = Rc::new(RefCell::new(None));
    let keep = holder.clone();
    let echoed: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let done = Rc::new(done);
    let done_here = done.clone();
    let result = Socket::connect(rec, "/ws/echo", move |s, ev| match ev {
        SocketEvent::Open => {
            if let Err(e) = s.send_text(&text) {
                s.close(1011, "send failed");
                done(Err(e));
            }
        }
        SocketEvent::Text(t) => {
            *echoed.borrow_mut() = Some(t);
            s.close(1000, "done");
        }
        SocketEvent::Binary(_) => s.close(1003, "expected text"),
        SocketEvent::Closed { code, reason, clean } => {
            let outcome = match (echoed.borrow_mut().take(), clean) {
                (Some(t), true) => Ok(t),
                (_, false) => Err(format!("connection lost ({code})")),
                (None, true) => Err(format!("closed before the echo: {code} {reason}")),
            };
            done(outcome);
            keep.borrow_mut().take();
        }
    });
    match result {
        Ok(s) => *holder.borrow_mut() = Some(s),
        Err(e) => done_here(Err(e)),
    }
}

/// What a JavaScript exception says: its message (a `DOMException` is an `Error`), or the
/// value itself when it is a string.
fn js_error_text(e: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "the browser gave no reason".to_owned())
}
