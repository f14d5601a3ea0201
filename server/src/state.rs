//! The state of the whole server, and what each part of it is handed.
//!
//! [`AppState`] sits at the top: it holds every part (the log, the registries, the stores,
//! the hubs). No module below imports it; each handler module declares the context it needs
//! (`lab::Ctx`, `sessions::Ctx`, …) and this module builds them (axum's `FromRef`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRef;

use crate::access::{self, InstructorToken};
use crate::board::Boards;
use crate::capture::Capture;
use crate::clock::{now_us, time_of_day};
use crate::faults::Faults;
use crate::idempotency::{Idempotency, Keys};
use crate::identity::Clients;
use crate::ids::Issuer;
use crate::log::{EventLog, LogConfig};
use crate::origin::Origins;
use crate::secrets::Secrets;
use crate::serve::Listening;
use crate::shutdown::Shutdown;
use crate::{assets, changes, events, health, instructor, lab, observe, rehearsal, sessions, transcripts};

/// What the server is told at start. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct Config {
    /// The trunk-built app (`index.html` and its hashed assets). May be missing.
    pub assets: PathBuf,
    /// Where the server keeps its data. Created if missing; may hold other files.
    pub data_dir: PathBuf,
    /// Replace the transcripts database with a new, seeded one.
    pub reset: bool,
    /// Record traffic into the event log. Off (`--no-capture`, to measure what capture costs):
    /// nothing is recorded, no event database is opened, no writer thread runs, and the
    /// session routes answer 409.
    pub capture: bool,
    /// Largest body preview kept per captured message, in bytes.
    pub preview_bytes: usize,
    /// Sizes of the event log.
    pub log: LogConfig,
    /// How often `/ws/events` connections get a `tick`.
    pub tick: std::time::Duration,
    /// The instructor's token (when `None`: the one kept in the data directory, or a new one).
    pub token: Option<String>,
    /// Replace the kept instructor token with a new one (the old link stops working).
    pub rotate_token: bool,
    /// Chat lines a client may send in 10 seconds on `/ws/events`.
    pub chat_limit: usize,
    /// Browser origins allowed besides the server's own and `trunk serve`'s (`--allow-origin`).
    pub allowed_origins: Vec<String>,
    /// How long a request body may take before it must keep up 1 KiB/s on average (else 408).
    pub body_grace: std::time::Duration,
    /// Ids one address may be issued at once (`--ids-per-address`; see [`crate::ids`]).
    pub ids_per_address: u32,
    /// The header a trusted balancer puts the client's address in (`--client-address-header`).
    pub client_address_header: Option<axum::http::HeaderName>,
    /// This server's name in every event it records (`--node`; a cluster's replicas differ).
    pub node: String,
    /// Where students join, when it is not this server's own address (`--public-url`: the
    /// balancer in front of a cluster's replicas).
    pub public_url: Option<String>,
    /// The event log is a cluster's stream (`--nats`), joined after start
    /// ([`crate::log::stream::join`]): no event database is opened here, the ring only.
    pub log_in_stream: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("assets", &self.assets)
            .field("data_dir", &self.data_dir)
            .field("reset", &self.reset)
            .field("capture", &self.capture)
            .field("preview_bytes", &self.preview_bytes)
            .field("log", &self.log)
            .field("tick", &self.tick)
            .field("token", &self.token.as_ref().map(|_| crate::secrets::REDACTED))
            .field("rotate_token", &self.rotate_token)
            .field("chat_limit", &self.chat_limit)
            .field("allowed_origins", &self.allowed_origins)
            .field("body_grace", &self.body_grace)
            .field("ids_per_address", &self.ids_per_address)
            .field("client_address_header", &self.client_address_header)
            .field("node", &self.node)
            .field("public_url", &self.public_url)
            .field("log_in_stream", &self.log_in_stream)
            .finish()
    }
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
            log: LogConfig::default(),
            tick: events::TICK,
            token: None,
            rotate_token: false,
            chat_limit: crate::limits::CHAT_LIMIT,
            allowed_origins: Vec::new(),
            body_grace: crate::limits::BODY_GRACE,
            ids_per_address: crate::ids::PER_ADDRESS,
            client_address_header: None,
            node: default_node(),
            public_url: None,
            log_in_stream: false,
        }
    }
}

/// The machine's host name (Linux), else `server`: the default node name.
pub fn default_node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "server".to_owned())
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
    transcripts: Arc<dyn transcripts::Transcripts>,
    log: Arc<EventLog>,
    clients: Arc<Clients>,
    secrets: Arc<Secrets>,
    changes: Arc<changes::ChangeFeed>,
    hub: Arc<events::Hub>,
    lab: Arc<lab::LabState>,
    rehearsal: Arc<rehearsal::Rehearsal>,
    token: InstructorToken,
    faults: Arc<Faults>,
    idempotency: Arc<dyn Keys>,
    listening: Listening,
    /// The room's board: faults, the hold, the highlight, mutes (one for a cluster).
    board: Arc<Boards>,
    origins: Origins,
    issuer: Arc<Issuer>,
}

impl AppState {
    /// Prepares the state: creates the data directory if it does not exist yet, and opens
    /// (creating and seeding when absent, or replacing when `reset`) the transcripts database
    /// in it (the embedded backend).
    pub fn new(config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
        let db = config.data_dir.join(transcripts::store::FILE_NAME);
        let store = if config.reset { transcripts::Store::reset(&db) } else { transcripts::Store::open(&db) };
        let store = store.map_err(|e| StartError::Transcripts(db.clone(), e))?;
        Self::with_transcripts(config, Arc::new(transcripts::Embedded::new(store)))
    }

    /// The same, with the transcripts in `store`; idempotency keys in memory.
    pub fn with_transcripts(
        config: Config,
        store: Arc<dyn transcripts::Transcripts>,
    ) -> Result<Self, StartError> {
        Self::with_backends(config, store, Arc::new(Idempotency::default()))
    }

    /// The same, with the transcripts in `store` and idempotency keys in `keys` (a cluster's
    /// PostgreSQL, for both).
    pub fn with_backends(
        config: Config,
        store: Arc<dyn transcripts::Transcripts>,
        keys: Arc<dyn Keys>,
    ) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
        // The backend numbers the change feed (durably) and announces its writes on it.
        let changes = store.feed().clone();
        let name = format!("started {}", time_of_day(now_us()));
        let log = if !config.capture {
            EventLog::off(config.log)
        } else if config.log_in_stream {
            EventLog::in_memory(config.log)
        } else {
            EventLog::open(&config.data_dir, config.log, &name)
                .map_err(|e| StartError::EventLog(config.data_dir.join(crate::log::db::FILE_NAME), e))?
        };
        let token = match &config.token {
            Some(t) => t.clone(),
            None => access::stored_token(&config.data_dir, config.rotate_token)
                .map_err(|e| StartError::Token(config.data_dir.join(access::TOKEN_FILE), e))?,
        };
        let chat_limit = config.chat_limit;
        let board: Arc<Boards> = Arc::default();
        let faults = Arc::new(Faults::new(board.clone(), Some(log.clone()), &config.node));
        let secrets: Arc<Secrets> = Arc::default();
        secrets.add(token.clone());
        crate::identity::key_pseudonyms(&token);
        log.scrub_with(secrets.clone());
        log.name_node(&config.node);
        let origins = Origins::new(&config.allowed_origins);
        let issuer = Arc::new(Issuer::new(&token, config.ids_per_address));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                started: Instant::now(),
                shutdown: Shutdown::new(),
                transcripts: store,
                log,
                clients: Arc::new(Clients::new(secrets.clone())),
                secrets,
                changes,
                hub: Arc::new(events::Hub::new(chat_limit, board.clone())),
                lab: Arc::default(),
                rehearsal: Arc::default(),
                token: InstructorToken(token.into()),
                faults,
                idempotency: keys,
                listening: Listening::default(),
                board,
                origins,
                issuer,
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
        self.inner.token.as_str()
    }

    /// Faults, holding, "server down".
    pub fn faults(&self) -> &Arc<Faults> {
        &self.inner.faults
    }

    pub fn idempotency(&self) -> &Arc<dyn Keys> {
        &self.inner.idempotency
    }

    /// Where the server listens (set once bound).
    pub fn set_local_addr(&self, addr: std::net::SocketAddr) {
        self.inner.listening.set(addr);
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.listening.get()
    }

    /// The lane the instructor highlights.
    pub fn highlight(&self) -> Option<String> {
        self.inner.board.now().highlight.clone()
    }

    /// The pattern lab.
    pub fn lab(&self) -> &Arc<lab::LabState> {
        &self.inner.lab
    }

    /// The simulated students of a rehearsal.
    pub fn rehearsal(&self) -> &Arc<rehearsal::Rehearsal> {
        &self.inner.rehearsal
    }

    /// Shares the room with the other replicas of a cluster at NATS `url`: the board (faults,
    /// the hold, the highlight, mutes) is kept in the cluster's stream, one-shot actions and
    /// the hub's joins, leaves and chat lines are passed between replicas. Called before the
    /// server serves; fails only on a malformed URL (an unreachable NATS is retried).
    pub async fn join_cluster(&self, url: &str) -> Result<(), String> {
        let link = crate::log::stream::jetstream_at(url).await?;
        let actor: std::sync::Weak<dyn crate::board::Actor> = Arc::downgrade(&self.inner.faults) as _;
        self.inner.board.join(&link, actor).await?;
        self.inner.hub.join_cluster(&link, &self.inner.issuer)?;
        // The session being recorded is the board's: the cluster's first one is started by
        // whichever replica comes first (from the stream's start), and every replica's log
        // follows the board's current one.
        let recording = self.inner.log.is_recording();
        let (log, board) = (Arc::downgrade(&self.inner.log), self.inner.board.clone());
        let mut seen = board.watch();
        tokio::spawn(async move {
            loop {
                let current = seen.borrow_and_update().board.current_session().map(|s| (s.id, s.first_seq));
                let Some(log) = log.upgrade() else { return };
                match current {
                    Some((id, first)) if id != log.session() => log.follow_session(id, first),
                    Some(_) => {}
                    // None yet: this replica starts the cluster's first one (from the stream's
                    // start), and tries again each second until one is there.
                    None if recording => {
                        let name = format!("started {}", time_of_day(now_us()));
                        let first = board.update(|b| {
                            if b.sessions.is_empty() {
                                b.start_session(&name, 1, now_us());
                            }
                        });
                        if let Err(e) = first.await {
                            tracing::warn!(error = %e, "sessions: the cluster's first session is not started yet");
                            drop(log);
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            continue;
                        }
                    }
                    None => {}
                }
                drop(log);
                if seen.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// The room's board.
    pub fn board(&self) -> &Arc<Boards> {
        &self.inner.board
    }

    /// The event log every captured event goes to.
    pub fn log(&self) -> &Arc<EventLog> {
        &self.inner.log
    }

    /// The clients seen, and their nicknames.
    pub fn clients(&self) -> &Arc<Clients> {
        &self.inner.clients
    }

    /// Values never to be stored or shown (e.g. the instructor token).
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.inner.secrets
    }

    /// The header a trusted balancer writes the client's address into, if any.
    pub fn client_address_header(&self) -> crate::proxy::ClientAddressHeader {
        crate::proxy::ClientAddressHeader(self.inner.config.client_address_header.clone())
    }

    /// The browser origins allowed to open WebSockets and change things.
    pub fn origins(&self) -> &Origins {
        &self.inner.origins
    }

    /// The capture layer for this state.
    pub fn capture(&self) -> Capture {
        Capture {
            log: self.inner.log.clone(),
            clients: self.inner.clients.clone(),
            secrets: self.inner.secrets.clone(),
            preview: self.inner.config.preview_bytes,
            enabled: self.inner.log.is_recording(),
            body_grace: self.inner.config.body_grace,
        }
    }

    /// The course's transcripts.
    pub fn transcripts(&self) -> &Arc<dyn transcripts::Transcripts> {
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

impl FromRef<AppState> for Shutdown {
    fn from_ref(s: &AppState) -> Self {
        s.inner.shutdown.clone()
    }
}

impl FromRef<AppState> for health::Started {
    fn from_ref(s: &AppState) -> Self {
        health::Started(s.inner.started, s.inner.config.node.as_str().into(), s.inner.log.clone())
    }
}

impl FromRef<AppState> for assets::Dir {
    fn from_ref(s: &AppState) -> Self {
        assets::Dir(s.inner.config.assets.clone().into())
    }
}

impl FromRef<AppState> for changes::Ctx {
    fn from_ref(s: &AppState) -> Self {
        changes::Ctx { feed: s.inner.changes.clone(), shutdown: s.inner.shutdown.clone() }
    }
}

impl FromRef<AppState> for transcripts::Ctx {
    fn from_ref(s: &AppState) -> Self {
        transcripts::Ctx { store: s.inner.transcripts.clone(), changes: s.inner.changes.clone() }
    }
}

impl FromRef<AppState> for events::Ctx {
    fn from_ref(s: &AppState) -> Self {
        events::Ctx {
            hub: s.inner.hub.clone(),
            changes: s.inner.changes.clone(),
            shutdown: s.inner.shutdown.clone(),
            tick: s.inner.config.tick,
            issuer: s.inner.issuer.clone(),
        }
    }
}

impl FromRef<AppState> for lab::Ctx {
    fn from_ref(s: &AppState) -> Self {
        lab::Ctx {
            lab: s.inner.lab.clone(),
            hub: s.inner.hub.clone(),
            shutdown: s.inner.shutdown.clone(),
            token: s.inner.token.clone(),
        }
    }
}

impl FromRef<AppState> for sessions::Ctx {
    fn from_ref(s: &AppState) -> Self {
        sessions::Ctx {
            log: s.inner.log.clone(),
            board: s.inner.board.clone(),
            clients: s.inner.clients.clone(),
            secrets: s.inner.secrets.clone(),
            listening: s.inner.listening.clone(),
            token: s.inner.token.clone(),
        }
    }
}

impl FromRef<AppState> for observe::Ctx {
    fn from_ref(s: &AppState) -> Self {
        observe::Ctx {
            log: s.inner.log.clone(),
            clients: s.inner.clients.clone(),
            shutdown: s.inner.shutdown.clone(),
            issuer: s.inner.issuer.clone(),
        }
    }
}

impl FromRef<AppState> for instructor::Ctx {
    fn from_ref(s: &AppState) -> Self {
        instructor::Ctx {
            token: s.inner.token.clone(),
            log: s.inner.log.clone(),
            faults: s.inner.faults.clone(),
            clients: s.inner.clients.clone(),
            hub: s.inner.hub.clone(),
            transcripts: s.inner.transcripts.clone(),
            board: s.inner.board.clone(),
            listening: s.inner.listening.clone(),
            public_url: s.inner.config.public_url.clone(),
            issuer: s.inner.issuer.clone(),
        }
    }
}

impl FromRef<AppState> for rehearsal::Ctx {
    fn from_ref(s: &AppState) -> Self {
        rehearsal::Ctx {
            token: s.inner.token.clone(),
            rehearsal: s.inner.rehearsal.clone(),
            clients: s.inner.clients.clone(),
            log: s.inner.log.clone(),
            shutdown: s.inner.shutdown.clone(),
            listening: s.inner.listening.clone(),
        }
    }
}
