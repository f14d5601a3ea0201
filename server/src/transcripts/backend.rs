//! Where transcripts live, behind one narrow trait: [`Transcripts`]. The embedded default is
//! SQLite in the data directory ([`Embedded`], over [`Store`]); a cluster keeps them in
//! PostgreSQL ([`super::postgres::Postgres`]), which every replica shares. One contract test
//! suite (`server/tests/stores.rs`) runs against both.
//!
//! Every write is committed before it returns, records its change in the same transaction,
//! and announces that change on the backend's feed in commit order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use protocol::{CourseGrade, StudentId, Transcript};

use super::store::{Store, StoreError};
use crate::changes::ChangeFeed;

/// A future a backend answers with.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The transcripts' store, whichever backend holds it.
pub trait Transcripts: Send + Sync + 'static {
    /// Every transcript, by id.
    fn list(&self) -> Answer<'_, Vec<Transcript>>;
    fn get(&self, id: StudentId) -> Answer<'_, Option<Transcript>>;
    /// Ids of the students with exactly this name, ascending.
    fn ids_named<'a>(&'a self, name: &'a str) -> Answer<'a, Vec<StudentId>>;
    fn grade<'a>(&'a self, id: StudentId, course: &'a str) -> Answer<'a, f64>;
    /// Adds a student with these grades (one per course); the new id, never one used before.
    fn create(&self, name: String, grades: Vec<CourseGrade>, cause: Option<u64>) -> Answer<'_, StudentId>;
    fn delete(&self, id: StudentId, cause: Option<u64>) -> Answer<'_, ()>;
    /// Records a grade in a course the student has no grade in yet.
    fn add_grade(&self, id: StudentId, course: String, grade: f64, cause: Option<u64>) -> Answer<'_, ()>;
    /// Puts the seed back (every student removed, the seed's added with new ids).
    fn restore_seed(&self) -> Answer<'_, Vec<StudentId>>;
    /// The change feed its writes announce, numbered durably.
    fn feed(&self) -> &Arc<ChangeFeed>;
    /// Where the transcripts live, for the start-up line (never a password).
    fn describe(&self) -> String;
}

/// The embedded backend: [`Store`] (SQLite, mirrored in memory), its writes on the blocking
/// pool (a commit waits for the disk).
pub struct Embedded {
    store: Arc<Store>,
    feed: Arc<ChangeFeed>,
}

impl Embedded {
    /// Over a store on disk (its feed is durable); an in-memory store gets a feed of its own.
    pub fn new(store: Store) -> Self {
        let feed = store.feed().cloned().unwrap_or_default();
        Self { store: Arc::new(store), feed }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the write task failed: {e}")))?
    }
}

/// One write transaction on SQLite, noted as a step of the exchange being served (the inside
/// view; its commit included), with the rows `rows` counts. Reads are answered from memory:
/// no step.
async fn sqlite<R>(
    statement: &'static str,
    table: &'static str,
    rows: impl FnOnce(&R) -> u64,
    write: impl Future<Output = Result<R, StoreError>>,
) -> Result<R, StoreError> {
    crate::hops::query("sqlite", statement, table, rows, write).await
}

/// A write of one row.
fn one<R>(_: &R) -> u64 {
    1
}

impl Transcripts for Embedded {
    fn list(&self) -> Answer<'_, Vec<Transcript>> {
        Box::pin(async move { Ok(self.store.list()) })
    }

    fn get(&self, id: StudentId) -> Answer<'_, Option<Transcript>> {
        Box::pin(async move { Ok(self.store.get(id)) })
    }

    fn ids_named<'a>(&'a self, name: &'a str) -> Answer<'a, Vec<StudentId>> {
        Box::pin(async move { Ok(self.store.ids_named(name)) })
    }

    fn grade<'a>(&'a self, id: StudentId, course: &'a str) -> Answer<'a, f64> {
        Box::pin(async move { self.store.grade(id, course) })
    }

    fn create(&self, name: String, grades: Vec<CourseGrade>, cause: Option<u64>) -> Answer<'_, StudentId> {
        Box::pin(sqlite("INSERT", "students", one, self.blocking(move |s| s.create(&name, &grades, cause))))
    }

    fn delete(&self, id: StudentId, cause: Option<u64>) -> Answer<'_, ()> {
        Box::pin(sqlite("DELETE", "students", one, self.blocking(move |s| s.delete(id, cause))))
    }

    fn add_grade(&self, id: StudentId, course: String, grade: f64, cause: Option<u64>) -> Answer<'_, ()> {
        Box::pin(sqlite(
            "INSERT",
            "grades",
            one,
            self.blocking(move |s| s.add_grade(id, &course, grade, cause)),
        ))
    }

    fn restore_seed(&self) -> Answer<'_, Vec<StudentId>> {
        // Every student removed and the seed's added, in one transaction: the seed's rows.
        let seeded = |ids: &Vec<StudentId>| ids.len() as u64;
        Box::pin(sqlite("DELETE, INSERT", "students", seeded, self.blocking(Store::restore_seed)))
    }

    fn feed(&self) -> &Arc<ChangeFeed> {
        &self.feed
    }

    fn describe(&self) -> String {
        match self.store.path() {
            Some(p) => format!("SQLite {}", p.display()),
            None => "SQLite in memory".to_owned(),
        }
    }
}
