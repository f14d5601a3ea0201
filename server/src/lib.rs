//! wirescope's server: serves the app, answers its REST endpoints and WebSocket endpoints.
//!
//! [`app`] builds the whole [`Router`] from an [`AppState`]; `main.rs` only parses the command
//! line, binds, serves and shuts down.

pub mod assets;
pub mod echo;
pub mod error;
pub mod health;
pub mod shutdown;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
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
}

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    started: Instant,
    shutdown: Shutdown,
}

impl AppState {
    /// Prepares the state; creates the data directory if it does not exist yet.
    pub fn new(config: Config) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        Ok(Self { inner: Arc::new(Inner { config, started: Instant::now(), shutdown: Shutdown::new() }) })
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
        .route("/ws/echo", get(echo::upgrade))
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(assets::serve)
        .layer(TraceLayer::new_for_http().on_response(DefaultOnResponse::new().level(Level::INFO)))
        .with_state(state)
}

/// Microseconds since the Unix epoch, by the server's clock.
pub fn now_us() -> protocol::Micros {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
