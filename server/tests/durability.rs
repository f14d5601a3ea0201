//! A real server process, killed with SIGKILL right after answering writes, loses none of them;
//! ids keep counting up across restarts; `--reset` starts over from the seed.

mod common;

use common::{RealServer, http};
use serde_json::Value;

fn transcripts(s: &RealServer) -> Value {
    let (status, body) = http(s.addr, "GET", "/transcripts", None);
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn answered_writes_survive_sigkill_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let server = RealServer::start(dir.path(), &[]);
    let mut ids = Vec::new();
    for i in 0..12 {
        let (status, id) =
            http(server.addr, "POST", "/transcripts", Some(&format!(r#"{{"studentName":"s{i}"}}"#)));
        assert_eq!(status, 200);
        ids.push(id.parse::<i64>().unwrap());
        let (status, _) = http(
            server.addr,
            "POST",
            &format!("/transcripts/{id}/Course%20{i}"),
            Some(&format!("{}", 50 + i)),
        );
        assert_eq!(status, 204);
    }
    assert_eq!(http(server.addr, "DELETE", &format!("/transcripts/{}", ids[11]), None).0, 204);
    assert_eq!(http(server.addr, "DELETE", "/transcripts/2", None).0, 204);
    let before = transcripts(&server);
    server.kill();

    let server = RealServer::start(dir.path(), &[]);
    assert_eq!(transcripts(&server), before, "everything answered is still there");
    let (_, next) = http(server.addr, "POST", "/transcripts", Some(r#"{"studentName":"after"}"#));
    assert_eq!(next.parse::<i64>().unwrap(), ids[11] + 1, "the deleted newest id is not reused");
    server.kill();

    let server = RealServer::start(dir.path(), &["--reset"]);
    let seeded = transcripts(&server);
    assert_eq!(seeded.as_array().unwrap().len(), 4);
    assert_eq!(http(server.addr, "POST", "/transcripts", Some(r#"{"studentName":"x"}"#)).1, "5");
    // The data directory may hold other files: they are left alone.
    assert!(dir.path().join(server::transcripts::store::FILE_NAME).is_file());
}

/// `GET /api/changes?since=N`: the `seq`s of the changes after N, and the newest `seq`.
fn changes_since(s: &RealServer, since: u64) -> (Vec<u64>, u64) {
    let (status, body) = http(s.addr, "GET", &format!("/api/changes?since={since}"), None);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let seqs = v["changes"].as_array().unwrap().iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    (seqs, v["latest"].as_u64().unwrap())
}

#[test]
fn the_change_feed_numbers_on_across_a_sigkill_and_a_resuming_client_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = RealServer::start(dir.path(), &[]);
    let (_, id) = http(server.addr, "POST", "/transcripts", Some(r#"{"studentName":"before"}"#));
    assert_eq!(http(server.addr, "POST", &format!("/transcripts/{id}/Net"), Some("90")).0, 204);
    let (seen, latest) = changes_since(&server, 0);
    assert_eq!(seen, [1, 2]);
    // A client saw the first change only; then the server is killed, and a change is made
    // after the restart.
    server.kill();
    let server = RealServer::start(dir.path(), &[]);
    assert_eq!(changes_since(&server, 0), (vec![1, 2], latest), "kept across the kill");
    assert_eq!(http(server.addr, "DELETE", &format!("/transcripts/{id}"), None).0, 204);
    assert_eq!(changes_since(&server, 1), (vec![2, 3], 3), "each missed change once, none renumbered");
}

#[test]
fn a_data_directory_with_other_files_is_fine_and_they_stay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "mine").unwrap();
    let server = RealServer::start(dir.path(), &["--reset"]);
    assert_eq!(transcripts(&server).as_array().unwrap().len(), 4);
    drop(server);
    assert_eq!(std::fs::read_to_string(dir.path().join("notes.md")).unwrap(), "mine");
}

/// A GET as the instructor (earlier sessions are the instructor's): (status, body).
fn as_instructor(dir: &std::path::Path, addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let token = std::fs::read_to_string(dir.join("instructor-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let (status, head, body) =
        common::http_with(addr, "GET", path, &[("Authorization", &auth)], None).unwrap();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { common::dechunk(&body) } else { body })
}

fn sessions(dir: &std::path::Path, addr: std::net::SocketAddr) -> Vec<Value> {
    let (status, body) = as_instructor(dir, addr, "/api/sessions");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().clone()
}

/// SIGTERM: an open WebSocket is told 1001 Going Away, the process exits 0, every event is on
/// disk (the closes included), and the next start numbers its events on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_with_1001_and_keeps_every_event() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let dir = tempfile::tempdir().unwrap();
    let mut server = RealServer::start(dir.path(), &[]);
    let addr = server.addr;
    assert_eq!(http(addr, "GET", "/transcripts/1", None).0, 200);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    ws.send(Message::text("before the stop")).await.unwrap();
    let echo =
        tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echo, Message::text("before the stop"));

    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let close = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    // Read to the end of the connection (a hang fails instead of waiting forever).
    tokio::time::timeout(std::time::Duration::from_secs(10), async { while ws.next().await.is_some() {} })
        .await
        .expect("the connection ends");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        (status, server)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "a clean exit: {status:?}");

    let server = RealServer::start(dir.path(), &[]);
    let before = sessions(dir.path(), server.addr);
    let first = before.iter().min_by_key(|s| s["id"].as_u64()).unwrap();
    let id = first["id"].as_u64().unwrap();
    let (status, _) = http(server.addr, "GET", &format!("/api/sessions/{id}/events"), None);
    assert_eq!(status, 403, "an earlier session is the instructor's until published");
    let (_, events) = as_instructor(dir.path(), server.addr, &format!("/api/sessions/{id}/events"));
    let events: Vec<Value> = serde_json::from_str(&events).unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["httpRequest", "httpResponse", "wsUpgrade", "wsFrame", "wsClose"] {
        assert!(kinds.contains(&kind), "{kind} stored: {kinds:?}");
    }
    let last = first["lastSeq"].as_u64().unwrap();
    assert_eq!(http(server.addr, "GET", "/transcripts/2", None).0, 200);
    let after = sessions(dir.path(), server.addr);
    let now = after.iter().find(|s| s["id"].as_u64() != Some(id)).expect("a new session");
    assert_eq!(now["firstSeq"].as_u64(), Some(last + 1), "numbering goes on without a gap: {after:?}");
}
