//! Follows the server's event log (`/ws/observe`) and feeds it into the page's timeline.
//!
//! Events are queued as they arrive and handed to the timeline once per animation frame, so a
//! burst of thousands costs one update and one render. The connection resumes after a drop
//! with `since` = the last `seq` seen (exponential backoff with jitter), and measures the clock
//! offset to the server with pings.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::*;
use protocol::{Event, ObserverCmd, ObserverMsg};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::clock::{backoff_ms, now_us};
use crate::model::Timeline;
use crate::recorder::Recorder;

/// The stream's state, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    /// Lost; the next attempt is the `n`th.
    Retrying(u32),
}

/// What the page shows about the stream.
#[derive(Debug, Clone, Copy)]
pub struct Observer {
    pub link: RwSignal<Link>,
    /// Events the server recorded but could not write to disk.
    pub unpersisted: RwSignal<u64>,
    /// The server's answer to the last refused command (e.g. a nickname change), if any.
    pub refused: RwSignal<Option<String>>,
    socket: StoredValue<Option<WebSocket>, LocalStorage>,
}

impl Observer {
    pub fn from_context() -> Self {
        expect_context::<Observer>()
    }

    /// Sends a command on the open stream (dropped while reconnecting; nicknames are also
    /// sent on every connect).
    pub fn send(&self, cmd: &ObserverCmd) {
        if let (Some(ws), Ok(text)) = (self.socket.get_value(), serde_json::to_string(cmd)) {
            let _ = ws.send_with_str(&text);
        }
    }
}

/// `?marks` in the address: the page leaves a performance mark per drawn arrow (benchmarks).
pub fn marks_enabled() -> bool {
    thread_local!(static ON: bool = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .is_some_and(|s| s.contains("marks")));
    ON.with(|on| *on)
}

/// True the first time the row `key` is drawn (server events are drawn in `seq` order,
/// this browser's own in the order it saw them): a row drawn again (scrolled back into view,
/// re-laid out) is not new — it leaves no second mark and does not travel in again.
pub fn first_drawing(key: crate::model::ItemKey) -> bool {
    thread_local!(static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) });
    LAST.with(|l| {
        let (seq, local) = l.get();
        let (first, next) = match key {
            crate::model::ItemKey::Seq(s) => (s > seq, (s.max(seq), local)),
            crate::model::ItemKey::Local(n) => (n > local, (seq, n.max(local))),
        };
        l.set(next);
        first
    })
}

struct Pending {
    events: RefCell<Vec<Event>>,
    scheduled: Cell<bool>,
}

/// Hands queued events to the timeline in one update, at the next animation frame.
fn schedule_flush(rec: Recorder, pending: Rc<Pending>) {
    if pending.scheduled.replace(true) {
        return;
    }
    let p = pending.clone();
    let cb = Closure::once_into_js(move || {
        p.scheduled.set(false);
        let batch = std::mem::take(&mut *p.events.borrow_mut());
        if !batch.is_empty() {
            rec.timeline().update(|t| {
                for e in batch {
                    t.add_server(e);
                }
            });
        }
    });
    if let Some(w) = web_sys::window() {
        let _ = w.request_animation_frame(cb.unchecked_ref());
    }
}

/// Starts following the log; returns the handle the page uses for status and commands.
pub fn start(rec: Recorder) -> Observer {
    let obs = Observer {
        link: RwSignal::new(Link::Connecting),
        unpersisted: RwSignal::new(0),
        refused: RwSignal::new(None),
        socket: StoredValue::new_local(None),
    };
    let pending = Rc::new(Pending { events: RefCell::new(Vec::new()), scheduled: Cell::new(false) });
    connect(rec, obs, pending, 0);
    let every = Closure::<dyn FnMut()>::new(move || {
        if let Some(ws) = obs.socket.get_value() {
            ping(&ws);
        }
    });
    if let Some(w) = web_sys::window() {
        let _ =
            w.set_interval_with_callback_and_timeout_and_arguments_0(every.as_ref().unchecked_ref(), 10_000);
    }
    every.forget();
    obs
}

fn connect(rec: Recorder, obs: Observer, pending: Rc<Pending>, attempt: u32) {
    let since = rec.timeline().with_untracked(Timeline::latest_seq);
    let nick = rec.nickname.get_untracked();
    let mut path = format!("{}?client={}", protocol::OBSERVE_PATH, rec.client());
    if since > 0 {
        path.push_str(&format!("&since={since}"));
    }
    if !nick.is_empty() {
        path.push_str(&format!("&nick={}", crate::model::openapi::encode(&nick)));
    }
    let Ok(ws) = WebSocket::new(&crate::ws::url(&path)) else {
        retry(rec, obs, pending, attempt + 1);
        return;
    };
    obs.socket.set_value(Some(ws.clone()));

    let on_open = {
        let ws = ws.clone();
        Closure::<dyn FnMut()>::new(move || {
            obs.link.set(Link::Live);
            // A few quick clock samples (then one every ten seconds, see `start`).
            for delay in [0, 250, 500, 1000, 2000] {
                ping_later(ws.clone(), delay);
            }
        })
    };
    let on_message = {
        let pending = pending.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let Some(text) = ev.data().as_string() else { return };
            match serde_json::from_str::<ObserverMsg>(&text) {
                Ok(ObserverMsg::Events { events }) => {
                    pending.events.borrow_mut().extend(events);
                    schedule_flush(rec, pending.clone());
                }
                Ok(ObserverMsg::Hello { latest_seq, unpersisted, .. }) => {
                    obs.unpersisted.set(unpersisted);
                    // A server with a shorter log than ours is another log: start over.
                    if latest_seq < rec.timeline().with_untracked(Timeline::latest_seq) {
                        rec.timeline().update(Timeline::restart_stream);
                    }
                }
                Ok(ObserverMsg::Clients { clients }) => rec.timeline().update(|t| t.know_clients(clients)),
                Ok(ObserverMsg::Clock { client_time_us, server_time_us }) => {
                    let t2 = now_us();
                    rec.timeline().update(|t| {
                        t.offset.add(client_time_us, server_time_us, t2);
                    });
                }
                Ok(ObserverMsg::Error { message }) => obs.refused.set(Some(message)),
                Ok(ObserverMsg::Lagged { .. } | ObserverMsg::Gap { .. }) => {}
                Err(e) => leptos::logging::warn!("observer: unreadable message: {e}"),
            }
        })
    };
    let on_close = {
        let pending = pending.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |_ev: CloseEvent| {
            obs.socket.set_value(None);
            let next = if obs.link.get_untracked() == Link::Live { 1 } else { attempt + 1 };
            retry(rec, obs, pending.clone(), next);
        })
    };
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // One connection's handlers live as long as the page (a reconnect makes new ones; the
    // old socket is closed and its handlers never fire again).
    on_open.forget();
    on_message.forget();
    on_close.forget();
}

fn ping(ws: &WebSocket) {
    if ws.ready_state() == WebSocket::OPEN
        && let Ok(text) = serde_json::to_string(&ObserverCmd::Clock { client_time_us: now_us() })
    {
        let _ = ws.send_with_str(&text);
    }
}

fn ping_later(ws: WebSocket, ms: i32) {
    let cb = Closure::once_into_js(move || ping(&ws));
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms);
    }
}

fn retry(rec: Recorder, obs: Observer, pending: Rc<Pending>, attempt: u32) {
    obs.link.set(Link::Retrying(attempt));
    let cb = Closure::once_into_js(move || connect(rec, obs, pending, attempt));
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
            cb.unchecked_ref(),
            backoff_ms(attempt, js_sys::Math::random()),
        );
    }
}
