//! One contract for the transcripts' backends: the same cases, the same expected answers,
//! against the embedded SQLite store and a real PostgreSQL (the cluster's); and one for the
//! idempotency keys' stores, in memory and in PostgreSQL.

mod common;

use std::sync::Arc;

use protocol::CourseGrade;
use protocol::channel::ChangeKind;
use server::idempotency::{Claim, Idempotency, Keys, Stored};
use server::transcripts::postgres::Postgres;
use server::transcripts::{Embedded, Store, StoreError, Transcripts};

/// Opens a backend over the same storage each time (a restart); `reset` starts it over.
trait Backend {
    async fn open(&self, reset: bool) -> Arc<dyn Transcripts>;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    async fn open(&self, reset: bool) -> Arc<dyn Transcripts> {
        let path = self.0.path().join(server::transcripts::store::FILE_NAME);
        let store = if reset { Store::reset(&path) } else { Store::open(&path) };
        Arc::new(Embedded::new(store.unwrap()))
    }
}

struct Pg(String);

impl Backend for Pg {
    async fn open(&self, reset: bool) -> Arc<dyn Transcripts> {
        Arc::new(Postgres::connect(&self.0, reset).await.unwrap())
    }
}

fn ids(s: &[protocol::Transcript]) -> Vec<i64> {
    s.iter().map(|t| t.student.student_id).collect()
}

/// (seq, kind, student, cause) of every change after `since`.
fn changes(s: &Arc<dyn Transcripts>, since: u64) -> Vec<(u64, ChangeKind, i64, Option<u64>)> {
    s.feed().since(since).changes.iter().map(|c| (c.seq, c.kind, c.student_id, c.cause)).collect()
}

async fn contract(b: &impl Backend) {
    let s = b.open(true).await;
    // The seed, as the course's own server has it.
    let all = s.list().await.unwrap();
    assert_eq!(ids(&all), [1, 2, 3, 4]);
    assert_eq!(all[0].grades, [CourseGrade::new("DemoClass", 100.0), CourseGrade::new("DemoClass2", 100.0)]);
    assert_eq!(s.ids_named("blake").await.unwrap(), [2, 3]);
    assert_eq!(s.ids_named("nobody").await.unwrap(), Vec::<i64>::new());
    assert_eq!(s.grade(3, "DemoClass2").await.unwrap(), 40.0);
    assert!(matches!(s.grade(3, "Nope").await, Err(StoreError::NoSuchGrade { id: 3, .. })));
    assert!(matches!(s.grade(99, "X").await, Err(StoreError::NoSuchStudent(99))));
    assert!(s.get(99).await.unwrap().is_none());
    assert_eq!(s.feed().since(0).latest, 0, "the seed is no change");

    // Writes, their refusals, and the changes they record.
    let grades = vec![CourseGrade::new("Net", 91.5), CourseGrade::new("Db", 70.0)];
    assert_eq!(s.create("dana".into(), grades.clone(), Some(11)).await.unwrap(), 5);
    assert_eq!(s.get(5).await.unwrap().unwrap().grades, grades, "grades keep their order");
    let twice = vec![CourseGrade::new("Net", 1.0), CourseGrade::new("Net", 2.0)];
    assert!(
        matches!(s.create("x".into(), twice, None).await, Err(StoreError::DuplicateCourse(c)) if c == "Net")
    );
    s.add_grade(5, "Os".into(), 60.0, None).await.unwrap();
    assert!(matches!(
        s.add_grade(5, "Os".into(), 61.0, None).await,
        Err(StoreError::AlreadyGraded { id: 5, .. })
    ));
    assert!(matches!(s.add_grade(99, "Os".into(), 1.0, None).await, Err(StoreError::NoSuchStudent(99))));
    assert_eq!(s.grade(5, "Os").await.unwrap(), 60.0);
    s.delete(5, Some(12)).await.unwrap();
    assert!(matches!(s.delete(5, None).await, Err(StoreError::NoSuchStudent(5))));
    assert_eq!(
        s.create("erin".into(), vec![], None).await.unwrap(),
        6,
        "the deleted newest id is not reused"
    );
    let before = changes(&s, 0);
    assert_eq!(
        before,
        [
            (1, ChangeKind::StudentCreated, 5, Some(11)),
            (2, ChangeKind::GradeAdded, 5, None),
            (3, ChangeKind::StudentDeleted, 5, Some(12)),
            (4, ChangeKind::StudentCreated, 6, None),
        ],
        "each acknowledged write, once, in order; refused ones record nothing"
    );

    // A restart: the same transcripts, the same feed, and the numbering goes on.
    drop(s);
    let s = b.open(false).await;
    assert_eq!(ids(&s.list().await.unwrap()), [1, 2, 3, 4, 6]);
    assert_eq!(changes(&s, 0), before);
    assert_eq!(s.create("fay".into(), vec![], None).await.unwrap(), 7);
    assert_eq!(changes(&s, 4), [(5, ChangeKind::StudentCreated, 7, None)]);

    // Writes at once: distinct ids, and the feed in commit order without a hole.
    let created: Vec<i64> = futures_util::future::join_all(
        (0..16).map(|i| s.create(format!("crowd {i}"), vec![CourseGrade::new("C", f64::from(i))], None)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let mut sorted = created.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 16);
    let after = changes(&s, 5);
    assert_eq!(after.iter().map(|c| c.0).collect::<Vec<_>>(), (6..=21).collect::<Vec<_>>());
    let mut announced: Vec<i64> = after.iter().map(|c| c.2).collect();
    announced.sort_unstable();
    assert_eq!(announced, sorted);

    // The instructor's reset: the seed with new ids, and no change recorded.
    let seeded = s.restore_seed().await.unwrap();
    assert_eq!(seeded.len(), 4);
    assert!(seeded.iter().all(|id| *id > *sorted.last().unwrap()), "{seeded:?}");
    assert_eq!(ids(&s.list().await.unwrap()), seeded);
    assert_eq!(s.feed().since(0).latest, 21);

    // Starting over (`--reset`): ids and the feed from the beginning.
    drop(s);
    let s = b.open(true).await;
    assert_eq!(ids(&s.list().await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(s.feed().since(0).latest, 0);
}

#[tokio::test]
async fn the_embedded_sqlite_store_keeps_the_contract() {
    contract(&Sqlite(tempfile::tempdir().unwrap())).await;
}

#[tokio::test]
async fn the_postgresql_store_keeps_the_contract() {
    contract(&Pg(common::pg::fresh_database().await)).await;
}

/// A kept answer: `status` with one header and `body`.
fn answer(status: u16, body: &'static str) -> Stored {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    Stored { status: axum::http::StatusCode::from_u16(status).unwrap(), headers, body: body.into() }
}

async fn claim(keys: &Arc<dyn Keys>, key: &str) -> Claim {
    keys.claim(key.to_owned()).await.unwrap()
}

/// The idempotency keys' contract: the first claim runs, its answer is replayed to every later
/// claim; a retry arriving while the first runs waits for its answer; a key given up (5xx) runs
/// again; keys are apart.
async fn keys_contract(keys: Arc<dyn Keys>) {
    let Claim::Run(first) = claim(&keys, "c|/transcripts|k1").await else { panic!("the first claim runs") };
    // A retry while the first runs: it waits, then replays the first's answer.
    let waiting = {
        let keys = keys.clone();
        tokio::spawn(async move { keys.claim("c|/transcripts|k1".to_owned()).await.unwrap() })
    };
    // Another key is not held up by it.
    let Claim::Run(other) = claim(&keys, "c|/transcripts|k2").await else { panic!("another key runs") };
    other.finish(Some(answer(201, "other"))).await;
    first.finish(Some(answer(200, "5"))).await;
    let Claim::Replay(replayed) = waiting.await.unwrap() else { panic!("the waiting retry replays") };
    assert_eq!(replayed, answer(200, "5"));
    let Claim::Replay(again) = claim(&keys, "c|/transcripts|k1").await else { panic!("replayed") };
    assert_eq!(again, answer(200, "5"));
    let Claim::Replay(other) = claim(&keys, "c|/transcripts|k2").await else { panic!("replayed") };
    assert_eq!(other.body, "other");
    // Given up: the next claim runs for real.
    let Claim::Run(failed) = claim(&keys, "c|/transcripts|k3").await else { panic!("runs") };
    failed.finish(None).await;
    let Claim::Run(retried) = claim(&keys, "c|/transcripts|k3").await else { panic!("runs again") };
    retried.finish(Some(answer(200, "7"))).await;
}

#[tokio::test]
async fn keys_in_memory_keep_the_contract() {
    keys_contract(Arc::new(Idempotency::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_postgresql_keep_the_contract_and_are_shared() {
    let url = common::pg::fresh_database().await;
    let store = Postgres::connect(&url, false).await.unwrap();
    keys_contract(Arc::new(store.keys(std::time::Duration::from_secs(10)))).await;
    // Another replica's store (its own pool) replays what this one kept; a first request
    // still running elsewhere past the wait is answered 409 (Busy), not run twice.
    let elsewhere = Postgres::connect(&url, false).await.unwrap();
    let other: Arc<dyn Keys> = Arc::new(elsewhere.keys(std::time::Duration::from_millis(200)));
    let Claim::Replay(kept) = claim(&other, "c|/transcripts|k1").await else { panic!("shared") };
    assert_eq!(kept, answer(200, "5"));
    let here: Arc<dyn Keys> = Arc::new(store.keys(std::time::Duration::from_secs(10)));
    let Claim::Run(running) = claim(&here, "c|/transcripts|slow").await else { panic!("runs") };
    assert!(matches!(claim(&other, "c|/transcripts|slow").await, Claim::Busy));
    running.finish(Some(answer(200, "9"))).await;
    assert!(matches!(claim(&other, "c|/transcripts|slow").await, Claim::Replay(_)));
}

/// The real binary with `--postgres`: the same API over HTTP, and nothing acknowledged is
/// lost when it is killed (SIGKILL) and started again (a replica's restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgresql_answers_the_api_and_loses_nothing_to_sigkill() {
    let url = common::pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    tokio::task::spawn_blocking(move || {
        let server = common::RealServer::start(dir.path(), &["--postgres", &url]);
        let (status, id) = common::http(server.addr, "POST", "/transcripts", Some(r#"{"studentName":"pg"}"#));
        assert_eq!((status, id.as_str()), (200, "5"));
        assert_eq!(common::http(server.addr, "POST", "/transcripts/5/Net", Some("88")).0, 204);
        assert_eq!(
            common::http(server.addr, "POST", "/transcripts/5/Net", Some("1")).0,
            400,
            "graded already"
        );
        assert_eq!(common::http(server.addr, "GET", "/studentids?name=pg", None), (200, "[5]".to_owned()));
        server.kill();
        let server = common::RealServer::start(dir.path(), &["--postgres", &url]);
        let (status, body) = common::http(server.addr, "GET", "/transcripts/5", None);
        assert_eq!(status, 200);
        assert!(body.contains(r#""course":"Net""#) && body.contains("88"), "{body}");
        let (_, changes) = common::http(server.addr, "GET", "/api/changes?since=1", None);
        let v: serde_json::Value = serde_json::from_str(&changes).unwrap();
        assert_eq!(v["latest"], 2);
        assert_eq!(v["changes"][0]["kind"], "gradeAdded");
        assert_eq!(common::http(server.addr, "POST", "/transcripts", Some(r#"{"studentName":"x"}"#)).1, "6");
    })
    .await
    .unwrap();
}

/// PostgreSQL stopped under a running server: reads and writes answer a JSON 503 with
/// `Retry-After`, nothing acknowledged is lost, and it all works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_down_requests_get_503_and_nothing_acknowledged_is_lost() {
    let mut pg = common::pg::Own::start().await;
    let url = pg.database("down").await;
    let dir = tempfile::tempdir().unwrap();
    let server = common::RealServer::start(dir.path(), &["--postgres", &url]);
    let addr = server.addr;
    let http = move |method: &'static str, path: &'static str, body: Option<&'static str>| {
        tokio::task::spawn_blocking(move || common::http_with(addr, method, path, &[], body).unwrap())
    };
    let (status, _, id) = http("POST", "/transcripts", Some(r#"{"studentName":"kept"}"#)).await.unwrap();
    assert_eq!((status, id.as_str()), (200, "5"));
    pg.stop();
    for (method, path, body) in
        [("POST", "/transcripts", Some(r#"{"studentName":"lost"}"#)), ("GET", "/transcripts/5", None)]
    {
        let (status, head, body) = http(method, path, body).await.unwrap();
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["message"], "Service Unavailable");
    }
    pg.restart().await;
    let (status, _, body) = http("GET", "/transcripts/5", None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kept"));
    let (status, _, id) = http("POST", "/transcripts", Some(r#"{"studentName":"after"}"#)).await.unwrap();
    assert_eq!((status, id.as_str()), (200, "6"), "the refused write took no id");
    drop(server);
}

/// `GET /api/changes?since=N&wait=W` on a server: the changes' (seq, student), once there
/// are any after N (a long poll: it answers at the first one).
fn changes_on(addr: std::net::SocketAddr, since: u64) -> Vec<(u64, i64)> {
    let (status, body) = common::http(addr, "GET", &format!("/api/changes?since={since}&wait=20"), None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["seq"].as_u64().unwrap(), c["studentID"].as_i64().unwrap()))
        .collect()
}

/// Two replicas sharing PostgreSQL and NATS: a write on one reaches the other's change feed,
/// in order, once; a replica killed after its writes and started again has every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgresql_and_nats_see_each_others_changes() {
    let url = common::pg::fresh_database().await;
    let nats = common::nats::Nats::start().await;
    let nats_url = nats.url.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let args =
            |node: &'static str| ["--postgres", &url, "--nats", &nats_url, "--node", node].map(str::to_owned);
        let a_args = args("a");
        // B keeps only 4 events in memory: an observer going further back reads the stream.
        let b_args: Vec<String> =
            args("b").into_iter().chain(["--ring".to_owned(), "4".to_owned()]).collect();
        let a = common::RealServer::start(da.path(), &a_args.iter().map(String::as_str).collect::<Vec<_>>());
        let b = common::RealServer::start(db.path(), &b_args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(common::http(a.addr, "POST", "/transcripts", Some(r#"{"studentName":"on a"}"#)).1, "5");
        assert_eq!(changes_on(b.addr, 0), [(1, 5)], "B hears of A's write");
        assert_eq!(common::http(b.addr, "POST", "/transcripts", Some(r#"{"studentName":"on b"}"#)).1, "6");
        assert_eq!(changes_on(a.addr, 1), [(2, 6)], "and A of B's");
        // B's own change reaches B through the stream too (waited for), after A's, once.
        assert_eq!(changes_on(b.addr, 1), [(2, 6)]);
        assert_eq!(changes_on(b.addr, 0), [(1, 5), (2, 6)], "each once, in order");
        // A dies; B writes; A comes back with every change, none twice.
        a.kill();
        assert_eq!(common::http(b.addr, "DELETE", "/transcripts/5", None).0, 204);
        let a = common::RealServer::start(da.path(), &a_args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(changes_on(a.addr, 0), [(1, 5), (2, 6), (3, 5)]);
        assert_eq!(common::http(a.addr, "GET", "/transcripts/6", None).0, 200, "B's write, read on A");
        // The whole log from its start, through B: the stream's sequence, with no gap.
        let all = rt.block_on(common::observe_until(b.addr, 0, |e| e.len() >= 16));
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "from the stream, then the ring");
        assert!(all.iter().any(|e| e.node == "a") && all.iter().any(|e| e.node == "b"));
        drop((a, b));
    })
    .await
    .unwrap();
    drop(nats);
}

/// What the board's contract needs of a server: nothing happens to its sockets here.
struct NoSockets;

impl server::board::Actor for NoSockets {
    fn act(&self, _: &server::board::Action) {}
}

/// The room's board, as two servers see it (one server: both are the same): changes made at
/// once on both all land, each on the board the last one left, and each server sees the
/// other's.
async fn board_contract(a: Arc<server::board::Boards>, b: Arc<server::board::Boards>) {
    let add = |boards: Arc<server::board::Boards>| {
        tokio::spawn(async move {
            boards
                .update(|board| {
                    board.next_fault += 1;
                    board.next_fault
                })
                .await
                .unwrap()
        })
    };
    let tasks: Vec<_> = (0..10).flat_map(|_| [add(a.clone()), add(b.clone())]).collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (2..22).collect::<Vec<_>>(), "every change saw the one before it, none was lost");
    // What one server changes, the other sees (once it has it: it waits for it, no sleep).
    a.update(|board| board.highlight = Some("c-ana".into())).await.unwrap();
    let mut seen = b.watch();
    seen.wait_for(|v| v.board.highlight.as_deref() == Some("c-ana")).await.unwrap();
    assert_eq!(b.now().next_fault, 21);
    // A change that changes nothing puts nothing.
    let version = a.versioned().version;
    assert_eq!(a.update(|board| board.highlight.clone()).await.unwrap().as_deref(), Some("c-ana"));
    assert_eq!(a.versioned().version, version);
}

#[tokio::test]
async fn the_board_of_one_server_keeps_the_contract() {
    let boards: Arc<server::board::Boards> = Arc::default();
    board_contract(boards.clone(), boards).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_of_a_cluster_keeps_the_contract() {
    let nats = common::nats::Nats::start().await;
    let actor: Arc<dyn server::board::Actor> = Arc::new(NoSockets);
    // Two replicas: each its own connection to NATS and its own copy of the board.
    let join = async || {
        let link = server::log::stream::jetstream_at(&nats.url).await.unwrap();
        let boards: Arc<server::board::Boards> = Arc::default();
        boards.join(&link, Arc::downgrade(&actor)).await.unwrap();
        boards
    };
    let (a, b) = (join().await, join().await);
    board_contract(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_one_servers_database_keep_the_contract() {
    const TOKEN: &str = "sessions-test-token-0123456789";
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let server = common::RealServer::start(dir.path(), &["--instructor-token", TOKEN]);
        common::sessions::contract(server.addr, &[], TOKEN, "embedded");
    })
    .await
    .unwrap();
}

/// One contract for the event log's backends: one server's ring and SQLite database, or a
/// cluster's ring and JetStream stream (both with a ring of 4). What is recorded is numbered
/// strictly increasing from where the log stood, in the order recorded; the ring keeps the
/// newest; what it no longer holds is read back from the backend, every event, in order.
async fn log_contract(log: Arc<server::log::EventLog>) {
    use protocol::{EventKind, Note, NoteKind};
    let before = log.latest_seq();
    for n in 0..10 {
        let note = EventKind::Note(Note { what: NoteKind::Session, text: format!("event {n}") });
        log.record(&format!("c-log-{n}"), 0, None, server::clock::server_now(), note);
    }
    // A cluster's log has them once the stream numbered them and they came back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while log.latest_seq() < before + 10 {
        assert!(std::time::Instant::now() < deadline, "not numbered: {}", log.latest_seq());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let since = log.since(before);
    assert_eq!(since.latest, before + 10);
    let newest: Vec<u64> = since.entries.iter().map(|e| e.seq).collect();
    assert_eq!(newest, (before + 7..=before + 10).collect::<Vec<_>>(), "the ring keeps the newest 4");
    assert_eq!(since.from_disk, Some((before, before + 7)), "the rest is the backend's");
    assert!(since.entries[3].json.contains(r#""client":"c-log-9""#), "{}", since.entries[3].json);
    let flushed = log.clone();
    tokio::task::spawn_blocking(move || flushed.flush()).await.unwrap();
    let older = log.between(before, before + 7, 100).await;
    let seqs: Vec<u64> = older.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (before + 1..=before + 6).collect::<Vec<_>>(), "no gap, nothing twice");
    for (n, (_, json)) in older.iter().enumerate() {
        assert!(json.contains(&format!(r#""client":"c-log-{n}""#)), "in the order recorded: {json}");
    }
}

fn ring_of_4() -> server::log::LogConfig {
    server::log::LogConfig { ring: 4, ..server::log::LogConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_of_one_server_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let log = server::log::EventLog::open(dir.path(), ring_of_4(), "contract").unwrap();
    log_contract(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_of_a_cluster_keeps_the_contract() {
    let nats = common::nats::Nats::start().await;
    let log = server::log::EventLog::in_memory(ring_of_4());
    log.join_stream(&nats.url, 1).await.unwrap();
    log_contract(log).await;
}
