//! The event log on disk: `events.sqlite3` in the data directory. One writer thread appends
//! events in batches — each batch one row (a chunk: its events' JSON, one per line), so the
//! database does one insert per batch, not per event. Sessions group chunks; old sessions are
//! pruned past a disk cap.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::entry::Entry;

pub const FILE_NAME: &str = "events.sqlite3";

/// How long the writer gathers events before committing them in one transaction.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS sessions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT NOT NULL,
        started_us INTEGER NOT NULL,
        ended_us   INTEGER
    );
    CREATE TABLE IF NOT EXISTS chunks (
        first_seq INTEGER PRIMARY KEY,
        last_seq  INTEGER NOT NULL,
        session   INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        at_us     INTEGER NOT NULL,
        events    INTEGER NOT NULL,
        data      TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS chunks_by_session ON chunks(session, first_seq);
    CREATE INDEX IF NOT EXISTS chunks_by_last ON chunks(last_seq);
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
";

/// `seq`s are reserved on disk in blocks this large, ahead of use: events are numbered before
/// the writer stores them, so after a crash (SIGKILL, power loss) the last events observers saw
/// may never have reached the disk. The next start numbers from above the reservation, so a
/// `seq` once shown is never given to another event.
pub const SEQ_BLOCK: u64 = 100_000;

fn reserve(conn: &Connection, upto: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('reserved_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
        params![upto as i64],
    )
    .map(drop)
}

/// The ceiling of the `seq`s that may be handed out: every number up to it is reserved on
/// disk (through its own connection, `synchronous=FULL`, so a reservation survives power loss
/// too). The log checks it before numbering an event, under its lock; the reservation is
/// normally moved ahead half a block early, off the request path.
pub struct Reservation {
    conn: Mutex<Connection>,
    upto: AtomicU64,
    extending: AtomicBool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("upto", &self.upto.load(Ordering::Relaxed)).finish()
    }
}

impl Reservation {
    /// The reservation of the log at `path`, currently reaching `upto`.
    pub fn open(path: &Path, upto: u64) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn: Mutex::new(conn), upto: AtomicU64::new(upto), extending: AtomicBool::new(false) })
    }

    /// Before `seq` is handed out: makes sure it is reserved on disk (blocking, only when the
    /// early extension did not come in time).
    pub fn cover(&self, seq: u64) {
        if seq <= self.upto.load(Ordering::Acquire) {
            return;
        }
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if seq <= self.upto.load(Ordering::Acquire) {
            return;
        }
        match reserve(&conn, seq + SEQ_BLOCK) {
            Ok(()) => {
                self.upto.fetch_max(seq + SEQ_BLOCK, Ordering::AcqRel);
            }
            Err(e) => tracing::error!(error = %e, seq, "could not reserve event numbers"),
        }
    }

    /// Whether, with `seq` handed out, the reservation should move ahead now; true for one
    /// caller at a time, who then calls [`Reservation::extend`].
    pub fn claim_extension(&self, seq: u64) -> bool {
        seq + SEQ_BLOCK / 2 > self.upto.load(Ordering::Acquire)
            && !self.extending.swap(true, Ordering::AcqRel)
    }

    /// Reserves a block beyond `seq` (blocking: run it off the request path).
    pub fn extend(&self, seq: u64) {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        match reserve(&conn, seq + SEQ_BLOCK) {
            Ok(()) => {
                self.upto.fetch_max(seq + SEQ_BLOCK, Ordering::AcqRel);
            }
            Err(e) => tracing::error!(error = %e, "could not reserve event numbers"),
        }
        self.extending.store(false, Ordering::Release);
    }

    /// A clean stop begins, `upto` being the last number handed out: any later number must be
    /// reserved on disk before it is used (see [`Reservation::seal`]).
    pub fn lower(&self, upto: u64) {
        let _conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        self.upto.store(upto, Ordering::Release);
    }

    /// The clean stop ends (everything handed out before [`Reservation::lower`] is stored):
    /// the reservation on disk shrinks to what was handed out, so the next start numbers on
    /// without a gap — unless numbers were handed out since, which stay reserved.
    pub fn seal(&self) {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let upto = self.upto.load(Ordering::Acquire);
        let r = conn.execute(
            "UPDATE meta SET value = MAX(?1, COALESCE((SELECT MAX(last_seq) FROM chunks), 0))
             WHERE key = 'reserved_seq'",
            params![upto as i64],
        );
        if let Err(e) = r {
            tracing::error!(error = %e, "could not seal the event log");
        }
    }
}

/// The `seq` of a stored event line (`{"seq":N,…`).
fn line_seq(line: &str) -> Option<u64> {
    let rest = line.strip_prefix(r#"{"seq":"#)?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// A recorded session, as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: u64,
    pub name: String,
    pub started_us: i64,
    pub ended_us: Option<i64>,
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Published by the instructor for everyone to replay; else the instructor's alone.
    pub published: bool,
}

/// Read access to the log on disk (the writer thread has its own connection).
pub struct LogDb {
    path: Option<PathBuf>,
    read: Mutex<Connection>,
}

impl std::fmt::Debug for LogDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDb").field("path", &self.path).finish_non_exhaustive()
    }
}

fn open(path: Option<&Path>) -> rusqlite::Result<Connection> {
    let conn = match path {
        Some(p) => Connection::open(p)?,
        None => Connection::open_in_memory()?,
    };
    // auto_vacuum must be chosen before the first table exists; it is kept afterwards.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    // Added after the first release: a session is the instructor's until published.
    let has_published =
        conn.prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'published'")?.exists([])?;
    if !has_published {
        conn.execute_batch("ALTER TABLE sessions ADD COLUMN published INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(conn)
}

impl LogDb {
    /// Opens (creating if absent) the log at `path`, starts a new session named `name`, and
    /// answers the session's id and the highest `seq` ever recorded.
    pub fn open(path: &Path, name: &str, now_us: i64) -> rusqlite::Result<(LogDb, Connection, u64, u64)> {
        let write = open(Some(path))?;
        let read = Connection::open(path)?;
        read.busy_timeout(Duration::from_secs(5))?;
        Self::start(write, read, Some(path.to_owned()), name, now_us)
    }

    fn start(
        write: Connection,
        read: Connection,
        path: Option<PathBuf>,
        name: &str,
        now_us: i64,
    ) -> rusqlite::Result<(LogDb, Connection, u64, u64)> {
        // A session left open by a crash ends where its last event was.
        write.execute(
            "UPDATE sessions SET ended_us = COALESCE((SELECT MAX(at_us) FROM chunks WHERE session = sessions.id), started_us)
             WHERE ended_us IS NULL",
            [],
        )?;
        write.execute("INSERT INTO sessions (name, started_us) VALUES (?1, ?2)", params![name, now_us])?;
        let session = write.last_insert_rowid() as u64;
        let max_seq: Option<i64> = write.query_row("SELECT MAX(last_seq) FROM chunks", [], |r| r.get(0))?;
        let reserved: Option<i64> = write
            .query_row("SELECT value FROM meta WHERE key = 'reserved_seq'", [], |r| r.get(0))
            .optional()?;
        // Numbering resumes above anything stored or reserved; the next block is reserved now.
        let base = max_seq.unwrap_or(0).max(reserved.unwrap_or(0)).max(0) as u64;
        reserve(&write, base + SEQ_BLOCK)?;
        Ok((LogDb { path, read: Mutex::new(read) }, write, session, base))
    }

    /// Events after `seq` (exclusive) and before `before` (exclusive), oldest first; at most
    /// about `limit` (whole chunks are read).
    pub fn events_between(
        &self,
        seq: u64,
        before: u64,
        limit: usize,
    ) -> rusqlite::Result<Vec<(u64, String)>> {
        let conn = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn.prepare_cached(
            "SELECT data FROM chunks WHERE last_seq > ?1 AND first_seq < ?2 ORDER BY first_seq",
        )?;
        let mut out = Vec::new();
        let mut rows = stmt.query(params![seq as i64, before as i64])?;
        while let Some(row) = rows.next()? {
            let data: String = row.get(0)?;
            for line in data.lines() {
                if let Some(s) = line_seq(line)
                    && s > seq
                    && s < before
                {
                    out.push((s, line.to_owned()));
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `chunks` stored chunks of one session after `seq` (exclusive): its events, oldest
    /// first. Whole sessions are read page by page with this, never all at once.
    pub fn session_page(
        &self,
        session: u64,
        seq: u64,
        chunks: usize,
    ) -> rusqlite::Result<Vec<(u64, String)>> {
        let conn = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn.prepare_cached(
            "SELECT data FROM chunks WHERE session = ?1 AND last_seq > ?2 ORDER BY first_seq LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![session as i64, seq as i64, chunks as i64])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let data: String = row.get(0)?;
            out.extend(
                data.lines().filter_map(|l| line_seq(l).filter(|s| *s > seq).map(|s| (s, l.to_owned()))),
            );
        }
        Ok(out)
    }

    /// Every session, newest first.
    pub fn sessions(&self) -> rusqlite::Result<Vec<SessionInfo>> {
        let conn = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn.prepare_cached(
            "SELECT s.id, s.name, s.started_us, s.ended_us, COALESCE(SUM(c.events), 0), MIN(c.first_seq), MAX(c.last_seq),
                    s.published
             FROM sessions s LEFT JOIN chunks c ON c.session = s.id GROUP BY s.id ORDER BY s.id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SessionInfo {
                id: r.get::<_, i64>(0)? as u64,
                name: r.get(1)?,
                started_us: r.get(2)?,
                ended_us: r.get(3)?,
                events: r.get::<_, i64>(4)? as u64,
                first_seq: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                last_seq: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                published: r.get::<_, i64>(7)? != 0,
            })
        })?;
        rows.collect()
    }

    pub fn session(&self, id: u64) -> rusqlite::Result<Option<SessionInfo>> {
        Ok(self.sessions()?.into_iter().find(|s| s.id == id))
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// What the writer thread is told besides events.
#[derive(Debug)]
pub enum Command {
    Append(Arc<Entry>),
    /// Close the current session and start a new one; answers its id.
    NewSession {
        name: String,
        now_us: i64,
        reply: std::sync::mpsc::Sender<rusqlite::Result<u64>>,
    },
    Rename {
        id: u64,
        name: String,
        reply: std::sync::mpsc::Sender<rusqlite::Result<bool>>,
    },
    Delete {
        id: u64,
        reply: std::sync::mpsc::Sender<rusqlite::Result<bool>>,
    },
    /// Publish a session for everyone to replay, or take it back.
    Publish {
        id: u64,
        published: bool,
        reply: std::sync::mpsc::Sender<rusqlite::Result<bool>>,
    },
    /// Answers once everything sent before it is committed.
    Flush(std::sync::mpsc::Sender<()>),
    /// A clean stop: every event numbered before it was handed to the writer; once they are
    /// stored, the reservation shrinks back (see [`Reservation::seal`]). Answers when done.
    Seal(std::sync::mpsc::Sender<()>),
}

/// The writer: appends in batches (one transaction per batch), prunes past `cap_bytes`.
pub fn writer(
    mut conn: Connection,
    mut session: u64,
    cap_bytes: u64,
    reservation: Arc<Reservation>,
    rx: Receiver<Command>,
) {
    let mut batch: Vec<Arc<Entry>> = Vec::with_capacity(1024);

    let mut last_prune = Instant::now();
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Gather for a moment: one transaction for many events costs far less than many. The
        // thread sleeps instead of waiting on the queue, so senders need not wake it each time.
        let mut commands: Vec<Command> = first.into_iter().collect();
        if matches!(commands.first(), Some(Command::Append(_))) {
            std::thread::sleep(BATCH_WINDOW);
        }
        while commands.len() < 65_536 {
            match rx.try_recv() {
                Ok(c) => commands.push(c),
                Err(_) => break,
            }
        }
        for c in commands {
            match c {
                Command::Append(e) => batch.push(e),
                other => {
                    store(&mut conn, session, &mut batch);
                    match other {
                        Command::NewSession { name, now_us, reply } => {
                            let r = conn
                                .execute(
                                    "UPDATE sessions SET ended_us = ?1 WHERE id = ?2",
                                    params![now_us, session as i64],
                                )
                                .and_then(|_| {
                                    conn.execute(
                                        "INSERT INTO sessions (name, started_us) VALUES (?1, ?2)",
                                        params![name, now_us],
                                    )
                                })
                                .map(|_| conn.last_insert_rowid() as u64);
                            if let Ok(id) = r {
                                session = id;
                            }
                            let _ = reply.send(r);
                        }
                        Command::Rename { id, name, reply } => {
                            let r = conn.execute(
                                "UPDATE sessions SET name = ?1 WHERE id = ?2",
                                params![name, id as i64],
                            );
                            let _ = reply.send(r.map(|n| n > 0));
                        }
                        Command::Publish { id, published, reply } => {
                            let r = conn.execute(
                                "UPDATE sessions SET published = ?1 WHERE id = ?2",
                                params![i64::from(published), id as i64],
                            );
                            let _ = reply.send(r.map(|n| n > 0));
                        }
                        Command::Delete { id, reply } => {
                            let r = if id == session {
                                Ok(false)
                            } else {
                                conn.execute("DELETE FROM sessions WHERE id = ?1", params![id as i64])
                                    .map(|n| n > 0)
                            };
                            let _ = conn.execute_batch("PRAGMA incremental_vacuum");
                            let _ = reply.send(r);
                        }
                        Command::Flush(reply) => {
                            let _ = reply.send(());
                        }
                        Command::Seal(reply) => {
                            reservation.seal();
                            let _ = reply.send(());
                        }
                        Command::Append(_) => unreachable!(),
                    }
                }
            }
        }
        store(&mut conn, session, &mut batch);
        if last_prune.elapsed() >= Duration::from_secs(5) {
            last_prune = Instant::now();
            if let Err(e) = prune(&conn, session, cap_bytes) {
                tracing::warn!(error = %e, "pruning the event log failed");
            }
        }
    }
    store(&mut conn, session, &mut batch);
    let _ = conn.execute(
        "UPDATE sessions SET ended_us = (SELECT MAX(at_us) FROM chunks WHERE session = ?1) WHERE id = ?1",
        params![session as i64],
    );
}

/// Stores the batch as one chunk.
fn store(conn: &mut Connection, session: u64, batch: &mut Vec<Arc<Entry>>) {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return };
    let mut data = String::with_capacity(batch.iter().map(|e| e.json.len() + 1).sum());
    for e in batch.iter() {
        data.push_str(&e.json);
        data.push('\n');
    }
    let result = conn.execute(
        "INSERT OR IGNORE INTO chunks (first_seq, last_seq, session, at_us, events, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![first.seq as i64, last.seq as i64, session as i64, last.server_us, batch.len() as i64, data],
    );
    if let Err(e) = result {
        tracing::error!(error = %e, events = batch.len(), "could not persist events");
    }
    batch.clear();
}

/// Bytes the database uses (pages in use, not free ones).
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free) * size) as u64)
}

/// Deletes the oldest sessions (then, if one session alone is too big, its oldest events)
/// until the database fits in `cap_bytes`.
pub fn prune(conn: &Connection, current: u64, cap_bytes: u64) -> rusqlite::Result<u64> {
    let mut removed = 0;
    while used_bytes(conn)? > cap_bytes {
        let oldest: Option<i64> = conn
            .query_row("SELECT MIN(id) FROM sessions WHERE id != ?1", params![current as i64], |r| r.get(0))
            .optional()?
            .flatten();
        let n = match oldest {
            Some(id) => conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])?,
            None => conn.execute(
                "DELETE FROM chunks WHERE first_seq IN (SELECT first_seq FROM chunks ORDER BY first_seq LIMIT 16)",
                [],
            )?,
        };
        conn.execute_batch("PRAGMA incremental_vacuum")?;
        if n == 0 {
            break;
        }
        removed += n as u64;
    }
    Ok(removed)
}
