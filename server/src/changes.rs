//! The transcripts' change feed, and the same feed served three ways besides WebSocket:
//! short polling (`GET /api/changes?since=SEQ`), long polling (`…&wait=SECONDS`) and
//! Server-Sent Events (`GET /api/changes/stream`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use protocol::StudentId;
use protocol::channel::{Change, ChangeKind};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::extract::QueryText;
use crate::shutdown::Shutdown;

/// What the change feed's routes need.
#[derive(Clone)]
pub struct Ctx {
    pub feed: Arc<ChangeFeed>,
    pub shutdown: Shutdown,
}

/// The transcripts' change feed, pulled (`/api/changes`) and pushed (`/api/changes/stream`).
pub fn routes() -> Router<Ctx> {
    Router::new().route("/api/changes", get(get_changes)).route("/api/changes/stream", get(stream_changes))
}

/// Changes kept in memory for pollers that come back.
pub const KEEP: usize = 1000;
/// Longest long-poll wait, in seconds.
pub const MAX_WAIT: u64 = 25;

/// A feed of changes: numbered, kept (the last [`KEEP`]), and broadcast.
pub struct ChangeFeed {
    inner: Mutex<(u64, VecDeque<Change>)>,
    tx: broadcast::Sender<Change>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self { inner: Mutex::new((1, VecDeque::new())), tx: broadcast::channel(1024).0 }
    }
}

/// Body of `GET /api/changes`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<Change>,
    /// The newest change's `seq` (0 when there is none): pass it as `since` next time.
    pub latest: u64,
}

impl ChangeFeed {
    /// A feed that goes on from a durable one: `recent` (oldest first) kept, and numbering on
    /// after `latest`. New changes come numbered, through [`ChangeFeed::announce`].
    pub fn resume(recent: Vec<Change>, latest: u64) -> Self {
        let mut kept: VecDeque<Change> = recent.into();
        while kept.len() > KEEP {
            kept.pop_front();
        }
        Self { inner: Mutex::new((latest + 1, kept)), tx: broadcast::channel(1024).0 }
    }

    /// Keeps a change numbered elsewhere (the store's outbox), in order, and tells every
    /// subscriber; a change it has already announced (or an older one) is ignored, so a
    /// change that arrives twice is announced once.
    pub fn announce(&self, change: Change) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if change.seq < inner.0 {
            return;
        }
        inner.0 = change.seq + 1;
        inner.1.push_back(change.clone());
        if inner.1.len() > KEEP {
            inner.1.pop_front();
        }
        let _ = self.tx.send(change);
    }

    /// Numbers a change itself (a feed kept in memory only: the lab's), keeps it and tells
    /// every subscriber.
    pub fn publish(
        &self,
        kind: ChangeKind,
        student_id: StudentId,
        course: Option<String>,
        cause: Option<u64>,
    ) -> Change {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let change = Change { seq: inner.0, kind, student_id, course, at_us: crate::clock::now_us(), cause };
        inner.0 += 1;
        inner.1.push_back(change.clone());
        if inner.1.len() > KEEP {
            inner.1.pop_front();
        }
        let _ = self.tx.send(change.clone());
        change
    }

    /// Changes after `since` (exclusive), and the newest `seq`.
    pub fn since(&self, since: u64) -> Changes {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Changes { changes: inner.1.iter().filter(|c| c.seq > since).cloned().collect(), latest: inner.0 - 1 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Changes after `since`, waiting up to `wait` for the first one when there is none yet.
    pub async fn wait_since(&self, since: u64, wait: Duration) -> Changes {
        let mut rx = self.subscribe();
        let now = self.since(since);
        if !now.changes.is_empty() || wait.is_zero() {
            return now;
        }
        let _ = tokio::time::timeout(wait, async {
            loop {
                match rx.recv().await {
                    Ok(c) if c.seq > since => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
        self.since(since)
    }
}

/// Parses `since` and `wait` (both optional; `wait` capped at [`MAX_WAIT`]).
pub fn poll_params(q: &std::collections::HashMap<String, String>) -> Result<(u64, Duration), ApiError> {
    let mut problems = std::collections::BTreeMap::new();
    let since = match q.get("since").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            problems.insert("since".to_owned(), "must be a non-negative integer".to_owned());
            0
        }
    };
    let wait = match q.get("wait").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(w)) if w <= MAX_WAIT => w,
        Some(_) => {
            problems.insert("wait".to_owned(), format!("must be an integer from 0 to {MAX_WAIT}"));
            0
        }
    };
    if problems.is_empty() {
        Ok((since, Duration::from_secs(wait)))
    } else {
        Err(ApiError::Validation(problems))
    }
}

/// Short or long polling of a feed.
/// A long poll ends early (with what there is) when the server stops.
pub async fn poll(
    feed: &ChangeFeed,
    q: &std::collections::HashMap<String, String>,
    shutdown: &Shutdown,
) -> Result<Json<Changes>, ApiError> {
    let (since, wait) = poll_params(q)?;
    tokio::select! {
        changes = feed.wait_since(since, wait) => Ok(Json(changes)),
        () = shutdown.wait() => Ok(Json(feed.since(since))),
    }
}

/// The SSE stream of a feed: replays what came after `since` (or `Last-Event-ID`), then every
/// new change; a comment every 15 s keeps proxies from closing it. It ends when the server
/// stops (an EventSource then reconnects with `Last-Event-ID` to the next server).
pub fn stream(
    feed: &ChangeFeed,
    since: u64,
    event_name: &'static str,
    shutdown: Shutdown,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
    let rx = feed.subscribe();
    let backlog = feed.since(since).changes;
    let first_live = backlog.last().map_or(since, |c| c.seq);
    let to_event = move |c: &Change| {
        SseEvent::default()
            .id(c.seq.to_string())
            .event(event_name)
            .data(serde_json::to_string(c).unwrap_or_default())
    };
    let replay = futures_util::stream::iter(backlog.iter().map(to_event).map(Ok).collect::<Vec<_>>());
    let live = futures_util::stream::unfold((rx, first_live), move |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                Ok(c) if c.seq > last => {
                    let seq = c.seq;
                    return Some((Ok(to_event(&c)), (rx, seq)));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let live = futures_util::StreamExt::take_until(live, async move { shutdown.wait().await });
    Sse::new(futures_util::StreamExt::chain(replay, live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `since` for a stream: the query's, else the `Last-Event-ID` a reconnecting EventSource sends.
pub fn stream_since(
    q: &std::collections::HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<u64, ApiError> {
    let (since, _) = poll_params(q)?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    Ok(last.unwrap_or(since).max(since))
}

/// Changes of the transcripts after `since`; with `wait`, holds the request until the first one
/// (long polling) or until `wait` seconds passed.
#[utoipa::path(get, path = "/api/changes", tag = "changes", operation_id = "getChanges",
    params(
        ("since" = Option<u64>, Query, description = "Only changes after this seq (default 0)", minimum = 0),
        ("wait" = Option<u64>, Query, description = "Long polling: wait up to this many seconds for a change", minimum = 0, maximum = 25),
    ),
    responses(
        (status = 200, description = "The changes after `since` (maybe none) and the newest seq", body = Changes),
        (status = 422, description = "`since` or `wait` is not a valid number", body = crate::error::ValidationFailed),
    ))]
pub async fn get_changes(State(ctx): State<Ctx>, QueryText(q): QueryText) -> Result<Json<Changes>, ApiError> {
    poll(&ctx.feed, &q, &ctx.shutdown).await
}

/// The transcripts' changes as Server-Sent Events (`event: transcriptChanged`, `id: seq`).
#[utoipa::path(get, path = "/api/changes/stream", tag = "changes", operation_id = "streamChanges",
    params(("since" = Option<u64>, Query, description = "Replay the changes after this seq first", minimum = 0)),
    responses(
        (status = 200, description = "A text/event-stream of changes", content_type = "text/event-stream", body = String),
        (status = 422, description = "`since` is not a valid number", body = crate::error::ValidationFailed),
    ))]
pub async fn stream_changes(
    State(ctx): State<Ctx>,
    QueryText(q): QueryText,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let since = stream_since(&q, &headers)?;
    Ok(stream(&ctx.feed, since, "transcriptChanged", ctx.shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_numbered_kept_and_waited_for() {
        let feed = Arc::new(ChangeFeed::default());
        assert_eq!(feed.since(0).latest, 0);
        feed.publish(ChangeKind::StudentCreated, 5, None, Some(9));
        let c = feed.since(0);
        assert_eq!((c.latest, c.changes.len(), c.changes[0].cause), (1, 1, Some(9)));
        assert!(feed.since(1).changes.is_empty());
        // A long poll returns at the first change…
        let f = feed.clone();
        let waiter = tokio::spawn(async move { f.wait_since(1, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        feed.publish(ChangeKind::GradeAdded, 5, Some("Net".into()), None);
        let got = tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap();
        assert_eq!(got.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [2]);
        // …or when the wait is over, empty.
        let t = std::time::Instant::now();
        let none = feed.wait_since(2, Duration::from_millis(200)).await;
        assert!(none.changes.is_empty() && t.elapsed() >= Duration::from_millis(190));
    }

    #[test]
    fn poll_parameters_are_checked() {
        let q =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(poll_params(&q(&[])).unwrap(), (0, Duration::ZERO));
        assert_eq!(poll_params(&q(&[("since", "4"), ("wait", "3")])).unwrap(), (4, Duration::from_secs(3)));
        assert!(poll_params(&q(&[("since", "-1")])).is_err());
        assert!(poll_params(&q(&[("wait", "26")])).is_err());
    }
}
