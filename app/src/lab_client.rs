//! This browser as a real subscriber of the lab's scratch feed, four ways at once: short
//! polling, long polling, Server-Sent Events (EventSource) and WebSocket (room `lab`). Each
//! measures its own staleness (change → this browser, on the server's clock).

use std::cell::Cell;
use std::rc::Rc;

use gloo_net::http::Method;
use leptos::prelude::*;
use protocol::Micros;
use protocol::channel::{Change, ClientMsg, ServerEnvelope, ServerMsg};
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use crate::api;
use crate::clock::{now_us, sleep};
use crate::model::lab::Measured;
use crate::recorder::Recorder;
use crate::ws::{Socket, SocketEvent};

#[derive(Debug, Deserialize)]
struct Changes {
    changes: Vec<Change>,
    latest: u64,
}

/// This browser's four subscriptions, while the page is open.
#[derive(Debug, Clone, Copy)]
pub struct Subscriber {
    /// Short poll, long poll, SSE, WebSocket.
    pub measured: [RwSignal<Measured>; 4],
    alive: StoredValue<Rc<Cell<bool>>, LocalStorage>,
}

fn server_now(rec: Recorder) -> Micros {
    let offset = rec.timeline().with_untracked(|t| t.offset);
    offset.to_server(now_us())
}

/// Follows the lab feed by Server-Sent Events from `since` on, until `alive` goes false.
fn follow_sse(rec: Recorder, m: RwSignal<Measured>, since: u64, alive: Rc<Cell<bool>>) {
    // EventSource cannot send headers: the client id rides in the query, so the stream is
    // drawn on this browser's lane.
    let url = format!("/api/lab/changes/stream?since={since}&client={}", rec.client());
    let Ok(es) = web_sys::EventSource::new(&url) else { return };
    m.update(|x| x.requests += 1);
    let on = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
        if let Some(text) = ev.data().as_string()
            && let Ok(c) = serde_json::from_str::<Change>(&text)
        {
            m.update(|x| x.received(&[c.at_us], server_now(rec), text.len()));
        }
    });
    let _ = es.add_event_listener_with_callback("labChanged", on.as_ref().unchecked_ref());
    on.forget();
    let stop = Closure::<dyn FnMut()>::new(move || {
        if !alive.get() {
            es.close();
        }
    });
    if let Some(w) = web_sys::window() {
        let _ = w.set_interval_with_callback_and_timeout_and_arguments_0(stop.as_ref().unchecked_ref(), 500);
    }
    stop.forget();
}

/// Polls the lab feed from `since` on until `alive` goes false: with `wait`, each request
/// is a long poll (made again as soon as it is answered); without, one request per period.
async fn poll(
    rec: Recorder,
    m: RwSignal<Measured>,
    mut since: u64,
    wait: Option<u64>,
    period_ms: Signal<u64>,
    running: Signal<bool>,
    alive: Rc<Cell<bool>>,
) {
    while alive.get() {
        // While the lab is stopped, nothing is sent: a stopped Lab tab is quiet.
        if !running.get_untracked() {
            sleep(300).await;
            continue;
        }
        let path = match wait {
            Some(w) => format!("/api/lab/changes?since={since}&wait={w}"),
            None => format!("/api/lab/changes?since={since}"),
        };
        match api::exchange(&rec, Method::GET, &path, None).await {
            Ok(a) => {
                if let Ok(c) = serde_json::from_str::<Changes>(&a.text) {
                    let ats: Vec<Micros> = c.changes.iter().map(|c| c.at_us).collect();
                    let bytes = if ats.is_empty() { 0 } else { a.text.len() };
                    m.update(|x| {
                        x.requests += 1;
                        x.received(&ats, server_now(rec), bytes);
                    });
                    since = c.latest.max(since);
                }
                if wait.is_none() {
                    sleep(period_ms.get_untracked() as i32).await;
                }
            }
            Err(_) => sleep(1000).await,
        }
    }
}

impl Subscriber {
    /// Subscribes four ways until the page goes; `poll_ms` is the short-polling period.
    /// Pollers poll only while the lab `running`; the lab's figures pushed to room `lab`
    /// land in `report`.
    pub fn start(
        rec: Recorder,
        poll_ms: Signal<u64>,
        running: Signal<bool>,
        report: RwSignal<Option<protocol::lab::LabReport>>,
    ) -> Subscriber {
        let sub = Subscriber {
            measured: std::array::from_fn(|_| RwSignal::new(Measured::default())),
            alive: StoredValue::new_local(Rc::new(Cell::new(true))),
        };
        let alive = sub.alive.get_value();
        // Where the feed is now: only news counts.
        {
            let alive = alive.clone();
            leptos::task::spawn_local(async move {
                let Ok(a) = api::exchange(&rec, Method::GET, "/api/lab/changes", None).await else { return };
                let Ok(c) = serde_json::from_str::<Changes>(&a.text) else { return };
                let m = sub.measured;
                follow_sse(rec, m[2], c.latest, alive.clone());
                // Short polling (every period) and long polling (a request always waiting).
                leptos::task::spawn_local(poll(rec, m[0], c.latest, None, poll_ms, running, alive.clone()));
                leptos::task::spawn_local(poll(
                    rec,
                    m[1],
                    c.latest,
                    Some(25),
                    poll_ms,
                    running,
                    alive.clone(),
                ));
            });
        }
        // WebSocket: room `lab` on /ws/events.
        let m = sub.measured;
        let socket = Socket::connect(rec, protocol::EVENTS_PATH, move |s, ev| match ev {
            SocketEvent::Open => {
                m[3].update(|x| x.requests += 1);
                if let Ok(t) = serde_json::to_string(&ClientMsg::Join { room: "lab".into() }) {
                    let _ = s.send_text(&t);
                }
            }
            SocketEvent::Text(text) => match serde_json::from_str::<ServerEnvelope>(&text) {
                Ok(ServerEnvelope { msg: ServerMsg::LabChanged(c), .. }) => {
                    m[3].update(|x| x.received(&[c.at_us], server_now(rec), text.len()));
                }
                Ok(ServerEnvelope { msg: ServerMsg::LabReport(r), .. }) => report.set(Some(r)),
                _ => {}
            },
            _ => {}
        });
        let socket = StoredValue::new_local(socket.ok());
        let flag = sub.alive;
        on_cleanup(move || {
            flag.get_value().set(false);
            if let Some(s) = socket.get_value() {
                s.close(1000, "lab page closed");
            }
        });
        sub
    }
}
