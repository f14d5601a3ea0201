//! This browser on `/ws/events`: hello, presence, rooms and chat, the ping-pong demo, ticks and
//! pushed `transcriptChanged` — and on its own after a drop: reconnects with exponential backoff
//! and jitter, says hello again and rejoins its rooms. Every attempt is drawn (its Upgrade, and
//! a ✕ when it fails).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use leptos::prelude::*;
use protocol::channel::{Change, ChatLine, ClientMsg, ServerEnvelope, ServerMsg};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use crate::clock::backoff_ms;
use crate::recorder::Recorder;
use crate::ws::{Socket, SocketEvent};

/// Chat lines and pushed changes kept on the page.
const KEEP: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Open,
    /// Lost; reconnecting in `ms`, attempt `n`.
    Waiting {
        attempt: u32,
        ms: i32,
    },
    Stopped,
}

/// The page-facing state of the channel.
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    pub status: RwSignal<Status>,
    /// Connected count from the latest welcome/joined/left.
    pub connected: RwSignal<u32>,
    /// `/ws/events` connections, from the latest tick.
    pub watchers: RwSignal<Option<u32>>,
    pub rooms: RwSignal<BTreeSet<String>>,
    pub chat: RwSignal<Vec<ChatLine>>,
    pub changes: RwSignal<Vec<Change>>,
    pub pingpong: RwSignal<String>,
    pub last_error: RwSignal<String>,
    /// Connections opened so far (the first, then each reconnect).
    pub connects: RwSignal<u32>,
    inner: StoredValue<Rc<Inner>, LocalStorage>,
}

struct Inner {
    socket: RefCell<Option<Socket>>,
    stopped: std::cell::Cell<bool>,
}

fn push_bounded<T>(v: &mut Vec<T>, item: T) {
    v.push(item);
    if v.len() > KEEP {
        v.remove(0);
    }
}

impl Channel {
    /// Opens the channel for this page (closed again when the page goes).
    pub fn open(rec: Recorder) -> Channel {
        let ch = Channel {
            status: RwSignal::new(Status::Connecting),
            connected: RwSignal::new(0),
            watchers: RwSignal::new(None),
            rooms: RwSignal::new(BTreeSet::new()),
            chat: RwSignal::new(Vec::new()),
            changes: RwSignal::new(Vec::new()),
            pingpong: RwSignal::new(String::new()),
            last_error: RwSignal::new(String::new()),
            connects: RwSignal::new(0),
            inner: StoredValue::new_local(Rc::new(Inner {
                socket: RefCell::new(None),
                stopped: false.into(),
            })),
        };
        ch.connect(rec, 0);
        // A new name is announced with a new hello.
        Effect::new(move |prev: Option<()>| {
            let name = rec.saved_nickname.get();
            if prev.is_some() && !name.trim().is_empty() {
                ch.with_socket(|s| send(s, &ClientMsg::Hello { name }));
            }
        });
        on_cleanup(move || ch.stop());
        ch
    }

    fn connect(self, rec: Recorder, attempt: u32) {
        let inner = self.inner.get_value();
        if inner.stopped.get() {
            return;
        }
        self.status.set(Status::Connecting);
        // After a reconnect, the changes missed while away are replayed from the last one seen.
        let path = match self.changes.with_untracked(|v| v.last().map(|c| c.seq)) {
            Some(seq) => format!("{}?since={seq}", protocol::EVENTS_PATH),
            None => protocol::EVENTS_PATH.to_owned(),
        };
        let result = Socket::connect(rec, &path, move |socket, ev| match ev {
            SocketEvent::Open => {
                self.status.set(Status::Open);
                self.connects.update(|n| *n += 1);
                let name = rec.nickname.get_untracked();
                let name = if name.trim().is_empty() { rec.client() } else { name };
                send(socket, &ClientMsg::Hello { name });
                for room in self.rooms.get_untracked() {
                    send(socket, &ClientMsg::Join { room });
                }
            }
            SocketEvent::Text(text) => match serde_json::from_str::<ServerEnvelope>(&text) {
                Ok(env) => self.on_message(socket, env.msg),
                Err(e) => self.last_error.set(format!("unreadable message: {e}")),
            },
            SocketEvent::Binary(_) => {}
            SocketEvent::Closed { .. } => {
                let inner = self.inner.get_value();
                inner.socket.borrow_mut().take();
                if inner.stopped.get() {
                    self.status.set(Status::Stopped);
                    return;
                }
                let next = if self.status.get_untracked() == Status::Open { 1 } else { attempt + 1 };
                let ms = backoff_ms(next, js_sys::Math::random());
                self.status.set(Status::Waiting { attempt: next, ms });
                let cb = Closure::once_into_js(move || self.connect(rec, next));
                if let Some(w) = web_sys::window() {
                    let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms);
                }
            }
        });
        match result {
            Ok(s) => *inner.socket.borrow_mut() = Some(s),
            Err(e) => self.last_error.set(e),
        }
    }

    fn on_message(&self, socket: &Socket, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { connected, .. } => self.connected.set(connected),
            ServerMsg::Joined { connected, .. } | ServerMsg::Left { connected, .. } => {
                self.connected.set(connected)
            }
            ServerMsg::History { messages, .. } => self.chat.update(|c| {
                for m in messages {
                    if !c.contains(&m) {
                        push_bounded(c, m);
                    }
                }
            }),
            ServerMsg::Chat(line) => self.chat.update(|c| push_bounded(c, line)),
            ServerMsg::Ping { n } => {
                self.pingpong.set(format!("ping {n} → pong {n}"));
                send(socket, &ClientMsg::Pong { n });
            }
            ServerMsg::PingpongDone { rounds } => self.pingpong.set(format!("done: {rounds} rounds")),
            ServerMsg::Tick { watchers } => self.watchers.set(Some(watchers)),
            ServerMsg::TranscriptChanged(c) => self.changes.update(|v| {
                if !v.contains(&c) {
                    push_bounded(v, c);
                }
            }),
            ServerMsg::LabChanged(_) | ServerMsg::LabReport(_) => {}
            ServerMsg::Error { message } => self.last_error.set(message),
        }
    }

    fn with_socket(&self, f: impl FnOnce(&Socket)) {
        if let Some(s) = self.inner.get_value().socket.borrow().as_ref() {
            f(s);
        }
    }

    pub fn join(&self, room: &str) {
        let room = room.trim().to_owned();
        if room.is_empty() {
            return;
        }
        self.rooms.update(|r| {
            r.insert(room.clone());
        });
        self.with_socket(|s| send(s, &ClientMsg::Join { room }));
    }

    pub fn leave(&self, room: &str) {
        self.rooms.update(|r| {
            r.remove(room);
        });
        self.with_socket(|s| send(s, &ClientMsg::Leave { room: room.to_owned() }));
    }

    pub fn say(&self, room: &str, text: &str) {
        self.with_socket(|s| send(s, &ClientMsg::Chat { room: room.to_owned(), text: text.to_owned() }));
    }

    pub fn pingpong(&self, rounds: u32) {
        self.pingpong.set("starting…".to_owned());
        self.with_socket(|s| send(s, &ClientMsg::Pingpong { rounds }));
    }

    /// Closes for good (the page is going away).
    pub fn stop(&self) {
        let inner = self.inner.get_value();
        inner.stopped.set(true);
        if let Some(s) = inner.socket.borrow().as_ref() {
            s.close(1000, "page closed");
        }
    }
}

fn send(socket: &Socket, msg: &ClientMsg) {
    if let Ok(text) = serde_json::to_string(msg) {
        let _ = socket.send_text(&text);
    }
}
