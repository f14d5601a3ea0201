//! The pattern lab: grades posted to a scratch store at a rate the user sets, followed by N
//! simulated subscribers per pattern (short poll, long poll, SSE, WebSocket) and by the lab
//! page itself, over the real endpoints. Never touches the course's transcripts.
//!
//! `POST /api/lab` starts (or reconfigures) the run and `DELETE /api/lab` stops it, keeping its
//! figures (both the instructor's); `GET /api/lab` reports what each pattern cost, and room
//! `lab` on `/ws/events` gets the same report every second while it runs; `/api/lab/changes` (short/long poll),
//! `/api/lab/changes/stream` (SSE) and room `lab` on `/ws/events` carry the scratch changes.

pub mod model;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use model::{Lab, Pattern, verdict};
use protocol::channel::{ChangeKind, ServerMsg};
pub use protocol::lab::{LabConfig, LabReport, PatternReport};
use tokio::task::JoinHandle;

use crate::access::{Instructor, InstructorToken};
use crate::changes::ChangeFeed;
use crate::error::ApiError;
use crate::events::Hub;
use crate::extract::{JsonBody, QueryText};
use crate::paths::LAB_PATH;
use crate::shutdown::Shutdown;
use crate::transcripts::Store;

/// What the lab needs: its own state, the hub it reports to (room `lab`), the stop signal,
/// and the instructor's token (starting and stopping are the instructor's).
#[derive(Clone)]
pub struct Ctx {
    pub lab: Arc<LabState>,
    pub hub: Arc<Hub>,
    pub shutdown: Shutdown,
    pub token: InstructorToken,
}

impl FromRef<Ctx> for InstructorToken {
    fn from_ref(ctx: &Ctx) -> Self {
        ctx.token.clone()
    }
}

/// The lab's controls and feeds.
pub fn routes() -> Router<Ctx> {
    Router::new()
        .route(LAB_PATH, get(report).post(start).delete(stop))
        .route("/api/lab/changes", get(changes))
        .route("/api/lab/changes/stream", get(stream))
}

/// Limits of the sliders (the server enforces them too).
pub const MAX_RATE: f64 = 20.0;
pub const MIN_RATE: f64 = 0.05;
pub const MAX_SUBSCRIBERS: u32 = 200;
pub const MIN_POLL_MS: u64 = 100;
pub const MAX_POLL_MS: u64 = 10_000;

/// A run ends by itself after this long (nobody leaves the projector's lab running all day).
pub const MAX_RUN: Duration = Duration::from_secs(30 * 60);
/// How often a running lab pushes its figures to room `lab`.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a run has done so far, shared by its task and the report.
#[derive(Debug)]
struct Progress {
    lab: Lab,
    changes: u64,
    failed: u64,
    problem: Option<String>,
    /// When it stopped (by Stop, by a new run, or by [`MAX_RUN`]): the figures stay as they were.
    stopped: Option<Instant>,
}

struct Run {
    config: LabConfig,
    started: Instant,
    progress: Arc<Mutex<Progress>>,
    task: JoinHandle<()>,
}

impl Run {
    /// Stops the task, keeping the figures; answers whether it was running.
    fn halt(&self) -> bool {
        self.task.abort();
        let mut p = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        let was = p.stopped.is_none();
        p.stopped.get_or_insert_with(Instant::now);
        was
    }
}

/// The lab: its scratch store and feed, and the current (or last) run.
pub struct LabState {
    store: Arc<Store>,
    feed: Arc<ChangeFeed>,
    run: Mutex<Option<Run>>,
    /// Grades posted by every run since the server started: course names never repeat, so a
    /// later run never posts a course the scratch student already has.
    posted: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for LabState {
    fn default() -> Self {
        Self {
            store: Arc::new(Store::in_memory()),
            feed: Arc::default(),
            run: Mutex::new(None),
            posted: Arc::default(),
        }
    }
}

impl std::fmt::Debug for LabState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabState").finish_non_exhaustive()
    }
}

impl LabState {
    pub fn feed(&self) -> &Arc<ChangeFeed> {
        &self.feed
    }

    /// Stops the run in progress, keeping its figures; answers whether one was running.
    fn stop(&self) -> bool {
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        run.as_ref().is_some_and(Run::halt)
    }

    /// Starts a run in place of the current one: one lock around stopping the old and
    /// storing the new, so two starts at once never leave a run nobody can stop.
    fn start(&self, config: LabConfig, state: &Ctx) {
        let mut slot = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.as_ref() {
            old.halt();
        }
        let now = crate::clock::now_us();
        let progress = Arc::new(Mutex::new(Progress {
            lab: Lab::new(config.subscribers, config.poll_ms as i64 * 1000, now),
            changes: 0,
            failed: 0,
            problem: None,
            stopped: None,
        }));
        let started = Instant::now();
        // The task's first report waits for this lock: it reports the new run.
        let task = tokio::spawn(drive(
            config,
            progress.clone(),
            Scratch { store: self.store.clone(), feed: self.feed.clone(), posted: self.posted.clone() },
            state.clone(),
        ));
        *slot = Some(Run { config, started, progress, task });
    }

    pub fn report(&self) -> LabReport {
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(run) = run.as_ref() else {
            return LabReport {
                running: false,
                config: None,
                seconds: 0.0,
                changes: 0,
                failed: 0,
                problem: None,
                patterns: Vec::new(),
            };
        };
        let p = run.progress.lock().unwrap_or_else(PoisonError::into_inner);
        let until = p.stopped.unwrap_or_else(Instant::now);
        let seconds = until.saturating_duration_since(run.started).as_secs_f64();
        let patterns = Pattern::ALL
            .into_iter()
            .zip(&p.lab.counters)
            .map(|(pattern, c)| PatternReport {
                pattern: pattern.name().to_owned(),
                counts: c.counts.clone(),
                staleness_p50_ms: c.staleness_ms(0.5),
                staleness_p95_ms: c.staleness_ms(0.95),
                summary: verdict(pattern, c, p.changes, seconds),
            })
            .collect();
        LabReport {
            running: p.stopped.is_none() && !run.task.is_finished(),
            config: Some(run.config),
            seconds,
            changes: p.changes,
            failed: p.failed,
            problem: p.problem.clone(),
            patterns,
        }
    }

    /// Tells room `lab` the figures.
    fn announce(&self, state: &Ctx) {
        state.hub.to_room("lab", &ServerMsg::LabReport(self.report()), None);
    }
}

/// Where a run posts.
struct Scratch {
    store: Arc<Store>,
    feed: Arc<ChangeFeed>,
    posted: Arc<std::sync::atomic::AtomicU64>,
}

impl Scratch {
    /// Posts grade number `n` (a course no run posted before) to a scratch student.
    async fn post(&self, n: u64) -> Result<(i64, String), String> {
        let course = format!("Lab {n}");
        // A scratch student per hundred grades, so one never holds too many.
        let id = match self.store.newest() {
            Some((id, grades)) if grades < 100 => id,
            _ => {
                let s = self.store.clone();
                tokio::task::spawn_blocking(move || s.create("lab student", &[], None))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot create a scratch student: {e}"))?
            }
        };
        let (s, c) = (self.store.clone(), course.clone());
        tokio::task::spawn_blocking(move || s.add_grade(id, &c, 50.0 + (n % 50) as f64, None))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("grade {course} refused: {e}"))?;
        Ok((id, course))
    }
}

/// The run: posts grades at `rate` to the scratch store, tells every follower, moves the
/// simulated subscribers along in real time, and pushes its figures to room `lab`; it ends
/// after [`MAX_RUN`].
async fn drive(config: LabConfig, progress: Arc<Mutex<Progress>>, scratch: Scratch, state: Ctx) {
    state.lab.announce(&state);
    let every = Duration::from_secs_f64(1.0 / config.rate);
    let begun = tokio::time::Instant::now();
    let mut next_change = begun + every;
    let mut next_report = begun + REPORT_EVERY;
    while begun.elapsed() < MAX_RUN {
        let next_poll = progress.lock().unwrap_or_else(PoisonError::into_inner).lab.next_poll();
        let poll_in = Duration::from_micros((next_poll - crate::clock::now_us()).max(0) as u64);
        let poll_at = tokio::time::Instant::now() + poll_in;
        tokio::select! {
            () = tokio::time::sleep_until(next_change) => {
                next_change += every;
                let n = scratch.posted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                match scratch.post(n).await {
                    Ok((id, course)) => {
                        let change = scratch.feed.publish(ChangeKind::GradeAdded, id, Some(course), None);
                        state.hub.to_room("lab", &ServerMsg::LabChanged(change.clone()), None);
                        let mut p = progress.lock().unwrap_or_else(PoisonError::into_inner);
                        p.lab.advance(change.at_us);
                        p.lab.change(change, crate::clock::now_us());
                        p.changes += 1;
                    }
                    Err(problem) => {
                        tracing::warn!(%problem, "lab: a grade was not posted");
                        let mut p = progress.lock().unwrap_or_else(PoisonError::into_inner);
                        p.failed += 1;
                        p.problem = Some(problem);
                    }
                }
            }
            () = tokio::time::sleep_until(poll_at) => {
                progress.lock().unwrap_or_else(PoisonError::into_inner).lab.advance(crate::clock::now_us());
            }
            () = tokio::time::sleep_until(next_report) => {
                next_report += REPORT_EVERY;
                state.lab.announce(&state);
            }
        }
    }
    progress.lock().unwrap_or_else(PoisonError::into_inner).stopped.get_or_insert_with(Instant::now);
    state.lab.announce(&state);
}

fn config(body: serde_json::Value) -> Result<LabConfig, ApiError> {
    let c: LabConfig = crate::extract::from_object(body)?;
    let mut problems = std::collections::BTreeMap::new();
    if !(MIN_RATE..=MAX_RATE).contains(&c.rate) {
        problems.insert("rate".to_owned(), format!("must be from {MIN_RATE} to {MAX_RATE}"));
    }
    if !(1..=MAX_SUBSCRIBERS).contains(&c.subscribers) {
        problems.insert("subscribers".to_owned(), format!("must be from 1 to {MAX_SUBSCRIBERS}"));
    }
    if !(MIN_POLL_MS..=MAX_POLL_MS).contains(&c.poll_ms) {
        problems.insert("pollMs".to_owned(), format!("must be from {MIN_POLL_MS} to {MAX_POLL_MS}"));
    }
    if problems.is_empty() { Ok(c) } else { Err(ApiError::Validation(problems)) }
}

/// Starts a lab run (replacing the one in progress). The instructor's: the projector shows it.
#[utoipa::path(post, path = "/api/lab", tag = "lab", operation_id = "startLab",
    request_body(content = LabConfig, example = json!({"rate": 2.0, "subscribers": 50, "pollMs": 1000})),
    responses(
        (status = 200, description = "The new run", body = LabReport),
        (status = 403, description = "Not the instructor", body = crate::error::ErrorBody),
        (status = 400, description = "Malformed JSON", body = crate::error::InvalidParameters),
        (status = 422, description = "A setting is out of range", body = crate::error::ValidationFailed),
    ))]
pub async fn start(
    _: Instructor,
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<Json<LabReport>, ApiError> {
    let c = config(body)?;
    state.lab.start(c, &state);
    Ok(Json(state.lab.report()))
}

/// What each pattern has cost in the current run.
#[utoipa::path(get, path = "/api/lab", tag = "lab", operation_id = "getLab",
    responses((status = 200, description = "The run's figures", body = LabReport)))]
pub async fn report(State(state): State<Ctx>) -> Json<LabReport> {
    Json(state.lab.report())
}

/// Stops the run; its figures stay. The instructor's.
#[utoipa::path(delete, path = "/api/lab", tag = "lab", operation_id = "stopLab",
    responses(
        (status = 204, description = "Stopped (or nothing was running)"),
        (status = 403, description = "Not the instructor", body = crate::error::ErrorBody),
    ))]
pub async fn stop(_: Instructor, State(state): State<Ctx>) -> StatusCode {
    if state.lab.stop() {
        state.lab.announce(&state);
    }
    StatusCode::NO_CONTENT
}

/// The lab's scratch changes, polled (with `wait`: long polled).
#[utoipa::path(get, path = "/api/lab/changes", tag = "lab", operation_id = "getLabChanges",
    params(
        ("since" = Option<u64>, Query, description = "Only changes after this seq", minimum = 0),
        ("wait" = Option<u64>, Query, description = "Long polling: wait up to this many seconds", minimum = 0, maximum = 25),
    ),
    responses(
        (status = 200, description = "The changes after `since`", body = crate::changes::Changes),
        (status = 422, description = "`since` or `wait` is not a valid number", body = crate::error::ValidationFailed),
    ))]
pub async fn changes(
    State(state): State<Ctx>,
    QueryText(q): QueryText,
) -> Result<impl IntoResponse, ApiError> {
    crate::changes::poll(state.lab.feed(), &q, &state.shutdown).await
}

/// The lab's scratch changes as Server-Sent Events (`event: labChanged`).
#[utoipa::path(get, path = "/api/lab/changes/stream", tag = "lab", operation_id = "streamLabChanges",
    params(("since" = Option<u64>, Query, description = "Replay the changes after this seq first", minimum = 0)),
    responses(
        (status = 200, description = "A text/event-stream of changes", content_type = "text/event-stream", body = String),
        (status = 422, description = "`since` is not a valid number", body = crate::error::ValidationFailed),
    ))]
pub async fn stream(
    State(state): State<Ctx>,
    QueryText(q): QueryText,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let since = crate::changes::stream_since(&q, &headers)?;
    Ok(crate::changes::stream(state.lab.feed(), since, "labChanged", state.shutdown.clone()))
}
