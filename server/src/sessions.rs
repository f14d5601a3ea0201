//! Recorded sessions of the event log: listed, read back for replay, and exported whole
//! (streamed from the database, never loaded at once).
//! (Renaming and deleting them is for the instructor: see [`crate::instructor`].)

use std::collections::HashMap;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use export::Format;
use export::merge::{Merger, Observations};
use serde::Deserialize;

use crate::access::{InstructorToken, is_instructor};
use crate::board::Boards;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathText, QueryText, from_object};
use crate::identity::{Clients, valid_client_id};
use crate::log::db::LogDb;
use crate::log::{EventLog, SessionInfo};
use crate::secrets::Secrets;
use crate::serve::Listening;

/// What the session routes need: the log, the board (a cluster's sessions), and what names
/// and scrubs their exports.
#[derive(Clone)]
pub struct Ctx {
    pub log: Arc<EventLog>,
    pub board: Arc<Boards>,
    pub clients: Arc<Clients>,
    pub secrets: Arc<Secrets>,
    pub listening: Listening,
    pub token: InstructorToken,
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// What the instructor may change of a recorded session.
#[derive(Debug, Clone)]
pub enum Change {
    Rename(String),
    Publish(bool),
    Delete,
}

/// Where recorded sessions are kept: the embedded log's database ([`InDatabase`]), or a
/// cluster's board and event stream ([`InCluster`]). The session routes and the instructor's
/// use only this.
pub trait Recorded: Send + Sync {
    /// The session being recorded.
    fn current(&self) -> u64;
    /// Every session, newest first (complete: what was recorded so far is in it).
    fn list(&self) -> Fut<'_, Vec<SessionInfo>>;
    /// A page of session `id`'s events after `after` (exclusive), oldest first, as (`seq`,
    /// JSON); empty at the end.
    fn page(&self, id: u64, after: u64) -> Fut<'_, Vec<(u64, String)>>;
    /// Ends the session being recorded and starts `name`; answers its id.
    fn start(&self, name: String) -> Fut<'_, u64>;
    /// Renames, publishes or deletes session `id`; false when there is no such session.
    fn change(&self, id: u64, change: Change) -> Fut<'_, bool>;
}

/// Where this server's sessions are: with `--no-capture` nowhere, and every session route
/// (these and the instructor's) answers 409.
pub fn recorded(log: &Arc<EventLog>, board: &Arc<Boards>) -> Result<Arc<dyn Recorded>, ApiError> {
    if !log.is_recording() {
        Err(capture_off())
    } else if log.is_shared() {
        Ok(Arc::new(InCluster { log: log.clone(), board: board.clone() }))
    } else {
        Ok(Arc::new(InDatabase { log: log.clone() }))
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Runs `f` on the log on a blocking thread (the database is read and written there).
async fn blocking<T: Send + 'static>(
    log: &Arc<EventLog>,
    f: impl FnOnce(&EventLog) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || f(&log)).await.map_err(internal)?
}

/// One server's sessions: in its event database, written by the log's writer thread.
pub struct InDatabase {
    log: Arc<EventLog>,
}

impl Recorded for InDatabase {
    fn current(&self) -> u64 {
        self.log.session()
    }

    fn list(&self) -> Fut<'_, Vec<SessionInfo>> {
        Box::pin(blocking(&self.log, |log| {
            log.flush();
            Ok(log.db().map(LogDb::sessions).transpose().map_err(internal)?.unwrap_or_default())
        }))
    }

    fn page(&self, id: u64, after: u64) -> Fut<'_, Vec<(u64, String)>> {
        Box::pin(blocking(&self.log, move |log| match log.db() {
            Some(db) => db.session_page(id, after, EXPORT_PAGE).map_err(internal),
            None => Ok(Vec::new()),
        }))
    }

    fn start(&self, name: String) -> Fut<'_, u64> {
        Box::pin(blocking(&self.log, move |log| match log.new_session(&name) {
            Some(r) => r.map_err(internal),
            None => Err(internal("the event log's writer is gone")),
        }))
    }

    fn change(&self, id: u64, change: Change) -> Fut<'_, bool> {
        use crate::log::db::Command;
        Box::pin(blocking(&self.log, move |log| {
            let done = log.command(move |reply| match change {
                Change::Rename(name) => Command::Rename { id, name, reply },
                Change::Publish(published) => Command::Publish { id, published, reply },
                Change::Delete => Command::Delete { id, reply },
            });
            match done {
                Some(r) => r.map_err(internal),
                None => Ok(false),
            }
        }))
    }
}

/// Events read from a cluster's stream per page of a session.
const STREAM_PAGE: usize = 1000;

/// A cluster's sessions: listed on the room's board (so every replica knows where the one
/// being recorded began), each a span of the event stream, read from there.
pub struct InCluster {
    log: Arc<EventLog>,
    board: Arc<Boards>,
}

impl InCluster {
    fn info(&self, s: &crate::board::Session) -> SessionInfo {
        let last = s.last_seq.unwrap_or_else(|| self.log.latest_seq());
        let events = (last + 1).saturating_sub(s.first_seq);
        SessionInfo {
            id: s.id,
            name: s.name.clone(),
            started_us: s.started_us,
            ended_us: s.ended_us,
            events,
            first_seq: (events > 0).then_some(s.first_seq),
            last_seq: (events > 0).then_some(last),
            published: s.published,
        }
    }
}

impl Recorded for InCluster {
    fn current(&self) -> u64 {
        self.board.read(|b| b.current_session().map_or(0, |s| s.id))
    }

    fn list(&self) -> Fut<'_, Vec<SessionInfo>> {
        let board = self.board.now();
        let list = board.sessions.iter().rev().map(|s| self.info(s)).collect();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn page(&self, id: u64, after: u64) -> Fut<'_, Vec<(u64, String)>> {
        Box::pin(async move {
            let Some(s) = self.board.read(|b| b.sessions.iter().find(|s| s.id == id).cloned()) else {
                return Ok(Vec::new());
            };
            let last = s.last_seq.unwrap_or_else(|| self.log.latest_seq());
            let after = after.max(s.first_seq.saturating_sub(1));
            if after >= last {
                return Ok(Vec::new());
            }
            let page = self.log.read_stream(after, last + 1, STREAM_PAGE).await.map_err(internal)?;
            // Nothing came though the span goes on: the rest is gone only if the stream's size
            // cap pushed it out; else the stream did not answer, and the read fails (an export
            // cut short fails instead of looking complete).
            if page.is_empty() && self.log.stream_oldest().await.map_err(internal)? <= last {
                return Err(internal(format!(
                    "the cluster's stream did not answer for events after {after}"
                )));
            }
            Ok(page)
        })
    }

    fn start(&self, name: String) -> Fut<'_, u64> {
        Box::pin(async move {
            let first = self.log.latest_seq() + 1;
            let now = crate::clock::now_us();
            let id = self.board.update(|b| b.start_session(&name, first, now)).await?;
            self.log.follow_session(id, first);
            Ok(id)
        })
    }

    fn change(&self, id: u64, change: Change) -> Fut<'_, bool> {
        Box::pin(async move {
            let gone = self
                .board
                .update(|b| {
                    let i = b.sessions.iter().position(|s| s.id == id)?;
                    match &change {
                        Change::Rename(name) => b.sessions[i].name.clone_from(name),
                        Change::Publish(published) => b.sessions[i].published = *published,
                        Change::Delete => return Some(Some(b.sessions.remove(i))),
                    }
                    Some(None)
                })
                .await?;
            match gone {
                None => Ok(false),
                Some(None) => Ok(true),
                Some(Some(session)) => {
                    // Its events go from the stream too (in the background: one by one).
                    if let Some(last) = session.last_seq {
                        self.log.forget_stream(session.first_seq, last);
                    }
                    Ok(true)
                }
            }
        })
    }
}

/// The sessions, once session `id` is known to exist and this request may read it: the
/// session being recorded is everyone's (every screen watches it live); an earlier one is the
/// instructor's until published.
async fn readable(state: &Ctx, headers: &HeaderMap, id: u64) -> Result<Arc<dyn Recorded>, ApiError> {
    let recorded = recorded(&state.log, &state.board)?;
    let found = recorded.list().await?.into_iter().find(|s| s.id == id);
    let Some(info) = found else { return Err(ApiError::NotFound(format!("no session {id}"))) };
    if info.published || id == recorded.current() || is_instructor(headers, &state.token) {
        Ok(recorded)
    } else {
        Err(ApiError::Private(format!(
            "session {id} is the instructor's until the instructor publishes it for replay"
        )))
    }
}

/// A session id from a path: an integer, else 422.
pub fn session_id(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::Validation([("id".to_owned(), "must be an integer".to_owned())].into()))
}

/// The answer of every session route when the server records nothing.
fn capture_off() -> ApiError {
    ApiError::Conflict(
        "capture is off: this server was started with --no-capture and records no sessions".to_owned(),
    )
}

/// Recorded sessions: listed, read back, exported.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/api/sessions", get(list))
        .route("/api/sessions/{id}/events", get(events))
        .route("/api/sessions/{id}/export", get(export).post(export_with))
}

/// Recorded sessions, newest first: the one being recorded and those the instructor published
/// (with the instructor's token: all of them).
#[utoipa::path(get, path = "/api/sessions", tag = "server", operation_id = "listSessions",
    responses(
        (status = 200, description = "Sessions, newest first", body = Vec<Object>),
        (status = 409, description = "Capture is off (`--no-capture`): no sessions are recorded", body = crate::error::ErrorBody),
    ))]
pub async fn list(State(state): State<Ctx>, headers: HeaderMap) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let recorded = recorded(&state.log, &state.board)?;
    let all = is_instructor(&headers, &state.token);
    let current = recorded.current();
    let list = recorded.list().await?.into_iter().filter(|s| all || s.published || s.id == current).collect();
    Ok(Json(list))
}

/// A session's events, in `seq` order, as a JSON array (flushed first, so it is complete).
#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "server", operation_id = "sessionEvents",
    params(("id" = u64, Path, description = "The session's id", minimum = 0)),
    responses(
        (status = 200, description = "The session's events", body = Vec<Object>),
        (status = 403, description = "An earlier session the instructor has not published", body = crate::error::ErrorBody),
        (status = 404, description = "No such session", body = crate::error::ErrorBody),
        (status = 409, description = "Capture is off (`--no-capture`): no sessions are recorded", body = crate::error::ErrorBody),
        (status = 422, description = "The id is not an integer", body = crate::error::ValidationFailed),
    ))]
pub async fn events(
    State(state): State<Ctx>,
    headers: HeaderMap,
    PathText(p): PathText,
) -> Result<impl IntoResponse, ApiError> {
    let id = session_id(&p[0])?;
    let recorded = readable(&state, &headers, id).await?;
    // Streamed page by page (never the whole session in memory), up to what was recorded
    // when it was asked for: `[`, each page's events, `]`.
    let upto = state.log.latest_seq();
    let stream = futures_util::stream::unfold(Some((0u64, true)), move |at| {
        let recorded = recorded.clone();
        async move {
            let (after, first) = at?;
            let mut page = match recorded.page(id, after).await {
                Ok(page) => page,
                Err(e) => return Some((Err(std::io::Error::other(format!("{e:?}"))), None)),
            };
            page.retain(|(seq, _)| *seq <= upto);
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                let end = if first { "[]" } else { "]" };
                return Some((Ok(bytes::Bytes::from_static(end.as_bytes())), None));
            };
            let mut out = String::from(if first { "[" } else { "," });
            for (i, (_, line)) in page.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(line);
            }
            Some((Ok(bytes::Bytes::from(out)), Some((last, false))))
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(stream)))
}

/// Chunks read from the database per page of an export.
const EXPORT_PAGE: usize = 4;
/// Pieces of an export waiting for the network (each about one page).
const EXPORT_QUEUE: usize = 4;

/// What a browser adds to the server's record when it exports (`POST`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExportBody {
    /// The exporting browser's client id (its lane is named by its nickname, else "You").
    #[serde(default)]
    me: Option<String>,
    #[serde(default)]
    observations: Observations,
}

/// Which session and format an export request names.
fn export_target(state: &Ctx, id: &str, q: &HashMap<String, String>) -> Result<(u64, Format), ApiError> {
    let mut problems = std::collections::BTreeMap::new();
    let session = if id == "current" {
        Some(recorded(&state.log, &state.board)?.current())
    } else {
        let n = id.parse::<u64>().ok();
        if n.is_none() {
            problems.insert("id".to_owned(), "must be an integer or `current`".to_owned());
        }
        n
    };
    let format = match q.get("format") {
        None => Some(Format::Trace),
        Some(f) => Format::parse(f),
    };
    if format.is_none() {
        problems.insert("format".to_owned(), "must be trace, har or mermaid".to_owned());
    }
    if q.get("me").is_some_and(|m| !valid_client_id(m)) {
        problems.insert("me".to_owned(), "must be a client id (1-64 of A-Z a-z 0-9 - _)".to_owned());
    }
    match (session, format) {
        (Some(s), Some(f)) if problems.is_empty() => Ok((s, f)),
        _ => Err(ApiError::Validation(problems)),
    }
}

/// A whole session as a file, from the log (flushed first), streamed page by page: a JSON
/// trace (replayable), HAR 1.2 or Mermaid text, whichever screen asks.
#[utoipa::path(get, path = "/api/sessions/{id}/export", tag = "server", operation_id = "exportSession",
    params(
        ("id" = String, Path, description = "The session's id, or `current`"),
        ("format" = Option<String>, Query, description = "`trace` (default), `har` or `mermaid`"),
        ("me" = Option<String>, Query, description = "The exporting browser's client id"),
    ),
    responses(
        (status = 200, description = "The session as a file (an attachment): JSON for `trace` and `har`, text for `mermaid`",
            content((Object = "application/json"), (String = "text/plain"))),
        (status = 403, description = "An earlier session the instructor has not published", body = crate::error::ErrorBody),
        (status = 404, description = "No such session", body = crate::error::ErrorBody),
        (status = 409, description = "Capture is off (`--no-capture`): no sessions are recorded", body = crate::error::ErrorBody),
        (status = 422, description = "The id, format or client id is not valid", body = crate::error::ValidationFailed),
    ))]
pub async fn export(
    State(state): State<Ctx>,
    headers: HeaderMap,
    PathText(p): PathText,
    QueryText(q): QueryText,
) -> Result<Response, ApiError> {
    let (session, format) = export_target(&state, &p[0], &q)?;
    let recorded = readable(&state, &headers, session).await?;
    let me = q.get("me").cloned().unwrap_or_default();
    stream_export(state, recorded, session, format, me, Observations::default()).await
}

/// The same, with what only this browser saw merged in: its own send and receive times and
/// its failures (`{"me": ID, "observations": {"clientTimes": [[SEQ, US]…], "local": […]}}`).
#[utoipa::path(post, path = "/api/sessions/{id}/export", tag = "server", operation_id = "exportSessionWithObservations",
    params(
        ("id" = String, Path, description = "The session's id, or `current`"),
        ("format" = Option<String>, Query, description = "`trace` (default), `har` or `mermaid`"),
    ),
    request_body(content = Object, example = json!({"me": "c-ana", "observations": {"clientTimes": [[12, 1795473064000000_i64]], "local": []}})),
    responses(
        (status = 200, description = "The session as a file (an attachment): JSON for `trace` and `har`, text for `mermaid`",
            content((Object = "application/json"), (String = "text/plain"))),
        (status = 400, description = "Malformed JSON", body = crate::error::InvalidParameters),
        (status = 403, description = "An earlier session the instructor has not published", body = crate::error::ErrorBody),
        (status = 404, description = "No such session", body = crate::error::ErrorBody),
        (status = 409, description = "Capture is off (`--no-capture`): no sessions are recorded", body = crate::error::ErrorBody),
        (status = 422, description = "The id, format, client id or observations are not valid", body = crate::error::ValidationFailed),
    ))]
pub async fn export_with(
    State(state): State<Ctx>,
    headers: HeaderMap,
    PathText(p): PathText,
    QueryText(q): QueryText,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (session, format) = export_target(&state, &p[0], &q)?;
    let body: ExportBody = from_object(body)?;
    let me = body.me.unwrap_or_default();
    if !me.is_empty() && !valid_client_id(&me) {
        return Err(ApiError::Validation([("me".to_owned(), "must be a client id".to_owned())].into()));
    }
    let recorded = readable(&state, &headers, session).await?;
    stream_export(state, recorded, session, format, me, body.observations).await
}

/// Exports being written at once; more wait their turn.
const EXPORTS_AT_ONCE: usize = 4;
/// How long a download may stop reading before the export gives up on it.
const STALLED: std::time::Duration = std::time::Duration::from_secs(30);

async fn stream_export(
    state: Ctx,
    recorded: Arc<dyn Recorded>,
    session: u64,
    format: Format,
    me: String,
    mut observations: Observations,
) -> Result<Response, ApiError> {
    // What a browser saw is about the session it watches: the current one. Whatever it sent
    // is scrubbed like everything the server records (a request typed on the API page that
    // never arrived may carry the token).
    if session != recorded.current() {
        observations = Observations::default();
    }
    for l in &mut observations.local {
        if let Ok(json) = serde_json::to_string(&l.event)
            && let Ok(clean) = serde_json::from_str(&state.secrets.scrub(&json))
        {
            l.event = clean;
        }
    }
    let upto = state.log.latest_seq();
    // The export's own request is in the log too; it is not part of what is exported.
    let own = crate::cause::current();
    let mut names = export::Names::default();
    for c in state.clients.roster() {
        names.set(&c.client, c.info);
    }
    let origin = state.listening.get().map(|a| format!("http://{a}")).unwrap_or_default();
    let ctx = export::Context { me, names, origin };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(EXPORT_QUEUE);
    let pages = Pages { recorded, session, upto, own };
    tokio::spawn(async move {
        static AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EXPORTS_AT_ONCE);
        let Ok(_turn) = AT_ONCE.acquire().await else { return };
        let cast = if format.two_passes() {
            let mut cast = export::mermaid::Cast::new(ctx.names.clone());
            for l in &observations.local {
                cast.see(&l.event);
            }
            let mut after = 0;
            loop {
                match pages.next(after).await {
                    Ok(Some((last, events))) => {
                        events.iter().for_each(|e| cast.see(e));
                        after = last;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                }
            }
            Some(cast)
        } else {
            None
        };
        let (mut merger, _dropped) = Merger::new(observations);
        let mut writer = export::writer(format, &ctx, cast.as_ref());
        let mut out = String::new();
        let mut batch = Vec::new();
        writer.begin(&mut out);
        let mut after = 0;
        loop {
            match pages.next(after).await {
                Ok(Some((last, events))) => {
                    for e in events {
                        merger.next(e, &mut batch);
                        for e in batch.drain(..) {
                            writer.event(&e, &mut out);
                        }
                    }
                    after = last;
                    // A reader that stops reading is given up on, not waited for forever.
                    let piece = std::mem::take(&mut out);
                    if tokio::time::timeout(STALLED, tx.send(Ok(piece))).await.map_or(true, |r| r.is_err()) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The file is cut short: the download fails instead of looking complete.
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            }
        }
        merger.rest(&mut batch);
        for e in batch.drain(..) {
            writer.event(&e, &mut out);
        }
        writer.end(&mut out);
        let _ = tokio::time::timeout(STALLED, tx.send(Ok(out))).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let file = format!("wirescope-session-{session}.{}", format.extension());
    Ok((
        [
            (header::CONTENT_TYPE, format.mime().to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// A session's events up to `upto`, read a page at a time (from the database on a blocking
/// thread, or from a cluster's stream), never holding either while the network waits.
struct Pages {
    recorded: Arc<dyn Recorded>,
    session: u64,
    upto: u64,
    own: Option<u64>,
}

impl Pages {
    /// The events after `after` on the next page, and the last `seq` read; `None` at the end.
    async fn next(&self, after: u64) -> Result<Option<(u64, Vec<protocol::Event>)>, String> {
        let page = self.recorded.page(self.session, after).await.map_err(|e| format!("{e:?}"))?;
        let Some(last) = page.last().map(|(s, _)| *s).filter(|_| after < self.upto) else { return Ok(None) };
        let events = page
            .into_iter()
            .filter(|(seq, _)| *seq <= self.upto)
            .filter_map(|(_, line)| serde_json::from_str::<protocol::Event>(&line).ok())
            .filter(|e| Some(e.exchange) != self.own)
            .collect();
        Ok(Some((last, events)))
    }
}
