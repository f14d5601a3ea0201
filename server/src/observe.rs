//! `/ws/observe`: the event log as a stream, for every screen that draws it.
//!
//! On connect: `hello`, then the events after `since` (default: the most recent ones) of the
//! current session (an earlier one is read through `/api/sessions`, the instructor's until
//! published), then
//! every new event as it is recorded, in `seq` order, without gaps or duplicates. Events are
//! sent in batches (`events`), as many as are waiting. An observer that falls behind the live
//! stream by more than its queue gets `lagged` and is caught up from the log (memory, then
//! disk); nobody else waits for it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::get;
use protocol::{ObserverCmd, ObserverMsg};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::extract::QueryText;
use crate::identity::{Clients, valid_client_id};
use crate::ids::Identified;
use crate::log::{Entry, EventLog};
use crate::paths::OBSERVE_PATH;
use crate::shutdown::Shutdown;
use crate::ws::{Message, WebSocket, WebSocketUpgrade};

/// What an observer's stream needs: the log, the client registry (names), the stop signal.
#[derive(Clone)]
pub struct Ctx {
    pub log: Arc<EventLog>,
    pub clients: Arc<Clients>,
    pub shutdown: Shutdown,
    /// The ids the server issues: a lane is renamed only by the id that named it.
    pub issuer: Arc<crate::ids::Issuer>,
}

/// `/ws/observe`.
pub fn routes() -> Router<Ctx> {
    Router::new().route(OBSERVE_PATH, get(upgrade))
}

/// Events sent to a new observer that gives no `since`.
pub const SNAPSHOT: u64 = 500;
/// Most events in one `events` message.
const BATCH: usize = 512;
/// When events are arriving in a burst, how long an observer waits to send them together.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(3);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Ctx>,
    QueryText(q): QueryText,
    who: Identified,
) -> Response {
    let client = q.get("client").filter(|c| valid_client_id(c)).cloned();
    let nick = q.get("nick").cloned();
    let since = q.get("since").and_then(|s| s.parse::<u64>().ok());
    state.log.start_presence_ticker();
    // Who this is (the id the server issued it, or a new one), for naming its lane.
    let key = who.key.clone();
    let res = ws.small_buffers().on_upgrade(move |socket| async move {
        let log = state.log.clone();
        log.observer_joined();
        // The name the page remembered, given again on (re)connect: refused quietly when the
        // instructor set another one, another client named the lane, or the client renamed
        // itself too often.
        if let (Some(c), Some(n)) = (&client, &nick) {
            let _ = state.clients.rename_by_client(&log, c, n, &key);
        }
        follow(socket, &state, client, &key, since).await;
        log.observer_left();
    });
    who.hand_over(res)
}

impl FromRef<Ctx> for Arc<crate::ids::Issuer> {
    fn from_ref(ctx: &Ctx) -> Self {
        ctx.issuer.clone()
    }
}

/// `{"type":"events","events":[…]}` from already-serialized events.
fn events_message<'a>(jsons: impl Iterator<Item = &'a str>) -> Message {
    let mut s = String::from(r#"{"type":"events","events":["#);
    for (i, j) in jsons.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(j);
    }
    s.push_str("]}");
    Message::text(s)
}

fn control(msg: &ObserverMsg) -> Message {
    Message::text(serde_json::to_string(msg).unwrap_or_default())
}

/// Sends everything after `*last` that the log holds (disk first, then memory).
async fn catch_up(socket: &mut WebSocket, log: &Arc<EventLog>, last: &mut u64) -> Result<(), ()> {
    let since = log.since(*last);
    if let Some((after, before)) = since.from_disk {
        let mut cursor = after;
        loop {
            let rows = log.between(cursor, before, 2000).await;
            if let Some((first, _)) = rows.first()
                && *first > cursor + 1
            {
                socket
                    .send(control(&ObserverMsg::Gap { from: cursor + 1, to: first - 1 }))
                    .await
                    .map_err(drop)?;
            }
            let Some((newest, _)) = rows.last().map(|(s, _)| (*s, ())) else { break };
            for chunk in rows.chunks(BATCH) {
                socket.feed(events_message(chunk.iter().map(|(_, j)| j.as_str()))).await.map_err(drop)?;
            }
            socket.flush().await.map_err(drop)?;
            cursor = newest;
        }
        if cursor + 1 < before {
            socket
                .send(control(&ObserverMsg::Gap { from: cursor + 1, to: before - 1 }))
                .await
                .map_err(drop)?;
        }
        *last = (*last).max(before - 1);
    } else if let Some(first) = since.entries.first()
        && first.seq > *last + 1
        && *last > 0
    {
        socket.send(control(&ObserverMsg::Gap { from: *last + 1, to: first.seq - 1 })).await.map_err(drop)?;
    }
    let fresh: Vec<&Arc<Entry>> = since.entries.iter().filter(|e| e.seq > *last).collect();
    for chunk in fresh.chunks(BATCH) {
        socket.feed(events_message(chunk.iter().map(|e| &*e.json))).await.map_err(drop)?;
    }
    socket.flush().await.map_err(drop)?;
    *last = (*last).max(since.latest);
    Ok(())
}

async fn follow(mut socket: WebSocket, state: &Ctx, client: Option<String>, key: &str, since: Option<u64>) {
    let log = state.log.clone();
    // Subscribe first: whatever is recorded from now on is either in the catch-up or in `rx`.
    let mut rx = log.subscribe();
    let latest = log.latest_seq();
    let mut last = since.map_or_else(|| latest.saturating_sub(SNAPSHOT), |s| s.min(latest));
    // Only the current session: an earlier one is the instructor's until published.
    last = last.max(log.session_first_seq().saturating_sub(1));
    let hello = ObserverMsg::Hello {
        version: protocol::PROTOCOL_VERSION,
        server_time_us: crate::clock::now_us(),
        latest_seq: latest,
        oldest_seq: log.oldest_in_memory(),
        unpersisted: log.unpersisted(),
        session: log.session(),
    };
    let roster = ObserverMsg::Clients { clients: state.clients.roster() };
    if socket.send(control(&hello)).await.is_err()
        || socket.send(control(&roster)).await.is_err()
        || catch_up(&mut socket, &log, &mut last).await.is_err()
    {
        return;
    }
    let mut batch: Vec<Arc<Entry>> = Vec::with_capacity(64);
    let shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            () = shutdown.wait() => {
                socket.close(1001, "server shutting down").await;
                return;
            }
            got = rx.recv() => {
                let mut lagged = false;
                match got {
                    Ok(e) => batch.push(e),
                    Err(RecvError::Lagged(_)) => lagged = true,
                    Err(RecvError::Closed) => return,
                }
                // Take what else is waiting; when events come fast, wait a moment for more,
                // so a burst goes out as one message instead of one message per event.
                for pass in 0..2 {
                    while !lagged && batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(TryRecvError::Lagged(_)) => lagged = true,
                            Err(_) => break,
                        }
                    }
                    if pass == 0 && batch.len() > 1 && batch.len() < BATCH && !lagged {
                        tokio::time::sleep(COALESCE).await;
                    } else {
                        break;
                    }
                }
                batch.retain(|e| e.seq > last);
                if !batch.is_empty() {
                    if socket.send(events_message(batch.iter().map(|e| &*e.json))).await.is_err() {
                        return;
                    }
                    last = batch.last().map_or(last, |e| e.seq);
                    batch.clear();
                }
                if lagged {
                    rx = rx.resubscribe();
                    if socket.send(control(&ObserverMsg::Lagged { resync_from: last })).await.is_err()
                        || catch_up(&mut socket, &log, &mut last).await.is_err()
                    {
                        return;
                    }
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ObserverCmd>(&t) {
                    Ok(ObserverCmd::Clock { client_time_us }) => {
                        let reply = ObserverMsg::Clock { client_time_us, server_time_us: crate::clock::now_us() };
                        if socket.send(control(&reply)).await.is_err() {
                            return;
                        }
                    }
                    Ok(ObserverCmd::Nickname { nickname }) => {
                        let refused = match &client {
                            Some(c) => state.clients.rename_by_client(&log, c, &nickname, key).err().map(|r| r.to_string()),
                            None => Some("connect with ?client=ID to have a nickname".to_owned()),
                        };
                        if let Some(message) = refused
                            && socket.send(control(&ObserverMsg::Error { message })).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let message = format!("unreadable command: {e}");
                        if socket.send(control(&ObserverMsg::Error { message })).await.is_err() {
                            return;
                        }
                    }
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    socket.fail(&e).await;
                    return;
                }
                None => return,
            },
        }
    }
}
