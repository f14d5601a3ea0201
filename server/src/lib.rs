//! wirescope's server: serves the app, answers its REST endpoints and WebSocket endpoints.
//!
//! [`app`] builds the whole [`Router`] from an [`AppState`]; `main.rs` only parses the command
//! line, binds, serves and shuts down.

pub mod assets;
pub mod capture;
pub mod cause;
pub mod changes;
pub mod echo;
pub mod error;
pub mod events;
pub mod extract;
pub mod faults;
pub mod health;
pub mod idempotency;
pub mod instructor;
pub mod lab;
pub mod log;
pub mod observe;
pub mod openapi;
pub mod rehearsal;
pub mod serve;
pub mod sessions;
pub mod shutdown;
pub mod transcripts;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;
pub use shutdown::Shutdown;

/// What the server is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trunk-built app (`index.html` and its hashed assets). May be missing.
    pub assets: PathBuf,
    /// Where the server keeps its data. Created if missing; may hold other files.
    pub data_dir: PathBuf,
    /// Replace the transcripts database with a new, seeded one.
    pub reset: bool,
    /// Record traffic into the event log (off only to measure what capture costs).
    pub capture: bool,
    /// Largest body preview kept per captured message, in bytes.
    pub preview_bytes: usize,
    /// Sizes of the event log.
    pub log: log::LogConfig,
    /// How often `/ws/events` connections get a `tick`.
    pub tick: std::time::Duration,
    /// The instructor's token (when `None`: the one kept in the data directory, or a new one).
    pub token: Option<String>,
    /// Replace the kept instructor token with a new one (the old link stops working).
    pub rotate_token: bool,
    /// Chat lines a client may send in 10 seconds on `/ws/events`.
    pub chat_limit: usize,
}

impl Config {
    /// A configuration with these directories and everything else at its default.
    pub fn new(assets: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            assets: assets.into(),
            data_dir: data_dir.into(),
            reset: false,
            capture: true,
            preview_bytes: 4096,
            log: log::LogConfig::default(),
            tick: events::TICK,
            token: None,
            rotate_token: false,
            chat_limit: events::CHAT_LIMIT,
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    DataDir(PathBuf, std::io::Error),
    Transcripts(PathBuf, transcripts::StoreError),
    EventLog(PathBuf, rusqlite::Error),
    Token(PathBuf, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir(p, e) => write!(f, "cannot create the data directory {}: {e}", p.display()),
            StartError::Transcripts(p, e) => {
                write!(f, "cannot open the transcripts database {}: {e}", p.display())
            }
            StartError::EventLog(p, e) => write!(f, "cannot open the event log {}: {e}", p.display()),
            StartError::Token(p, e) => write!(f, "cannot keep the instructor token in {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for StartError {}

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    started: Instant,
    shutdown: Shutdown,
    transcripts: Arc<transcripts::Store>,
    log: Arc<log::EventLog>,
    clients: Arc<capture::Clients>,
    secrets: Arc<capture::Secrets>,
    presence: std::sync::Once,
    changes: Arc<changes::ChangeFeed>,
    hub: Arc<events::Hub>,
    lab: Arc<lab::LabState>,
    rehearsal: rehearsal::Rehearsal,
    token: String,
    faults: Arc<faults::Faults>,
    idempotency: idempotency::Idempotency,
    local_addr: std::sync::OnceLock<std::net::SocketAddr>,
    highlight: std::sync::Mutex<Option<String>>,
}

impl AppState {
    /// Prepares the state: creates the data directory if it does not exist yet, and opens
    /// (creating and seeding when absent, or replacing when `reset`) the transcripts database.
    pub fn new(config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
        let db = config.data_dir.join(transcripts::store::FILE_NAME);
        let store = if config.reset { transcripts::Store::reset(&db) } else { transcripts::Store::open(&db) };
        let store = store.map_err(|e| StartError::Transcripts(db.clone(), e))?;
        let name = format!("started {}", time_of_day(now_us()));
        let log = log::EventLog::open(&config.data_dir, config.log, &name)
            .map_err(|e| StartError::EventLog(config.data_dir.join(log::db::FILE_NAME), e))?;
        let token = match &config.token {
            Some(t) => t.clone(),
            None => instructor::stored_token(&config.data_dir, config.rotate_token)
                .map_err(|e| StartError::Token(config.data_dir.join(instructor::TOKEN_FILE), e))?,
        };
        let chat_limit = config.chat_limit;
        let faults = Arc::new(faults::Faults::with_log(log.clone()));
        let secrets: Arc<capture::Secrets> = Arc::default();
        secrets.add(token.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                started: Instant::now(),
                shutdown: Shutdown::new(),
                transcripts: Arc::new(store),
                log,
                clients: Arc::default(),
                secrets,
                presence: std::sync::Once::new(),
                changes: Arc::default(),
                hub: Arc::new(events::Hub::new(chat_limit)),
                lab: Arc::default(),
                rehearsal: rehearsal::Rehearsal::default(),
                token,
                faults,
                idempotency: idempotency::Idempotency::default(),
                local_addr: std::sync::OnceLock::new(),
                highlight: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The transcripts' change feed (REST writes publish into it).
    pub fn changes(&self) -> &Arc<changes::ChangeFeed> {
        &self.inner.changes
    }

    /// Everyone on `/ws/events`.
    pub fn hub(&self) -> &Arc<events::Hub> {
        &self.inner.hub
    }

    /// The instructor's token.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Faults, holding, "server down".
    pub fn faults(&self) -> &Arc<faults::Faults> {
        &self.inner.faults
    }

    pub fn idempotency(&self) -> &idempotency::Idempotency {
        &self.inner.idempotency
    }

    /// Where the server listens (set once bound).
    pub fn set_local_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.inner.local_addr.set(addr);
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_addr.get().copied()
    }

    /// The lane the instructor highlights.
    pub fn highlight(&self) -> Option<String> {
        self.inner.highlight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set_highlight(&self, client: Option<String>) {
        *self.inner.highlight.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }

    /// The pattern lab.
    pub fn lab(&self) -> &Arc<lab::LabState> {
        &self.inner.lab
    }

    /// The simulated students of a rehearsal.
    pub fn rehearsal(&self) -> &rehearsal::Rehearsal {
        &self.inner.rehearsal
    }

    /// The event log every captured event goes to.
    pub fn log(&self) -> &Arc<log::EventLog> {
        &self.inner.log
    }

    /// The clients seen, and their nicknames.
    pub fn clients(&self) -> &Arc<capture::Clients> {
        &self.inner.clients
    }

    /// Values never to be stored or shown (e.g. the instructor token).
    pub fn secrets(&self) -> &Arc<capture::Secrets> {
        &self.inner.secrets
    }

    /// The capture layer for this state.
    pub fn capture(&self) -> capture::Capture {
        capture::Capture {
            log: self.inner.log.clone(),
            clients: self.inner.clients.clone(),
            secrets: self.inner.secrets.clone(),
            preview: self.inner.config.preview_bytes,
            enabled: self.inner.config.capture,
        }
    }

    /// Starts (once) the task that merges observers' comings and goings into one presence
    /// event per second. Needs a Tokio runtime; called when the first observer connects.
    pub fn start_presence_ticker(&self) {
        self.inner.presence.call_once(|| {
            let log = Arc::downgrade(&self.inner.log);
            tokio::spawn(async move {
                let second = std::time::Duration::from_secs(1);
                let mut every = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
                loop {
                    every.tick().await;
                    let Some(log) = log.upgrade() else { return };
                    log.presence_tick();
                }
            });
        });
    }

    /// The course's transcripts.
    pub fn transcripts(&self) -> &Arc<transcripts::Store> {
        &self.inner.transcripts
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Time since the state was created.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// The server-wide shutdown signal: long-lived connections watch it to close cleanly.
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }
}

/// The whole HTTP surface of the server.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health::get))
        .route("/api/openapi.json", get(openapi::get))
        .route("/ws/echo", get(echo::upgrade))
        .route("/ws/events", get(events::upgrade))
        .route("/api/changes", get(changes::get_changes))
        .route("/api/changes/stream", get(changes::stream_changes))
        .route("/api/lab", get(lab::report).post(lab::start).delete(lab::stop))
        .route("/api/lab/changes", get(lab::changes))
        .route("/api/lab/changes/stream", get(lab::stream))
        .route(capture::OBSERVE_PATH, get(observe::upgrade))
        .route("/api/sessions", get(sessions::list))
        .route("/api/sessions/{id}/events", get(sessions::events))
        .route("/api/sessions/{id}/export", get(sessions::export).post(sessions::export_with))
        .merge(transcripts::routes())
        .merge(instructor::routes())
        .merge(rehearsal::routes())
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(assets::serve)
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(axum::middleware::from_fn_with_state(state.clone(), faults::middleware))
        .layer(state.capture())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// `HH:MM:SS` (UTC) of a time in µs, for names.
pub fn time_of_day(us: protocol::Micros) -> String {
    let s = us.div_euclid(1_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// Microseconds since the Unix epoch, by the server's clock.
pub fn now_us() -> protocol::Micros {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
