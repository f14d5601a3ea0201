//! Recorded sessions of the event log: listed, read back for replay, and exported whole
//! (streamed from the database, never loaded at once).
//! (Renaming and deleting them is for the instructor: see [`crate::instructor`].)

use std::collections::HashMap;

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
use crate::error::ApiError;
use crate::extract::{JsonBody, PathText, QueryText, from_object};
use crate::identity::{Clients, valid_client_id};
use crate::log::{EventLog, SessionInfo};
use crate::secrets::Secrets;
use crate::serve::Listening;

/// What the session routes need: the log and what names and scrubs its exports.
#[derive(Clone)]
pub struct Ctx {
    pub log: Arc<EventLog>,
    pub clients: Arc<Clients>,
    pub secrets: Arc<Secrets>,
    pub listening: Listening,
    pub token: InstructorToken,
}

/// The log, if it records sessions: with `--no-capture` there are none, and every session
/// route (these and the instructor's) answers 409; so does a replica of a cluster, whose
/// events are the cluster's stream (sessions are not kept there yet), rather than answer an
/// empty list or an empty export.
pub fn recording(log: &Arc<EventLog>) -> Result<&Arc<EventLog>, ApiError> {
    if !log.is_recording() {
        Err(capture_off())
    } else if log.is_shared() {
        Err(ApiError::Conflict(
            "this server is a replica of a cluster: its events are the cluster's stream, where recorded \
             sessions and their exports are not kept yet (one server records them)"
                .to_owned(),
        ))
    } else {
        Ok(log)
    }
}

/// The log, once session `id` is known to exist and this request may read it: the session
/// being recorded is everyone's (every screen watches it live); an earlier one is the
/// instructor's until published (flushed first, so what is read is complete).
async fn readable(state: &Ctx, headers: &HeaderMap, id: u64) -> Result<Arc<EventLog>, ApiError> {
    let log = recording(&state.log)?.clone();
    let found = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            log.flush();
            log.db().map(|db| db.session(id)).transpose().map(Option::flatten)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let Some(info) = found else { return Err(ApiError::NotFound(format!("no session {id}"))) };
    if info.published || id == log.session() || is_instructor(headers, &state.token) {
        Ok(log)
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
        (status = 409, description = "Capture is off (`--no-capture`), or a replica of a cluster: no sessions are recorded", body = crate::error::ErrorBody),
    ))]
pub async fn list(State(state): State<Ctx>, headers: HeaderMap) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let log = recording(&state.log)?.clone();
    let all = is_instructor(&headers, &state.token);
    let current = log.session();
    let list = tokio::task::spawn_blocking(move || log.db().map(|db| db.sessions()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or_default()
        .into_iter()
        .filter(|s| all || s.published || s.id == current)
        .collect();
    Ok(Json(list))
}

/// A session's events, in `seq` order, as a JSON array (flushed first, so it is complete).
#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "server", operation_id = "sessionEvents",
    params(("id" = u64, Path, description = "The session's id", minimum = 0)),
    responses(
        (status = 200, description = "The session's events", body = Vec<Object>),
        (status = 403, description = "An earlier session the instructor has not published", body = crate::error::ErrorBody),
        (status = 404, description = "No such session", body = crate::error::ErrorBody),
        (status = 409, description = "Capture is off (`--no-capture`), or a replica of a cluster: no sessions are recorded", body = crate::error::ErrorBody),
        (status = 422, description = "The id is not an integer", body = crate::error::ValidationFailed),
    ))]
pub async fn events(
    State(state): State<Ctx>,
    headers: HeaderMap,
    PathText(p): PathText,
) -> Result<impl IntoResponse, ApiError> {
    let id = session_id(&p[0])?;
    let log = readable(&state, &headers, id).await?;
    // Streamed page by page (never the whole session in memory), up to what was recorded
    // when it was asked for: `[`, each page's events, `]`.
    let upto = log.latest_seq();
    let stream = futures_util::stream::unfold(Some((0u64, true)), move |at| {
        let log = log.clone();
        async move {
            let (after, first) = at?;
            let page = tokio::task::spawn_blocking(move || match log.db() {
                Some(db) => db.session_page(id, after, EXPORT_PAGE),
                None => Ok(Vec::new()),
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r.map_err(std::io::Error::other));
            let mut page = match page {
                Ok(page) => page,
                Err(e) => return Some((Err(e), None)),
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
        Some(recording(&state.log)?.session())
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
        (status = 409, description = "Capture is off (`--no-capture`), or a replica of a cluster: no sessions are recorded", body = crate::error::ErrorBody),
        (status = 422, description = "The id, format or client id is not valid", body = crate::error::ValidationFailed),
    ))]
pub async fn export(
    State(state): State<Ctx>,
    headers: HeaderMap,
    PathText(p): PathText,
    QueryText(q): QueryText,
) -> Result<Response, ApiError> {
    let (session, format) = export_target(&state, &p[0], &q)?;
    let log = readable(&state, &headers, session).await?;
    let me = q.get("me").cloned().unwrap_or_default();
    stream_export(state, log, session, format, me, Observations::default()).await
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
        (status = 409, description = "Capture is off (`--no-capture`), or a replica of a cluster: no sessions are recorded", body = crate::error::ErrorBody),
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
    let log = readable(&state, &headers, session).await?;
    stream_export(state, log, session, format, me, body.observations).await
}

/// Exports being written at once; more wait their turn.
const EXPORTS_AT_ONCE: usize = 4;
/// How long a download may stop reading before the export gives up on it.
const STALLED: std::time::Duration = std::time::Duration::from_secs(30);

async fn stream_export(
    state: Ctx,
    log: Arc<EventLog>,
    session: u64,
    format: Format,
    me: String,
    mut observations: Observations,
) -> Result<Response, ApiError> {
    // What a browser saw is about the session it watches: the current one. Whatever it sent
    // is scrubbed like everything the server records (a request typed on the API page that
    // never arrived may carry the token).
    if session != log.session() {
        observations = Observations::default();
    }
    for l in &mut observations.local {
        if let Ok(json) = serde_json::to_string(&l.event)
            && let Ok(clean) = serde_json::from_str(&state.secrets.scrub(&json))
        {
            l.event = clean;
        }
    }
    let upto = log.latest_seq();
    // The export's own request is in the log too; it is not part of what is exported.
    let own = crate::cause::current();
    let mut names = export::Names::default();
    for c in state.clients.roster() {
        names.set(&c.client, c.info);
    }
    let origin = state.listening.get().map(|a| format!("http://{a}")).unwrap_or_default();
    let ctx = export::Context { me, names, origin };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(EXPORT_QUEUE);
    let pages = Pages { log, session, upto, own };
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

/// A session's events up to `upto`, read from the database a page at a time (each read on a
/// blocking thread of its own, never holding one while the network waits).
struct Pages {
    log: std::sync::Arc<crate::log::EventLog>,
    session: u64,
    upto: u64,
    own: Option<u64>,
}

impl Pages {
    /// The events after `after` on the next page, and the last `seq` read; `None` at the end.
    async fn next(&self, after: u64) -> Result<Option<(u64, Vec<protocol::Event>)>, String> {
        let (log, session) = (self.log.clone(), self.session);
        let page = tokio::task::spawn_blocking(move || match log.db() {
            Some(db) => db.session_page(session, after, EXPORT_PAGE).map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        })
        .await
        .map_err(|e| e.to_string())??;
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
