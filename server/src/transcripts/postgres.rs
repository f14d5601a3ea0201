//! The cluster's transcripts: PostgreSQL, shared by every replica, through a pool of
//! connections. No replica keeps a copy in memory, so a read sees every write acknowledged by
//! any replica (read-your-writes behind round robin).
//!
//! Writes on one replica run one at a time, and across replicas under a transaction-scoped
//! advisory lock, so the `changes` outbox is numbered in commit order; each write's change
//! is inserted in its own transaction and announced on this replica's feed after the commit.
//! Ids come from sequences, never reused. A lost database answers [`StoreError::Unavailable`]
//! (503 with `Retry-After`); nothing acknowledged was lost with it.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use protocol::channel::{Change, ChangeKind};
use protocol::{CourseGrade, Student, StudentId, Transcript};
use tokio_postgres::{GenericClient, NoTls, Transaction};

use super::backend::{Answer, Transcripts};
use super::store::StoreError;
use crate::changes::{ChangeFeed, KEEP};

/// The schema, created by whichever replica comes first (under [`LOCK`]).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS students (
        id   BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS students_by_name ON students (name, id);
    CREATE TABLE IF NOT EXISTS grades (
        student_id BIGINT NOT NULL REFERENCES students (id) ON DELETE CASCADE,
        course     TEXT NOT NULL,
        grade      DOUBLE PRECISION NOT NULL,
        pos        BIGSERIAL,
        PRIMARY KEY (student_id, course)
    );
    CREATE TABLE IF NOT EXISTS changes (
        seq        BIGSERIAL PRIMARY KEY,
        kind       TEXT NOT NULL,
        student_id BIGINT NOT NULL,
        course     TEXT,
        at_us      BIGINT NOT NULL,
        cause      BIGINT
    );
    CREATE TABLE IF NOT EXISTS idempotency_keys (
        key     TEXT PRIMARY KEY,
        at_us   BIGINT NOT NULL,
        status  INTEGER,
        headers TEXT,
        body    BYTEA
    );
    CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (at_us);
    CREATE SEQUENCE IF NOT EXISTS replica_starts MINVALUE 1 MAXVALUE 2097151 CYCLE;
    CREATE TABLE IF NOT EXISTS wirescope_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
";

/// The advisory lock every replica takes for the schema and for each write.
const LOCK: i64 = 0x7769_7265_7363_6f70;
/// Connections per replica.
const POOL: usize = 16;
/// Longest wait for a connection (from the pool, or a new one).
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Changes kept in the table (older ones deleted as new ones come).
const KEEP_STORED: i64 = 10_000;

/// Transcripts in PostgreSQL.
pub struct Postgres {
    pool: Pool,
    feed: Arc<ChangeFeed>,
    /// Writes on this replica, one at a time (commit and announce in `seq` order).
    writing: tokio::sync::Mutex<()>,
    describe: String,
    /// With NATS, the feed is fed from the stream (every replica's changes), not locally.
    fanout: Option<super::fanout::Fanout>,
}

fn backend(e: tokio_postgres::Error) -> StoreError {
    // An answer from the database is its verdict; anything else means it is out of reach.
    if e.as_db_error().is_some() {
        StoreError::Backend(e.to_string())
    } else {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    }
}

/// Runs one statement and notes it as a step of the exchange being served (the inside view):
/// `statement` on `table`, with the rows `rows` counts.
async fn pg<T>(
    statement: &'static str,
    table: &'static str,
    rows: impl FnOnce(&T) -> u64,
    run: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    crate::hops::query("postgresql", statement, table, rows, run).await.map_err(backend)
}

fn unreachable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

impl Postgres {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`), creates the schema if it
    /// is missing and seeds it once; `reset` empties it first (ids start again at 1).
    pub async fn connect(url: &str, reset: bool) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("not a PostgreSQL URL: {e}")))?;
        let describe = describe(&config);
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // A database out of reach answers within seconds, never leaves a request hanging.
        let pool = Pool::builder(manager)
            .max_size(POOL)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .build()
            .map_err(unreachable)?;
        let mut client = pool.get().await.map_err(unreachable)?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await.map_err(backend)?;
        tx.batch_execute(SCHEMA).await.map_err(backend)?;
        if reset {
            tx.batch_execute(
                "TRUNCATE students, grades, changes, idempotency_keys RESTART IDENTITY; DELETE FROM wirescope_meta WHERE key = 'seeded';",
            )
            .await
            .map_err(backend)?;
        }
        let seeded = tx
            .query_opt("SELECT 1 FROM wirescope_meta WHERE key = 'seeded'", &[])
            .await
            .map_err(backend)?
            .is_some();
        if !seeded {
            for (name, grades) in protocol::transcripts::seed() {
                insert(&tx, name, &grades).await?;
            }
            tx.execute("INSERT INTO wirescope_meta (key, value) VALUES ('seeded', '1')", &[])
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        let (recent, latest) = recent_changes(&**client).await?;
        drop(client);
        Ok(Self {
            pool,
            feed: Arc::new(ChangeFeed::resume(recent, latest)),
            writing: tokio::sync::Mutex::new(()),
            describe,
            fanout: None,
        })
    }

    /// Shares the change feed with the other replicas through NATS JetStream at `url`
    /// ([`super::fanout`]).
    pub async fn with_nats(mut self, url: &str) -> Result<Self, StoreError> {
        let fanout = super::fanout::start(url, self.pool.clone(), self.feed.clone())
            .await
            .map_err(StoreError::Unavailable)?;
        self.describe.push_str(&format!(", changes through NATS {url}"));
        self.fanout = Some(fanout);
        Ok(self)
    }

    /// Idempotency keys kept in the same database ([`super::keys::PgKeys`]); a retry waits
    /// at most `wait` for a first request still running elsewhere.
    pub fn keys(&self, wait: std::time::Duration) -> super::keys::PgKeys {
        super::keys::PgKeys::new(self.pool.clone(), wait)
    }

    /// A number for this start of a replica, unique among the last two million starts that
    /// share the database: a cluster's replicas keep their exchange ids and their published
    /// events apart with it.
    pub async fn replica_number(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT nextval('replica_starts')", &[]).await.map_err(backend)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unreachable)
    }

    /// Runs `op` in a write transaction under the lock, records the change it returns, commits
    /// and announces it.
    async fn write<R: Send>(
        &self,
        cause: Option<u64>,
        op: impl for<'t> FnOnce(
            &'t Transaction<'t>,
        ) -> Answer<'t, (R, Option<(ChangeKind, StudentId, Option<String>)>)>
        + Send,
    ) -> Result<R, StoreError> {
        let _one_at_a_time = self.writing.lock().await;
        let mut client = self.client().await?;
        let tx = pg("BEGIN", "", |_| 0, client.transaction()).await?;
        pg("LOCK", "", |_| 0, tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])).await?;
        let (out, change) = op(&tx).await?;
        let change = match change {
            Some((kind, student_id, course)) => Some(record(&tx, kind, student_id, course, cause).await?),
            None => None,
        };
        pg("COMMIT", "", |_| 0, tx.commit()).await?;
        match (&self.fanout, change) {
            (Some(fanout), Some(_)) => fanout.nudge(),
            (None, Some(change)) => self.feed.announce(change),
            (_, None) => {}
        }
        Ok(out)
    }

    async fn read(&self, id: Option<StudentId>) -> Result<Vec<Transcript>, StoreError> {
        let client = self.client().await?;
        let sql =
            "SELECT s.id, s.name, g.course, g.grade FROM students s LEFT JOIN grades g ON g.student_id = s.id
                 WHERE $1::BIGINT IS NULL OR s.id = $1 ORDER BY s.id, g.pos";
        let rows = pg("SELECT", "students, grades", |r| r.len() as u64, client.query(sql, &[&id])).await?;
        let mut out: Vec<Transcript> = Vec::new();
        for row in rows {
            let (id, name): (i64, String) = (row.get(0), row.get(1));
            if out.last().is_none_or(|t| t.student.student_id != id) {
                out.push(Transcript {
                    student: Student { student_id: id, student_name: name },
                    grades: Vec::new(),
                });
            }
            if let (Some(course), Some(grade)) =
                (row.get::<_, Option<String>>(2), row.get::<_, Option<f64>>(3))
                && let Some(t) = out.last_mut()
            {
                t.grades.push(CourseGrade::new(course, grade));
            }
        }
        Ok(out)
    }
}

/// Where the database is, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("PostgreSQL {host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

async fn insert(tx: &Transaction<'_>, name: &str, grades: &[CourseGrade]) -> Result<StudentId, StoreError> {
    let sql = "INSERT INTO students (name) VALUES ($1) RETURNING id";
    let id: i64 = pg("INSERT", "students", |_| 1, tx.query_one(sql, &[&name])).await?.get(0);
    for g in grades {
        let sql = "INSERT INTO grades (student_id, course, grade) VALUES ($1, $2, $3)";
        pg("INSERT", "grades", |n| *n, tx.execute(sql, &[&id, &g.course, &g.grade])).await?;
    }
    Ok(id)
}

async fn record(
    tx: &Transaction<'_>,
    kind: ChangeKind,
    student_id: StudentId,
    course: Option<String>,
    cause: Option<u64>,
) -> Result<Change, StoreError> {
    let at_us = crate::clock::now_us();
    let name =
        serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let cause_db = cause.map(|c| c as i64);
    let sql = "INSERT INTO changes (kind, student_id, course, at_us, cause) VALUES ($1, $2, $3, $4, $5) RETURNING seq";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&name, &student_id, &course, &at_us, &cause_db];
    let seq: i64 = pg("INSERT", "changes", |_| 1, tx.query_one(sql, &params)).await?.get(0);
    let sql = "DELETE FROM changes WHERE seq <= $1";
    pg("DELETE", "changes", |n| *n, tx.execute(sql, &[&(seq - KEEP_STORED)])).await?;
    Ok(Change { seq: seq as u64, kind, student_id, course, at_us, cause })
}

/// The last [`KEEP`] changes, oldest first, and the newest `seq` ever given.
async fn recent_changes(client: &impl GenericClient) -> Result<(Vec<Change>, u64), StoreError> {
    let latest: i64 = client
        .query_one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes_seq_seq", &[])
        .await
        .map_err(backend)?
        .get(0);
    let rows = client
        .query(
            "SELECT seq, kind, student_id, course, at_us, cause FROM changes ORDER BY seq DESC LIMIT $1",
            &[&(KEEP as i64)],
        )
        .await
        .map_err(backend)?;
    let out = rows.iter().rev().filter_map(super::fanout::change_from_row).collect();
    Ok((out, latest as u64))
}

async fn exists(tx: &Transaction<'_>, id: StudentId) -> Result<bool, StoreError> {
    let sql = "SELECT 1 FROM students WHERE id = $1";
    Ok(pg("SELECT", "students", |r| u64::from(r.is_some()), tx.query_opt(sql, &[&id])).await?.is_some())
}

impl Transcripts for Postgres {
    fn list(&self) -> Answer<'_, Vec<Transcript>> {
        Box::pin(self.read(None))
    }

    fn get(&self, id: StudentId) -> Answer<'_, Option<Transcript>> {
        Box::pin(async move { Ok(self.read(Some(id)).await?.pop()) })
    }

    fn ids_named<'a>(&'a self, name: &'a str) -> Answer<'a, Vec<StudentId>> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = "SELECT id FROM students WHERE name = $1 ORDER BY id";
            let rows = pg("SELECT", "students", |r| r.len() as u64, client.query(sql, &[&name])).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn grade<'a>(&'a self, id: StudentId, course: &'a str) -> Answer<'a, f64> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = "SELECT (SELECT grade FROM grades WHERE student_id = $1 AND course = $2) FROM students WHERE id = $1";
            let found = |r: &Option<tokio_postgres::Row>| u64::from(r.is_some());
            let row = pg("SELECT", "grades", found, client.query_opt(sql, &[&id, &course])).await?;
            match row.map(|r| r.get::<_, Option<f64>>(0)) {
                None => Err(StoreError::NoSuchStudent(id)),
                Some(None) => Err(StoreError::NoSuchGrade { id, course: course.to_owned() }),
                Some(Some(grade)) => Ok(grade),
            }
        })
    }

    fn create(&self, name: String, grades: Vec<CourseGrade>, cause: Option<u64>) -> Answer<'_, StudentId> {
        Box::pin(async move {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = grades.iter().find(|g| !seen.insert(g.course.as_str())) {
                return Err(StoreError::DuplicateCourse(dup.course.clone()));
            }
            self.write(cause, move |tx| {
                Box::pin(async move {
                    let id = insert(tx, &name, &grades).await?;
                    Ok((id, Some((ChangeKind::StudentCreated, id, None))))
                })
            })
            .await
        })
    }

    fn delete(&self, id: StudentId, cause: Option<u64>) -> Answer<'_, ()> {
        Box::pin(self.write(cause, move |tx| {
            Box::pin(async move {
                let sql = "DELETE FROM students WHERE id = $1";
                let gone = pg("DELETE", "students", |n| *n, tx.execute(sql, &[&id])).await?;
                if gone == 0 {
                    return Err(StoreError::NoSuchStudent(id));
                }
                Ok(((), Some((ChangeKind::StudentDeleted, id, None))))
            })
        }))
    }

    fn add_grade(&self, id: StudentId, course: String, grade: f64, cause: Option<u64>) -> Answer<'_, ()> {
        Box::pin(self.write(cause, move |tx| {
            Box::pin(async move {
                if !exists(tx, id).await? {
                    return Err(StoreError::NoSuchStudent(id));
                }
                let sql = "INSERT INTO grades (student_id, course, grade) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
                let added = pg("INSERT", "grades", |n| *n, tx.execute(sql, &[&id, &course, &grade])).await?;
                if added == 0 {
                    return Err(StoreError::AlreadyGraded { id, course });
                }
                Ok(((), Some((ChangeKind::GradeAdded, id, Some(course)))))
            })
        }))
    }

    fn restore_seed(&self) -> Answer<'_, Vec<StudentId>> {
        Box::pin(self.write(None, |tx| {
            Box::pin(async move {
                pg("DELETE", "students", |n| *n, tx.execute("DELETE FROM students", &[])).await?;
                let mut ids = Vec::new();
                for (name, grades) in protocol::transcripts::seed() {
                    ids.push(insert(tx, name, &grades).await?);
                }
                Ok((ids, None))
            })
        }))
    }

    fn feed(&self) -> &Arc<ChangeFeed> {
        &self.feed
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
