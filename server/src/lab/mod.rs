//! The pattern lab: grades posted to a scratch store at a rate the user sets, followed by N
//! simulated subscribers per pattern (short poll, long poll, SSE, WebSocket) and by the lab
//! page itself, over the real endpoints. Never touches the course's transcripts.
//!
//! `POST /api/lab` starts (or reconfigures) the run, `DELETE /api/lab` stops it, `GET
//! /api/lab` reports what each pattern cost; `/api/lab/changes` (short/long poll),
//! `/api/lab/changes/stream` (SSE) and room `lab` on `/ws/events` carry the scratch changes.

pub mod model;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use model::{Lab, Pattern, verdict};
use protocol::channel::{ChangeKind, ServerMsg};
pub use protocol::lab::{LabConfig, LabReport, PatternReport};
use tokio::task::JoinHandle;

use crate::changes::ChangeFeed;
use crate::extract::{JsonBody, QueryText};
use crate::transcripts::Store;
use crate::{ApiError, AppState};

/// Limits of the sliders (the server enforces them too).
pub const MAX_RATE: f64 = 20.0;
pub const MIN_RATE: f64 = 0.05;
pub const MAX_SUBSCRIBERS: u32 = 200;
pub const MIN_POLL_MS: u64 = 100;
pub const MAX_POLL_MS: u64 = 10_000;

struct Run {
    config: LabConfig,
    started: Instant,
    lab: Arc<Mutex<(Lab, u64)>>,
    task: JoinHandle<()>,
}

/// The lab: its scratch store and feed, and the run in progress.
pub struct LabState {
    store: Arc<Store>,
    feed: Arc<ChangeFeed>,
    run: Mutex<Option<Run>>,
}

impl Default for LabState {
    fn default() -> Self {
        Self { store: Arc::new(Store::in_memory()), feed: Arc::default(), run: Mutex::new(None) }
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

    fn stop(&self) -> bool {
        match self.run.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(run) => {
                run.task.abort();
                true
            }
            None => false,
        }
    }

    fn start(&self, config: LabConfig, state: &AppState) {
        self.stop();
        let now = crate::now_us();
        let lab =
            Arc::new(Mutex::new((Lab::new(config.subscribers, config.poll_ms as i64 * 1000, now), 0u64)));
        let task = tokio::spawn(drive(
            config,
            lab.clone(),
            self.store.clone(),
            self.feed.clone(),
            state.hub().clone(),
        ));
        *self.run.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Run { config, started: Instant::now(), lab, task });
    }

    pub fn report(&self) -> LabReport {
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(run) = run.as_ref() else {
            return LabReport {
                running: false,
                config: None,
                seconds: 0.0,
                changes: 0,
                patterns: Vec::new(),
            };
        };
        let seconds = run.started.elapsed().as_secs_f64();
        let guard = run.lab.lock().unwrap_or_else(PoisonError::into_inner);
        let (lab, changes) = &*guard;
        let patterns = Pattern::ALL
            .into_iter()
            .zip(&lab.counters)
            .map(|(pattern, c)| PatternReport {
                pattern: pattern.name().to_owned(),
                counts: c.counts.clone(),
                staleness_p50_ms: c.staleness_ms(0.5),
                staleness_p95_ms: c.staleness_ms(0.95),
                summary: verdict(pattern, c, *changes, seconds),
            })
            .collect();
        LabReport {
            running: !run.task.is_finished(),
            config: Some(run.config),
            seconds,
            changes: *changes,
            patterns,
        }
    }
}

/// The run: posts grades at `rate` to the scratch store, tells every follower, and moves the
/// simulated subscribers along in real time.
async fn drive(
    config: LabConfig,
    lab: Arc<Mutex<(Lab, u64)>>,
    store: Arc<Store>,
    feed: Arc<ChangeFeed>,
    hub: Arc<crate::events::Hub>,
) {
    let every = Duration::from_secs_f64(1.0 / config.rate);
    let mut next_change = tokio::time::Instant::now() + every;
    let mut n: u64 = 0;
    loop {
        let next_poll = {
            let guard = lab.lock().unwrap_or_else(PoisonError::into_inner);
            guard.0.next_poll()
        };
        let poll_in = Duration::from_micros((next_poll - crate::now_us()).max(0) as u64);
        let poll_at = tokio::time::Instant::now() + poll_in;
        tokio::select! {
            () = tokio::time::sleep_until(next_change) => {
                next_change += every;
                n += 1;
                let course = format!("Lab {n}");
                // A scratch student per hundred grades, so one never holds too many.
                let id = match store.list().last() {
                    Some(t) if t.grades.len() < 100 => t.student.student_id,
                    _ => {
                        let s = store.clone();
                        match tokio::task::spawn_blocking(move || s.create("lab student", &[])).await {
                            Ok(Ok(id)) => id,
                            _ => continue,
                        }
                    }
                };
                let s = store.clone();
                let c = course.clone();
                if !matches!(tokio::task::spawn_blocking(move || s.add_grade(id, &c, 50.0 + (n % 50) as f64)).await, Ok(Ok(()))) {
                    continue;
                }
                let change = feed.publish(ChangeKind::GradeAdded, id, Some(course), None);
                hub.to_room("lab", &ServerMsg::LabChanged(change.clone()), None);
                let mut guard = lab.lock().unwrap_or_else(PoisonError::into_inner);
                guard.0.advance(change.at_us);
                guard.0.change(change, crate::now_us());
                guard.1 += 1;
            }
            () = tokio::time::sleep_until(poll_at) => {
                lab.lock().unwrap_or_else(PoisonError::into_inner).0.advance(crate::now_us());
            }
        }
    }
}

fn config(body: &serde_json::Value) -> Result<LabConfig, ApiError> {
    let c: LabConfig = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::Validation([("body".to_owned(), e.to_string())].into()))?;
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

/// Starts a lab run (replacing the one in progress).
#[utoipa::path(post, path = "/api/lab", tag = "lab", operation_id = "startLab",
    request_body(content = LabConfig, example = json!({"rate": 2.0, "subscribers": 50, "pollMs": 1000})),
    responses(
        (status = 200, description = "The new run", body = LabReport),
        (status = 400, description = "Malformed JSON", body = crate::openapi::InvalidParameters),
        (status = 422, description = "A setting is out of range", body = crate::openapi::ValidationFailed),
    ))]
pub async fn start(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<LabReport>, ApiError> {
    let c = config(&body)?;
    state.lab().start(c, &state);
    Ok(Json(state.lab().report()))
}

/// What each pattern has cost in the current run.
#[utoipa::path(get, path = "/api/lab", tag = "lab", operation_id = "getLab",
    responses((status = 200, description = "The run's figures", body = LabReport)))]
pub async fn report(State(state): State<AppState>) -> Json<LabReport> {
    Json(state.lab().report())
}

/// Stops the run.
#[utoipa::path(delete, path = "/api/lab", tag = "lab", operation_id = "stopLab",
    responses((status = 204, description = "Stopped (or nothing was running)")))]
pub async fn stop(State(state): State<AppState>) -> StatusCode {
    state.lab().stop();
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
        (status = 422, description = "`since` or `wait` is not a valid number", body = crate::openapi::ValidationFailed),
    ))]
pub async fn changes(
    State(state): State<AppState>,
    QueryText(q): QueryText,
) -> Result<impl IntoResponse, ApiError> {
    crate::changes::poll(state.lab().feed(), &q, state.shutdown()).await
}

/// The lab's scratch changes as Server-Sent Events (`event: labChanged`).
#[utoipa::path(get, path = "/api/lab/changes/stream", tag = "lab", operation_id = "streamLabChanges",
    params(("since" = Option<u64>, Query, description = "Replay the changes after this seq first", minimum = 0)),
    responses(
        (status = 200, description = "A text/event-stream of changes", content_type = "text/event-stream", body = String),
        (status = 422, description = "`since` is not a valid number", body = crate::openapi::ValidationFailed),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    QueryText(q): QueryText,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let since = crate::changes::stream_since(&q, &headers)?;
    Ok(crate::changes::stream(state.lab().feed(), since, "labChanged", state.shutdown().clone()))
}
