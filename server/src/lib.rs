//! wirescope's server: serves the app, answers its REST endpoints and WebSocket endpoints.
//!
//! [`app`] builds the whole [`Router`] from an [`AppState`]; `main.rs` only parses the command
//! line, binds, serves and shuts down.

pub mod assets;
pub mod echo;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod shutdown;
pub mod transcripts;

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
}

impl Config {
    /// A configuration with these directories and no reset.
    pub fn new(assets: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self { assets: assets.into(), data_dir: data_dir.into(), reset: false }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    DataDir(PathBuf, std::io::Error),
    Transcripts(PathBuf, transcripts::StoreError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir(p, e) => write!(f, "cannot create the data directory {}: {e}", p.display()),
            StartError::Transcripts(p, e) => {
                write!(f, "cannot open the transcripts database {}: {e}", p.display())
            }
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
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                started: Instant::now(),
                shutdown: Shutdown::new(),
                transcripts: Arc::new(store),
            }),
        })
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
        .merge(transcripts::routes())
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(assets::serve)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// Microseconds since the Unix epoch, by the server's clock.
pub fn now_us() -> protocol::Micros {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
