//! The steps inside the system that serve an exchange, which its client never sees (the
//! inside view): the balancer's hand-off to this replica, read from the headers a trusted
//! balancer adds, and each database statement, noted by the backend that runs it.
//!
//! The capture layer runs each request inside [`collect`]; a backend calls [`query`] (or
//! [`note`]) around a statement, and the capture layer records what was collected as
//! [`protocol::Hop`] events between the request and its answer. Outside a collection (work
//! no recorded request set off) nothing is noted.

use std::cell::RefCell;
use std::future::Future;

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

/// What one request's handling noted, bounded.
#[derive(Debug, Default)]
pub struct Collected {
    pub steps: Vec<Noted>,
    pub dropped: u64,
}

tokio::task_local! {
    static STEPS: RefCell<Collected>;
}

/// Runs `fut`, collecting the steps it notes.
pub async fn collect<F: Future>(fut: F) -> (F::Output, Collected) {
    STEPS
        .scope(RefCell::new(Collected::default()), async move {
            let out = fut.await;
            (out, STEPS.with(|s| std::mem::take(&mut *s.borrow_mut())))
        })
        .await
}

/// Notes a step of the request being handled (nothing outside [`collect`]).
pub fn note(started_us: Micros, step: Step, took_us: u64) {
    let _ = STEPS.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.steps.len() < MAX_PER_EXCHANGE {
            s.steps.push(Noted { started_us, step, took_us });
        } else {
            s.dropped += 1;
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

impl Handoff {
    /// The hand-off the balancer's headers describe, if both are there and well formed (a
    /// name of at most 64 visible characters, a time in microseconds).
    pub fn from_headers(headers: &HeaderMap) -> Option<Handoff> {
        let server = headers.get(SERVER_HEADER)?.to_str().ok()?.trim();
        let at_us = headers.get(AT_HEADER)?.to_str().ok()?.trim().parse::<Micros>().ok()?;
        let fits = !server.is_empty() && server.len() <= 64 && server.chars().all(|c| c.is_ascii_graphic());
        (fits && at_us > 0).then(|| Handoff { server: server.to_owned(), at_us })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn step(n: u64) -> Step {
        Step::Query { database: "sqlite".into(), statement: "SELECT".into(), table: "t".into(), rows: n }
    }

    #[tokio::test]
    async fn steps_are_collected_inside_a_request_only_and_bounded() {
        note(1, step(0), 1);
        let ((), got) = collect(async {
            for i in 0..(MAX_PER_EXCHANGE as u64 + 3) {
                note(10 + i as Micros, step(i), 2);
            }
        })
        .await;
        assert_eq!(got.steps.len(), MAX_PER_EXCHANGE);
        assert_eq!(got.steps[0], Noted { started_us: 10, step: step(0), took_us: 2 });
        assert_eq!(got.dropped, 3, "the rest counted");
        let ((), none) = collect(async {}).await;
        assert!(none.steps.is_empty() && none.dropped == 0, "nothing leaks from the last request");
    }

    #[tokio::test]
    async fn a_query_is_timed_with_its_rows() {
        let (out, got) =
            collect(query("postgresql", "SELECT", "students", |v: &Vec<u8>| v.len() as u64, async {
                Ok::<_, ()>(vec![1, 2, 3])
            }))
            .await;
        assert_eq!(out, Ok(vec![1, 2, 3]));
        let Step::Query { database, statement, table, rows } = &got.steps[0].step else { panic!() };
        assert_eq!(
            (database.as_str(), statement.as_str(), table.as_str(), *rows),
            ("postgresql", "SELECT", "students", 3)
        );
        let (_, failed) =
            collect(query("sqlite", "INSERT", "t", |_: &()| 1, async { Err::<(), _>("no") })).await;
        assert!(matches!(failed.steps[0].step, Step::Query { rows: 0, .. }));
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
        h.insert(AT_HEADER, HeaderValue::from_static("soon"));
        assert_eq!(Handoff::from_headers(&h), None);
        h.insert(AT_HEADER, HeaderValue::from_static("1"));
        h.insert(SERVER_HEADER, HeaderValue::from_static("two words"));
        assert_eq!(Handoff::from_headers(&h), None);
    }
}
