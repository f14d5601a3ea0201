//! Rehearsal: the instructor starts N simulated students who act out the lecture script's
//! student steps against this very server, over real HTTP and WebSocket on loopback, so a
//! lecture can be rehearsed alone. Each has its own lane (`rehearsal-N`, named "Rehearsal N"
//! unless renamed); they stop when told, when the server stops, or after their time is up;
//! each step is bounded in time. The students they add are real rows of the transcripts:
//! "Reset transcripts to the seed" removes them.
//!
//! `POST /api/instructor/rehearsal {students, minutes?}` starts (replacing a rehearsal in
//! progress), `DELETE` stops, `GET` says who is acting (all the instructor's).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use protocol::channel::ClientMsg;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::access::{Instructor, InstructorToken};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::identity::Clients;
use crate::log::EventLog;
use crate::serve::Listening;
use crate::shutdown::Shutdown;

/// What a rehearsal needs: its own state, the registry (to name its students), where the
/// server listens (they connect to it), the stop signal, and the instructor's token.
#[derive(Clone)]
pub struct Ctx {
    pub token: InstructorToken,
    pub rehearsal: Arc<Rehearsal>,
    pub clients: Arc<Clients>,
    pub log: Arc<EventLog>,
    pub shutdown: Shutdown,
    pub listening: Listening,
}

impl FromRef<Ctx> for InstructorToken {
    fn from_ref(ctx: &Ctx) -> Self {
        ctx.token.clone()
    }
}

/// Most simulated students at once (each is a few requests every few seconds).
pub const MAX_STUDENTS: u32 = 30;
/// How long a rehearsal runs unless told otherwise, and at most.
pub const DEFAULT_MINUTES: u32 = 15;
pub const MAX_MINUTES: u32 = 120;
/// Most bytes of an answer a simulated student reads (it only needs the status).
const ANSWER_LIMIT: usize = 256 << 10;

/// What `GET /api/instructor/rehearsal` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RehearsalState {
    /// Simulated students still acting.
    pub students: u32,
    /// Their client ids (their lanes).
    pub clients: Vec<String>,
    /// Steps done so far, by all of them.
    pub steps: u64,
    /// Steps that failed (a refused connection, an error status), by all of them.
    pub failed: u64,
}

struct Run {
    tasks: Vec<JoinHandle<()>>,
    clients: Vec<String>,
    counts: std::sync::Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    steps: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// The rehearsal in progress, if any.
#[derive(Default)]
pub struct Rehearsal {
    run: Mutex<Option<Run>>,
}

impl std::fmt::Debug for Rehearsal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rehearsal").finish_non_exhaustive()
    }
}

impl Rehearsal {
    pub fn state(&self) -> RehearsalState {
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(run) = run.as_ref() else { return RehearsalState::default() };
        let acting = run.tasks.iter().filter(|t| !t.is_finished()).count() as u32;
        RehearsalState {
            students: acting,
            clients: if acting > 0 { run.clients.clone() } else { Vec::new() },
            steps: run.counts.steps.load(std::sync::atomic::Ordering::Relaxed),
            failed: run.counts.failed.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn stop(&self) {
        if let Some(run) = self.run.lock().unwrap_or_else(PoisonError::into_inner).take() {
            for t in run.tasks {
                t.abort();
            }
        }
    }
}

/// The lecture script's student steps, in order; a simulated student goes round them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 2. Pull: `GET /api/health`.
    Health,
    /// 2. Pull: `GET /transcripts`.
    List,
    /// 3. Statelessness: add a student.
    AddStudent,
    /// 4. Push: on `/ws/events`, hello, join room `lecture`, a chat line, close.
    Chat,
}

impl Step {
    pub const SCRIPT: [Step; 4] = [Step::Health, Step::List, Step::AddStudent, Step::Chat];
}

/// The pause before a student's `n`th step: 1.5–4.5 s, different for every student, so the
/// room does not act in lockstep.
pub fn pause(student: u32, n: u64) -> Duration {
    let mut x =
        u64::from(student).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    Duration::from_millis(1500 + x % 3000)
}

/// One HTTP/1.1 exchange over a new loopback connection; answers the status.
async fn http(
    addr: std::net::SocketAddr,
    client: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.unwrap_or("");
    let ct = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: wirescope-rehearsal\r\n{}: {client}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
        crate::paths::CLIENT_HEADER,
        body.len()
    );
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let _ = (&mut s).take(ANSWER_LIMIT as u64).read_to_end(&mut answer).await;
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

/// Step 4: a WebSocket session as the Push page has it.
async fn chat(addr: std::net::SocketAddr, client: &str, name: &str) -> bool {
    let url = format!("ws://{addr}/ws/events?client={client}");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else { return false };
    let msgs = [
        ClientMsg::Hello { name: name.to_owned() },
        ClientMsg::Join { room: "lecture".to_owned() },
        ClientMsg::Chat { room: "lecture".to_owned(), text: format!("{name} is here") },
    ];
    for m in msgs {
        let Ok(text) = serde_json::to_string(&m) else { return false };
        if ws.send(Message::text(text)).await.is_err() {
            return false;
        }
    }
    // Read until the server has answered the chat line (its echo in the room), then close.
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.to_text().is_ok_and(|t| t.contains("\"chat\"")) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    answered
}

/// The lane of simulated student `k`.
pub fn client_id(k: u32) -> String {
    format!("rehearsal-{k}")
}

/// Longest a step may take (a connection, a request, a chat).
const STEP_TIME: Duration = Duration::from_secs(10);

async fn act(
    state: Ctx,
    addr: std::net::SocketAddr,
    student: u32,
    counts: std::sync::Arc<Counts>,
    until: tokio::time::Instant,
) {
    let client = client_id(student);
    let name = format!("Rehearsal {student}");
    state.clients.name_if_unnamed(&state.log, &client, &name);
    let mut n: u64 = 0;
    while tokio::time::Instant::now() < until {
        let step = Step::SCRIPT[(n % Step::SCRIPT.len() as u64) as usize];
        let one = async {
            match step {
                Step::Health => {
                    http(addr, &client, "GET", "/api/health", None).await.is_some_and(|s| s == 200)
                }
                Step::List => {
                    http(addr, &client, "GET", "/transcripts", None).await.is_some_and(|s| s == 200)
                }
                Step::AddStudent => {
                    let body = format!(r#"{{"studentName":"{name} · {}"}}"#, n / 4 + 1);
                    http(addr, &client, "POST", "/transcripts", Some(&body)).await.is_some_and(|s| s < 300)
                }
                Step::Chat => chat(addr, &client, &name).await,
            }
        };
        // Every step is bounded, and the server's stop ends it.
        let ok = tokio::select! {
            done = tokio::time::timeout(STEP_TIME, one) => done.unwrap_or(false),
            () = state.shutdown.wait() => return,
        };
        counts.steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !ok {
            counts.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        n += 1;
        tokio::select! {
            () = tokio::time::sleep(pause(student, n)) => {}
            () = state.shutdown.wait() => return,
        }
    }
}

fn settings(body: &serde_json::Value) -> Result<(u32, u32), ApiError> {
    let mut problems = std::collections::BTreeMap::new();
    let students = body.get("students").and_then(serde_json::Value::as_u64);
    let minutes = match body.get("minutes") {
        None | Some(serde_json::Value::Null) => Some(u64::from(DEFAULT_MINUTES)),
        Some(v) => v.as_u64(),
    };
    if !students.is_some_and(|s| (1..=u64::from(MAX_STUDENTS)).contains(&s)) {
        problems.insert("students".to_owned(), format!("must be an integer from 1 to {MAX_STUDENTS}"));
    }
    if !minutes.is_some_and(|m| (1..=u64::from(MAX_MINUTES)).contains(&m)) {
        problems.insert("minutes".to_owned(), format!("must be an integer from 1 to {MAX_MINUTES}"));
    }
    match (students, minutes) {
        (Some(s), Some(m)) if problems.is_empty() => Ok((s as u32, m as u32)),
        _ => Err(ApiError::Validation(problems)),
    }
}

async fn start(
    _: Instructor,
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<Json<RehearsalState>, ApiError> {
    let (students, minutes) = settings(&body)?;
    let addr = state
        .listening
        .get()
        .ok_or_else(|| ApiError::Internal("the server does not know its own address yet".to_owned()))?;
    // A server listening on every address is reached on loopback.
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let r = &state.rehearsal;
    {
        // One lock around stopping the old and storing the new: two starts at once never
        // leave students acting that nobody can stop.
        let mut slot = r.run.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.take() {
            old.tasks.iter().for_each(JoinHandle::abort);
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(u64::from(minutes) * 60);
        let counts = std::sync::Arc::new(Counts::default());
        let tasks = (1..=students)
            .map(|k| tokio::spawn(act(state.clone(), addr, k, counts.clone(), until)))
            .collect();
        let clients = (1..=students).map(client_id).collect();
        *slot = Some(Run { tasks, clients, counts });
    }
    Ok(Json(r.state()))
}

async fn stop(_: Instructor, State(state): State<Ctx>) -> StatusCode {
    state.rehearsal.stop();
    StatusCode::NO_CONTENT
}

async fn get_state(_: Instructor, State(state): State<Ctx>) -> Json<RehearsalState> {
    Json(state.rehearsal.state())
}

/// `/api/instructor/rehearsal` (the instructor's).
pub fn routes() -> Router<Ctx> {
    Router::new().route("/api/instructor/rehearsal", get(get_state).post(start).delete(stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_differ_between_students_and_stay_in_range() {
        let all: Vec<Duration> = (1..=10).flat_map(|s| (0..20).map(move |n| pause(s, n))).collect();
        assert!(all.iter().all(|d| (1500..4500).contains(&d.as_millis())));
        assert_ne!(pause(1, 3), pause(2, 3), "students do not act in lockstep");
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(settings(&serde_json::json!({"students": 3})).unwrap(), (3, DEFAULT_MINUTES));
        assert!(settings(&serde_json::json!({"students": 0})).is_err());
        assert!(settings(&serde_json::json!({"students": 3, "minutes": 0})).is_err());
        assert!(settings(&serde_json::json!({})).is_err());
    }
}
