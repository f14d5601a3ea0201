//! The transcripts' storage: SQLite (WAL) on disk, mirrored in memory for reads.
//!
//! Every write runs in one SQLite transaction, holds the connection's lock from start to
//! commit, and updates the in-memory mirror before the lock is released; a write returns
//! only after it is committed (`synchronous = FULL`). Reads only touch the mirror. Ids come
//! from `AUTOINCREMENT`, so they are never reused within a database, not even after a delete
//! or a restart.
//!
//! A store on disk also keeps the change feed ([`ChangeFeed`]): each write records its change
//! in a `changes` table in the same transaction (an outbox), and announces it to the feed in
//! commit order before the lock is released. The feed's `seq` is that table's
//! `AUTOINCREMENT` key, so it is durable: after a restart it goes on counting, and the last
//! changes are read back, so a client resuming with `since` misses none and gets none twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use protocol::channel::{Change, ChangeKind};
use protocol::{CourseGrade, Student, StudentId, Transcript};
use rusqlite::{Connection, OptionalExtension, params};

use crate::changes::{ChangeFeed, KEEP};

/// Changes kept in the database (older ones are deleted as new ones come); a client that
/// was away for longer starts from the feed's oldest.
pub const KEEP_STORED: i64 = 10_000;

/// Why a store operation did not happen.
#[derive(Debug)]
pub enum StoreError {
    NoSuchStudent(StudentId),
    NoSuchGrade {
        id: StudentId,
        course: String,
    },
    AlreadyGraded {
        id: StudentId,
        course: String,
    },
    DuplicateCourse(String),
    /// The database was written by a newer wirescope (its schema version is higher).
    TooNew(usize),
    Db(rusqlite::Error),
    /// The database is out of reach (a cluster's PostgreSQL down): try again shortly.
    Unavailable(String),
    /// The database refused (a cluster's PostgreSQL): our fault, never the client's.
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NoSuchStudent(id) => write!(f, "no student with id {id}"),
            StoreError::NoSuchGrade { id, course } => {
                write!(f, "student {id} has no grade in course \"{course}\"")
            }
            StoreError::AlreadyGraded { id, course } => {
                write!(f, "student {id} already has a grade in course \"{course}\"")
            }
            StoreError::DuplicateCourse(course) => {
                write!(f, "course \"{course}\" appears more than once in grades")
            }
            StoreError::TooNew(v) => {
                write!(f, "the database has schema version {v}, newer than this wirescope knows")
            }
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Unavailable(why) => write!(f, "the database is out of reach: {why}"),
            StoreError::Backend(why) => write!(f, "database error: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE students (
        id   INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL
    );
    CREATE INDEX students_by_name ON students(name, id);
    CREATE TABLE grades (
        student_id INTEGER NOT NULL REFERENCES students(id) ON DELETE CASCADE,
        course     TEXT NOT NULL,
        grade      REAL NOT NULL,
        PRIMARY KEY (student_id, course)
    );
",
    "
    CREATE TABLE changes (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT NOT NULL,
        student_id INTEGER NOT NULL,
        course     TEXT,
        at_us      INTEGER NOT NULL,
        cause      INTEGER
    );
",
];

/// The file name of the transcripts database inside the data directory.
pub const FILE_NAME: &str = "transcripts.sqlite3";

pub struct Store {
    conn: Mutex<Connection>,
    mirror: RwLock<BTreeMap<StudentId, Transcript>>,
    path: Option<PathBuf>,
    /// The durable change feed (a store on disk); an in-memory store records no changes.
    feed: Option<Arc<ChangeFeed>>,
}

/// A change a write makes, before it is numbered.
struct NewChange {
    kind: ChangeKind,
    student_id: StudentId,
    course: Option<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens the database at `path`; creates, migrates and seeds it only when it has no schema
    /// yet. An existing database keeps its data (and is migrated forward if older).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut store = Self::with_connection(conn, Some(path.to_owned()))?;
        let (recent, latest) = recent_changes(&lock(&store.conn))?;
        store.feed = Some(Arc::new(ChangeFeed::resume(recent, latest)));
        Ok(store)
    }

    /// Replaces the database at `path` with a new, seeded one (ids start again at 1).
    pub fn reset(path: &Path) -> Result<Store, StoreError> {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Db(rusqlite::Error::ToSqlConversionFailure(Box::new(e))));
                }
            }
        }
        Self::open(path)
    }

    /// A seeded database that lives only in memory (tests, scratch stores).
    pub fn in_memory() -> Store {
        let conn = Connection::open_in_memory().expect("SQLite can always open an in-memory database");
        Self::with_connection(conn, None).expect("a new in-memory database can be created")
    }

    fn with_connection(mut conn: Connection, path: Option<PathBuf>) -> Result<Store, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew(version));
        }
        let fresh = version == 0;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        if fresh {
            for (name, grades) in protocol::transcripts::seed() {
                insert(&tx, name, &grades)?;
            }
        }
        tx.commit()?;
        let mirror = load(&conn)?;
        Ok(Store { conn: Mutex::new(conn), mirror: RwLock::new(mirror), path, feed: None })
    }

    /// The durable change feed of a store on disk (None in memory).
    pub fn feed(&self) -> Option<&Arc<ChangeFeed>> {
        self.feed.as_ref()
    }

    /// Where the database lives (None for an in-memory one).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read<R>(&self, f: impl FnOnce(&BTreeMap<StudentId, Transcript>) -> R) -> R {
        f(&self.mirror.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` in one transaction, with the change it makes (caused by exchange `cause`)
    /// recorded in the same transaction; on commit, applies `then` to the mirror and announces
    /// the change, both before the lock is released (so changes are announced in `seq` order).
    fn write<R>(
        &self,
        cause: Option<u64>,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &BTreeMap<StudentId, Transcript>) -> Result<R, StoreError>,
        change: impl FnOnce(&R) -> Option<NewChange>,
        then: impl FnOnce(&mut BTreeMap<StudentId, Transcript>, &R),
    ) -> Result<R, StoreError> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = self.read(|m| f(&tx, m))?;
        let recorded = match (&self.feed, change(&out)) {
            (Some(_), Some(change)) => Some(record(&tx, change, cause)?),
            _ => None,
        };
        tx.commit()?;
        then(&mut self.mirror.write().unwrap_or_else(PoisonError::into_inner), &out);
        if let (Some(feed), Some(change)) = (&self.feed, recorded) {
            feed.announce(change);
        }
        Ok(out)
    }

    /// Every transcript, by id.
    pub fn list(&self) -> Vec<Transcript> {
        self.read(|m| m.values().cloned().collect())
    }

    /// The newest student's id and how many grades they have (no copy of the store).
    pub fn newest(&self) -> Option<(StudentId, usize)> {
        self.read(|m| m.last_key_value().map(|(id, t)| (*id, t.grades.len())))
    }

    pub fn get(&self, id: StudentId) -> Option<Transcript> {
        self.read(|m| m.get(&id).cloned())
    }

    /// Ids of the students with exactly this name, ascending.
    pub fn ids_named(&self, name: &str) -> Vec<StudentId> {
        self.read(|m| {
            m.values().filter(|t| t.student.student_name == name).map(|t| t.student.student_id).collect()
        })
    }

    pub fn grade(&self, id: StudentId, course: &str) -> Result<f64, StoreError> {
        self.read(|m| {
            let t = m.get(&id).ok_or(StoreError::NoSuchStudent(id))?;
            t.grades
                .iter()
                .find(|g| g.course == course)
                .map(|g| g.grade)
                .ok_or_else(|| StoreError::NoSuchGrade { id, course: course.to_owned() })
        })
    }

    /// Adds a student with these grades (one per course); returns the new id. Blocking.
    pub fn create(
        &self,
        name: &str,
        grades: &[CourseGrade],
        cause: Option<u64>,
    ) -> Result<StudentId, StoreError> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = grades.iter().find(|g| !seen.insert(g.course.as_str())) {
            return Err(StoreError::DuplicateCourse(dup.course.clone()));
        }
        self.write(
            cause,
            |tx, _| insert(tx, name, grades),
            |id| Some(NewChange { kind: ChangeKind::StudentCreated, student_id: *id, course: None }),
            |m, id| {
                let student = Student { student_id: *id, student_name: name.to_owned() };
                m.insert(*id, Transcript { student, grades: grades.to_vec() });
            },
        )
    }

    /// Deletes a student and their grades. Blocking.
    pub fn delete(&self, id: StudentId, cause: Option<u64>) -> Result<(), StoreError> {
        self.write(
            cause,
            |tx, m| {
                if !m.contains_key(&id) {
                    return Err(StoreError::NoSuchStudent(id));
                }
                tx.execute("DELETE FROM students WHERE id = ?1", params![id])?;
                Ok(())
            },
            |()| Some(NewChange { kind: ChangeKind::StudentDeleted, student_id: id, course: None }),
            |m, ()| {
                m.remove(&id);
            },
        )
    }

    /// Records a grade in a course the student has no grade in yet. Blocking.
    pub fn add_grade(
        &self,
        id: StudentId,
        course: &str,
        grade: f64,
        cause: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(
            cause,
            |tx, m| {
                let t = m.get(&id).ok_or(StoreError::NoSuchStudent(id))?;
                if t.grades.iter().any(|g| g.course == course) {
                    return Err(StoreError::AlreadyGraded { id, course: course.to_owned() });
                }
                tx.execute(
                    "INSERT INTO grades (student_id, course, grade) VALUES (?1, ?2, ?3)",
                    params![id, course, grade],
                )?;
                Ok(())
            },
            |()| {
                Some(NewChange {
                    kind: ChangeKind::GradeAdded,
                    student_id: id,
                    course: Some(course.to_owned()),
                })
            },
            |m, ()| {
                if let Some(t) = m.get_mut(&id) {
                    t.grades.push(CourseGrade::new(course, grade));
                }
            },
        )
    }

    /// Puts the seed data back: every student removed, the seed's students added with new ids
    /// (ids keep counting up, so none is reused). Not a change of the feed (the instructor's
    /// reset is its own note). Blocking.
    pub fn restore_seed(&self) -> Result<Vec<StudentId>, StoreError> {
        let seed = protocol::transcripts::seed();
        self.write(
            None,
            |tx, _| {
                tx.execute("DELETE FROM students", [])?;
                seed.iter().map(|(name, grades)| insert(tx, name, grades)).collect()
            },
            |_| None,
            |m, ids: &Vec<StudentId>| {
                m.clear();
                for (id, (name, grades)) in ids.iter().zip(&seed) {
                    let student = Student { student_id: *id, student_name: (*name).to_owned() };
                    m.insert(*id, Transcript { student, grades: grades.clone() });
                }
            },
        )
    }
}

/// Records a change in the outbox table (in the caller's transaction), numbered by its key.
fn record(tx: &Connection, change: NewChange, cause: Option<u64>) -> Result<Change, StoreError> {
    let at_us = crate::clock::now_us();
    let kind = serde_json::to_value(change.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    tx.prepare_cached(
        "INSERT INTO changes (kind, student_id, course, at_us, cause) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![kind, change.student_id, change.course, at_us, cause.map(|c| c as i64)])?;
    let seq = tx.last_insert_rowid();
    tx.prepare_cached("DELETE FROM changes WHERE seq <= ?1")?.execute(params![seq - KEEP_STORED])?;
    Ok(Change {
        seq: seq as u64,
        kind: change.kind,
        student_id: change.student_id,
        course: change.course,
        at_us,
        cause,
    })
}

/// The last [`KEEP`] changes recorded, oldest first, and the newest `seq` ever given (0 when
/// none: `AUTOINCREMENT` remembers it even when its row was deleted).
fn recent_changes(conn: &Connection) -> Result<(Vec<Change>, u64), StoreError> {
    let latest: i64 = conn
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'changes'", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let mut stmt = conn.prepare(
        "SELECT seq, kind, student_id, course, at_us, cause FROM changes ORDER BY seq DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![KEEP as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<i64>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, kind, student_id, course, at_us, cause) = row?;
        // A kind this version does not know (written by a newer one) is skipped, not fatal.
        let Ok(kind) = serde_json::from_value::<ChangeKind>(serde_json::Value::String(kind)) else {
            continue;
        };
        out.push(Change { seq: seq as u64, kind, student_id, course, at_us, cause: cause.map(|c| c as u64) });
    }
    out.reverse();
    Ok((out, latest as u64))
}

fn insert(tx: &Connection, name: &str, grades: &[CourseGrade]) -> Result<StudentId, StoreError> {
    tx.execute("INSERT INTO students (name) VALUES (?1)", params![name])?;
    let id = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached("INSERT INTO grades (student_id, course, grade) VALUES (?1, ?2, ?3)")?;
    for g in grades {
        stmt.execute(params![id, g.course, g.grade])?;
    }
    Ok(id)
}

fn load(conn: &Connection) -> Result<BTreeMap<StudentId, Transcript>, StoreError> {
    let mut out = BTreeMap::new();
    let mut students = conn.prepare("SELECT id, name FROM students ORDER BY id")?;
    for row in students.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
        let (id, name) = row?;
        let student = Student { student_id: id, student_name: name };
        out.insert(id, Transcript { student, grades: Vec::new() });
    }
    // rowid order is insertion order: grades keep the order they were given in.
    let mut grades = conn.prepare("SELECT student_id, course, grade FROM grades ORDER BY rowid")?;
    for row in
        grades.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?)))?
    {
        let (id, course, grade) = row?;
        if let Some(t) = out.get_mut(&id) {
            t.grades.push(CourseGrade::new(course, grade));
        }
    }
    Ok(out)
}

/// Whether `path` already holds a transcripts schema (for the start-up message).
pub fn exists(path: &Path) -> bool {
    path.is_file()
        && Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).optional())
            .is_ok_and(|v| v.unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_holds_the_seed() {
        let s = Store::in_memory();
        let all = s.list();
        let summary: Vec<(i64, &str, usize)> = all
            .iter()
            .map(|t| (t.student.student_id, t.student.student_name.as_str(), t.grades.len()))
            .collect();
        assert_eq!(summary, [(1, "avery", 2), (2, "blake", 1), (3, "blake", 2), (4, "casey", 1)]);
        assert_eq!(s.grade(3, "DemoClass2").unwrap(), 40.0);
        assert_eq!(s.ids_named("blake"), [2, 3]);
    }

    #[test]
    fn each_write_records_its_change_and_the_numbering_goes_on_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let s = Store::open(&path).unwrap();
        let feed = s.feed().unwrap().clone();
        assert_eq!(feed.since(0).latest, 0, "the seed is no change");
        let id = s.create("dana", &[], Some(7)).unwrap();
        s.add_grade(id, "Net", 90.0, None).unwrap();
        assert!(s.add_grade(id, "Net", 80.0, None).is_err());
        assert!(s.delete(999, None).is_err());
        s.delete(id, Some(9)).unwrap();
        let got = feed.since(0).changes;
        let kinds: Vec<_> = got.iter().map(|c| (c.seq, c.kind, c.cause)).collect();
        assert_eq!(
            kinds,
            [
                (1, ChangeKind::StudentCreated, Some(7)),
                (2, ChangeKind::GradeAdded, None),
                (3, ChangeKind::StudentDeleted, Some(9))
            ],
            "refused writes record nothing"
        );
        drop(s);
        // Reopened: the same changes, and the next one numbered after them, even when the
        // table was emptied (AUTOINCREMENT remembers).
        let s = Store::open(&path).unwrap();
        assert_eq!(s.feed().unwrap().since(0).changes, got);
        lock(&s.conn).execute("DELETE FROM changes", []).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.feed().unwrap().since(0).latest, 3);
        s.create("erin", &[], None).unwrap();
        assert_eq!(s.feed().unwrap().since(3).changes[0].seq, 4);
        // A store in memory (the lab's scratch) keeps no feed.
        assert!(Store::in_memory().feed().is_none());
    }

    #[test]
    fn ids_are_never_reused_even_after_deleting_the_newest() {
        let s = Store::in_memory();
        let a = s.create("dana", &[], None).unwrap();
        assert_eq!(a, 5);
        s.delete(a, None).unwrap();
        assert_eq!(s.create("erin", &[], None).unwrap(), 6);
        s.restore_seed().unwrap();
        let ids: Vec<i64> = s.list().iter().map(|t| t.student.student_id).collect();
        assert_eq!(ids, [7, 8, 9, 10]);
    }

    #[test]
    fn grade_rules_hold() {
        let s = Store::in_memory();
        assert!(matches!(s.add_grade(4, "DemoClass", 1.0, None), Err(StoreError::AlreadyGraded { .. })));
        assert!(matches!(s.add_grade(99, "X", 1.0, None), Err(StoreError::NoSuchStudent(99))));
        s.add_grade(4, "Intro 101", 77.5, None).unwrap();
        assert_eq!(s.grade(4, "Intro 101").unwrap(), 77.5);
        assert!(matches!(s.grade(4, "Nope"), Err(StoreError::NoSuchGrade { .. })));
        let dup = [CourseGrade::new("A", 1.0), CourseGrade::new("A", 2.0)];
        assert!(matches!(s.create("x", &dup, None), Err(StoreError::DuplicateCourse(c)) if c == "A"));
        assert_eq!(s.list().len(), 4, "a refused create stores nothing");
    }

    #[test]
    fn data_survives_reopening_and_reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(!exists(&path));
        {
            let s = Store::open(&path).unwrap();
            let id = s.create("dana", &[CourseGrade::new("Networks", 91.0)], None).unwrap();
            s.delete(1, None).unwrap();
            assert_eq!(id, 5);
        }
        assert!(exists(&path));
        let s = Store::open(&path).unwrap();
        let ids: Vec<i64> = s.list().iter().map(|t| t.student.student_id).collect();
        assert_eq!(ids, [2, 3, 4, 5], "reopened with its data, not reseeded");
        assert_eq!(s.grade(5, "Networks").unwrap(), 91.0);
        assert_eq!(s.create("erin", &[], None).unwrap(), 6);
        drop(s);
        let s = Store::reset(&path).unwrap();
        assert_eq!(s.list().len(), 4);
        assert_eq!(s.create("fay", &[], None).unwrap(), 5, "a reset database counts from the seed again");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"my notes, not a database, long enough to have a header....... ").unwrap();
        assert!(Store::open(&path).is_err());
        assert!(std::fs::read(&path).unwrap().starts_with(b"my notes"));
    }
}
