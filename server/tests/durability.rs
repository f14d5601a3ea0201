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

#[test]
fn a_data_directory_with_other_files_is_fine_and_they_stay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "mine").unwrap();
    let server = RealServer::start(dir.path(), &["--reset"]);
    assert_eq!(transcripts(&server).as_array().unwrap().len(), 4);
    drop(server);
    assert_eq!(std::fs::read_to_string(dir.path().join("notes.md")).unwrap(), "mine");
}
