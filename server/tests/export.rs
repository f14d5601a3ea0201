//! `/api/sessions/{id}/export`: the whole recorded session as a file, from the log, whichever
//! screen asks — more than any screen's memory holds, notes kept, this browser's own
//! observations merged in.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{TestServer, body_bytes, body_json};
use serde_json::Value;

async fn get_as(s: &TestServer, client: &str, uri: &str) -> u16 {
    let req = Request::get(uri).header("x-wirescope-client", client).body(Body::empty()).unwrap();
    s.send(req).await.status().as_u16()
}

/// A session with more exchanges than the ring keeps, from two students, and a fault note.
async fn lecture() -> TestServer {
    let s = TestServer::with_config(|c| c.log.ring = 8);
    s.state.clients().rename_by_client(s.state.log(), "c-ana", "Ana", "k-ana").unwrap();
    for i in 1..=12 {
        assert_eq!(get_as(&s, "c-ana", &format!("/transcripts/{}", i % 3 + 1)).await, 200);
    }
    assert_eq!(get_as(&s, "c-ben", "/transcripts/9999").await, 400, "no such student");
    let at = protocol::Stamps { client_us: None, server_us: Some(server::clock::now_us()) };
    let note = protocol::Note { what: protocol::NoteKind::Fault, text: "response dropped".into() };
    s.state.log().record("c-ben", 0, None, at, protocol::EventKind::Note(note));
    s
}

async fn export(s: &TestServer, uri: &str) -> (u16, String, String) {
    let res = s.get(uri).await;
    let status = res.status().as_u16();
    let disposition =
        res.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, disposition, String::from_utf8(body_bytes(res).await).unwrap())
}

#[tokio::test]
async fn a_har_export_holds_every_exchange_of_the_session_not_just_the_ring() {
    let s = lecture().await;
    assert!(s.state.log().since(0).entries.len() <= 8, "the ring forgot the start");
    let (status, disposition, text) = export(&s, "/api/sessions/current/export?format=har").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        disposition.starts_with("attachment; filename=\"wirescope-session-")
            && disposition.ends_with(".har\"")
    );
    let har: Value = serde_json::from_str(&text).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let statuses: Vec<u64> = entries.iter().map(|e| e["response"]["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses.len(), 13, "twelve of Ana's and Ben's one");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 1);
}

#[tokio::test]
async fn a_mermaid_export_keeps_notes_and_names_lanes_by_nickname() {
    let s = lecture().await;
    let (status, _, text) = export(&s, "/api/sessions/current/export?format=mermaid&me=c-ben").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(" as Ana\n"), "{text}");
    assert!(text.contains(" as You\n"), "the exporter is You, not This browser: {text}");
    assert!(text.contains("⚡ response dropped"), "a fault stays a note: {text}");
    assert_eq!(text.matches("->>S: ").count(), 13, "every request, and not the export's own");
}

#[tokio::test]
async fn a_trace_export_merges_what_only_this_browser_saw() {
    let s = lecture().await;
    let first = s.events().iter().find(|e| e.kind.is_message()).unwrap().seq;
    let lost = serde_json::json!({
        "seq": 0, "client": "c-ben", "exchange": 0,
        "at": {"clientUs": 1_795_473_064_000_000_i64},
        "kind": "failure", "from": "client", "message": "the server did not answer"
    });
    let body = serde_json::json!({
        "me": "c-ben",
        "observations": {"clientTimes": [[first, 1_795_473_000_000_000_i64]], "local": [{"after": first, "event": lost}]}
    });
    let req = Request::post("/api/sessions/current/export?format=trace")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = s.send(req).await;
    let status = res.status();
    let trace = body_json(res).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["format"], "wirescope-trace");
    assert_eq!(trace["me"], "c-ben");
    let events = trace["events"].as_array().unwrap();
    let at = events.iter().position(|e| e["seq"] == first).unwrap();
    assert_eq!(events[at]["at"]["clientUs"], 1_795_473_000_000_000_i64, "this browser's time");
    assert_eq!(events[at + 1]["message"], "the server did not answer", "placed after what it followed");
    assert_eq!(trace["names"]["c-ana"], "Ana");
}

#[tokio::test]
async fn bad_export_requests_get_clear_errors() {
    let s = lecture().await;
    let (status, _, text) = export(&s, "/api/sessions/current/export?format=svg").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("trace, har or mermaid"), "{text}");
    assert_eq!(export(&s, "/api/sessions/abc/export").await.0, 422);
    assert_eq!(export(&s, "/api/sessions/current/export?me=%20bad").await.0, 422);
    let (status, _, text) = export(&s, "/api/sessions/999/export").await;
    assert_eq!(status, 404, "{text}");
    let req = Request::post("/api/sessions/current/export")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"observations": {"local": 5}}"#))
        .unwrap();
    assert_eq!(s.send(req).await.status(), 422);
    for body in ["[]", "[\"c-ana\"]", "5", "null"] {
        let req = Request::post("/api/sessions/current/export")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        assert_eq!(s.send(req).await.status(), 422, "{body}");
    }
}

#[tokio::test]
async fn what_a_browser_adds_is_scrubbed_too() {
    let s = lecture().await;
    let token = s.state.token().to_owned();
    // A request typed on the API page that never reached the server, token and all.
    let lost = serde_json::json!({
        "seq": 0, "client": "c-ben", "exchange": 0,
        "at": {"clientUs": 1_795_473_064_000_000_i64},
        "kind": "httpRequest", "method": "GET", "path": format!("/api/instructor/room?t={token}"),
        "headers": [{"name": "authorization", "value": format!("Bearer {token}")}]
    });
    let body = serde_json::json!({"me": "c-ben", "observations": {"local": [{"after": 1, "event": lost}]}});
    let req = Request::post("/api/sessions/current/export?format=trace")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = s.send(req).await;
    assert_eq!(res.status(), 200);
    let text = String::from_utf8(body_bytes(res).await).unwrap();
    assert!(text.contains("/api/instructor/room?t=[redacted]"), "the row is there, scrubbed");
    assert!(!text.contains(&token), "no token anywhere");
}

#[tokio::test]
async fn a_session_is_read_back_page_by_page_never_whole() {
    let s = TestServer::with_config(|c| c.log.ring = 8);
    // Forty stored chunks: more than one page of them.
    for n in 0..40 {
        let at = protocol::Stamps { client_us: None, server_us: Some(server::clock::now_us()) };
        let note = protocol::Note { what: protocol::NoteKind::Fault, text: format!("note {n}") };
        s.state.log().record("c-ana", 0, None, at, protocol::EventKind::Note(note));
        let log = s.state.log().clone();
        tokio::task::spawn_blocking(move || log.flush()).await.unwrap();
    }
    let session = s.state.log().session();
    let res = s.get(&format!("/api/sessions/{session}/events")).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut pieces = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.unwrap().into_data() {
            pieces.push(data);
        }
    }
    assert!(pieces.len() >= 3, "streamed in pages, not at once: {} pieces", pieces.len());
    let all: Vec<u8> = pieces.concat();
    let events: Vec<protocol::Event> = serde_json::from_slice(&all).unwrap();
    let notes: Vec<u64> =
        events.iter().filter(|e| matches!(e.kind, protocol::EventKind::Note(_))).map(|e| e.seq).collect();
    assert_eq!(notes.len(), 40);
    assert!(notes.windows(2).all(|w| w[0] < w[1]), "in seq order");
    // An empty session is an empty array (the request that reads it is in the next one).
    let empty = s.state.log().new_session("empty").unwrap().unwrap();
    s.state.log().new_session("after").unwrap().unwrap();
    let req = Request::get(format!("/api/sessions/{empty}/events"))
        .header("authorization", format!("Bearer {}", s.state.token()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(body_json(s.send(req).await).await, serde_json::json!([]));
}

#[tokio::test]
async fn an_earlier_session_is_the_instructors_until_published() {
    let s = lecture().await;
    let earlier = s.state.log().session();
    s.state.log().new_session("next").unwrap().unwrap();
    let auth = format!("Bearer {}", s.state.token());
    let as_instructor =
        |uri: String| Request::get(uri).header("authorization", &auth).body(Body::empty()).unwrap();
    let listed =
        |v: Value| v.as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect::<Vec<_>>();
    // A student: the current session only; the earlier one, its events and exports refused.
    assert!(!listed(body_json(s.get("/api/sessions").await).await).contains(&earlier));
    for uri in
        [format!("/api/sessions/{earlier}/events"), format!("/api/sessions/{earlier}/export?format=har")]
    {
        let res = s.get(&uri).await;
        assert_eq!(res.status(), 403, "{uri}");
        assert!(
            body_json(res).await["details"].as_str().unwrap().contains("until the instructor publishes it")
        );
    }
    assert_eq!(s.get("/api/sessions/current/export").await.status(), 200, "the live session is everyone's");
    // The instructor sees it all, and publishes it.
    assert!(listed(body_json(s.send(as_instructor("/api/sessions".into())).await).await).contains(&earlier));
    assert_eq!(s.send(as_instructor(format!("/api/sessions/{earlier}/events"))).await.status(), 200);
    let publish = Request::post(format!("/api/instructor/sessions/{earlier}/publish"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"published":true}"#))
        .unwrap();
    assert_eq!(s.send(publish).await.status(), 204);
    assert!(listed(body_json(s.get("/api/sessions").await).await).contains(&earlier));
    assert_eq!(s.get(&format!("/api/sessions/{earlier}/events")).await.status(), 200);
    assert_eq!(s.get(&format!("/api/sessions/{earlier}/export?format=mermaid")).await.status(), 200);
}

#[tokio::test]
async fn an_observer_sees_the_current_session_only_whatever_it_asks() {
    let s = lecture().await;
    let first = s.state.log().session_first_seq();
    s.state.log().new_session("next").unwrap().unwrap();
    assert_eq!(get_as(&s, "c-ana", "/transcripts/1").await, 200);
    let now = s.state.log().session_first_seq();
    assert!(now > first + 10, "the lecture's events came before ({first} → {now})");
    let (addr, _t) = s.spawn().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/observe?since=0")).await.unwrap();
    loop {
        let tokio_tungstenite::tungstenite::Message::Text(t) = common::next_frame(&mut ws).await else {
            continue;
        };
        let msg: Value = serde_json::from_str(&t).unwrap();
        if msg["type"] == "events" {
            let seqs: Vec<u64> =
                msg["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
            assert!(
                !seqs.is_empty() && seqs.iter().all(|q| *q >= now),
                "only this session: {seqs:?} (from {now})"
            );
            break;
        }
    }
}
