//! The steps inside the system that serve an exchange, which its client never sees (the
//! inside view): the balancer's hand-off to this replica, read from the headers a trusted
//! balancer adds, and each database statement, noted by the backend that runs it.
//!
//! The capture layer runs each request inside [`collect`] with a [`Sink`] that records a step
//! as a [`protocol::Hop`] event of the exchange; a backend calls [`query`] (or [`note`])
//! around a statement, and the step is recorded the moment it ends — before anything the
//! statement sets off (a change pushed to other clients) is. Outside a collection (work no
//! recorded request set off) nothing is noted.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use axum::http::HeaderMap;
use protocol::{Micros, Step};

/// The header in which a trusted balancer names the server it chose (HAProxy's
/// `http-send-name-header`).
pub const SERVER_HEADER: &str = "x-wirescope-balancer-server";
/// The header in which a trusted balancer writes when it received the request, in
/// microseconds since the epoch (HAProxy's `date(0,us)`).
pub const AT_HEADER: &str = "x-wirescope-balancer-at";

/// The steps one exchange keeps; past these a single [`Step::Dropped`] counts the rest.
pub const MAX_PER_EXCHANGE: usize = 32;

/// One step noted while a request was served: when it began (server clock, µs), what it was,
/// and how long it took (µs).
#[derive(Debug, Clone, PartialEq)]
pub struct Noted {
    pub started_us: Micros,
    pub step: Step,
    pub took_us: u64,
}

/// Where a request's steps go as they are noted (the capture layer records each as an event).
pub type Sink = Arc<dyn Fn(Noted) + Send + Sync>;

struct Scope {
    sink: Sink,
    kept: Cell<usize>,
    dropped: Cell<u64>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `fut`, handing each step it notes to `sink` at once, at most [`MAX_PER_EXCHANGE`];
/// answers how many more were noted and not handed on.
pub async fn collect<F: Future>(sink: Sink, fut: F) -> (F::Output, u64) {
    let scope = Scope { sink, kept: Cell::new(0), dropped: Cell::new(0) };
    SCOPE
        .scope(scope, async move {
            let out = fut.await;
            (out, SCOPE.with(|s| s.dropped.get()))
        })
        .await
}

/// Notes a step of the request being handled (nothing outside [`collect`]).
pub fn note(started_us: Micros, step: Step, took_us: u64) {
    let _ = SCOPE.try_with(|s| {
        if s.kept.get() < MAX_PER_EXCHANGE {
            s.kept.set(s.kept.get() + 1);
            (s.sink)(Noted { started_us, step, took_us });
        } else {
            s.dropped.set(s.dropped.get() + 1);
        }
    });
}

/// Runs one database statement and notes it: `statement` (`SELECT`, `INSERT`, …) on `table`
/// of `database`, with the rows `rows` counts in its result (a failed statement notes 0).
pub async fn query<T, E>(
    database: &'static str,
    statement: &'static str,
    table: &'static str,
    rows: impl FnOnce(&T) -> u64,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started_us = crate::clock::now_us();
    let timer = std::time::Instant::now();
    let out = fut.await;
    let took_us = timer.elapsed().as_micros() as u64;
    let rows = out.as_ref().map(rows).unwrap_or(0);
    let step = Step::Query {
        database: database.to_owned(),
        statement: statement.to_owned(),
        table: table.to_owned(),
        rows,
    };
    note(started_us, step, took_us);
    out
}

/// A trusted balancer's hand-off of this request: the server it chose, and when it received
/// the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub server: String,
    pub at_us: Micros,
}

/// How long before its arrival a hand-off may have begun: a time further back (or ahead by
/// more than [`HANDOFF_AHEAD_US`], clocks apart) is not a balancer's, and is not believed.
pub const HANDOFF_WINDOW_US: Micros = 60_000_000;
/// How far ahead of this server's clock a balancer's may be.
pub const HANDOFF_AHEAD_US: Micros = 1_000_000;

impl Handoff {
    /// The hand-off the balancer's headers describe, if both are there and well formed (a
    /// name of at most 64 visible characters, a time in microseconds).
    pub fn from_headers(headers: &HeaderMap) -> Option<Handoff> {
        let server = headers.get(SERVER_HEADER)?.to_str().ok()?.trim();
        let at_us = headers.get(AT_HEADER)?.to_str().ok()?.trim().parse::<Micros>().ok()?;
        let fits = !server.is_empty() && server.len() <= 64 && server.chars().all(|c| c.is_ascii_graphic());
        (fits && at_us > 0).then(|| Handoff { server: server.to_owned(), at_us })
    }

    /// How long the hand-off took for a request this server received at `received_us`: from
    /// the balancer's time to that, if the balancer's time is believable (at most
    /// [`HANDOFF_WINDOW_US`] before, [`HANDOFF_AHEAD_US`] after).
    pub fn took_until(&self, received_us: Micros) -> Option<u64> {
        let took = received_us.checked_sub(self.at_us)?;
        (-HANDOFF_AHEAD_US..=HANDOFF_WINDOW_US).contains(&took).then_some(took.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn step(n: u64) -> Step {
        Step::Query { database: "sqlite".into(), statement: "SELECT".into(), table: "t".into(), rows: n }
    }

    /// A sink that keeps what it is handed.
    fn kept() -> (Sink, Arc<std::sync::Mutex<Vec<Noted>>>) {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = got.clone();
        (Arc::new(move |n| into.lock().unwrap().push(n)), got)
    }

    #[tokio::test]
    async fn steps_are_handed_on_as_noted_inside_a_request_only_and_bounded() {
        let (sink, got) = kept();
        note(1, step(99), 1);
        let seen = got.clone();
        let ((), dropped) = collect(sink, async move {
            note(10, step(0), 2);
            assert_eq!(seen.lock().unwrap().len(), 1, "handed on at once, not when the request ends");
            for i in 1..(MAX_PER_EXCHANGE as u64 + 3) {
                note(10 + i as Micros, step(i), 2);
            }
        })
        .await;
        let got = got.lock().unwrap();
        assert_eq!(got.len(), MAX_PER_EXCHANGE, "the step noted outside any request is nowhere");
        assert_eq!(got[0], Noted { started_us: 10, step: step(0), took_us: 2 });
        assert_eq!(dropped, 3, "the rest counted");
    }

    #[tokio::test]
    async fn a_query_is_timed_with_its_rows() {
        let (sink, got) = kept();
        let run = query("postgresql", "SELECT", "students", |v: &Vec<u8>| v.len() as u64, async {
            Ok::<_, ()>(vec![1, 2, 3])
        });
        let (out, _) = collect(sink.clone(), run).await;
        assert_eq!(out, Ok(vec![1, 2, 3]));
        let _ = collect(sink, query("sqlite", "INSERT", "t", |_: &()| 1, async { Err::<(), _>("no") })).await;
        let got = got.lock().unwrap();
        let Step::Query { database, statement, table, rows } = &got[0].step else { panic!() };
        assert_eq!(
            (database.as_str(), statement.as_str(), table.as_str(), *rows),
            ("postgresql", "SELECT", "students", 3)
        );
        assert!(matches!(got[1].step, Step::Query { rows: 0, .. }), "a failed statement: no rows");
    }

    #[test]
    fn a_handoff_needs_both_headers_well_formed() {
        let mut h = HeaderMap::new();
        assert_eq!(Handoff::from_headers(&h), None);
        h.insert(SERVER_HEADER, HeaderValue::from_static("replica-2"));
        assert_eq!(Handoff::from_headers(&h), None, "no time");
        h.insert(AT_HEADER, HeaderValue::from_static("1764790000123456"));
        assert_eq!(
            Handoff::from_headers(&h),
            Some(Handoff { server: "replica-2".into(), at_us: 1_764_790_000_123_456 })
        );
        let handoff = Handoff::from_headers(&h).unwrap();
        let at = handoff.at_us;
        assert_eq!(handoff.took_until(at + 700), Some(700));
        assert_eq!(handoff.took_until(at - 300), Some(0), "clocks a little apart: no negative time");
        assert_eq!(handoff.took_until(at + HANDOFF_WINDOW_US + 1), None, "not a balancer's time");
        assert_eq!(handoff.took_until(at - HANDOFF_AHEAD_US - 1), None, "from the future");
        h.insert(AT_HEADER, HeaderValue::from_static("soon"));
        assert_eq!(Handoff::from_headers(&h), None);
        h.insert(AT_HEADER, HeaderValue::from_static("1"));
        h.insert(SERVER_HEADER, HeaderValue::from_static("two words"));
        assert_eq!(Handoff::from_headers(&h), None);
    }
}
