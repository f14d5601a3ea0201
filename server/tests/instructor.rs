//! Lecture mode on the server: instructor routes and their token, faults (each kind, over real
//! sockets), holding messages, idempotent retries, moderation, sessions.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, Ws, http, http_with};
use futures_util::{SinkExt, StreamExt};
use protocol::{EventKind, NoteKind};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const TOKEN: &str = "test-token-0123456789abcdefghij";

fn server() -> TestServer {
    TestServer::with_config(|c| c.token = Some(TOKEN.to_owned()))
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

async fn instructor(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &'static str,
    json: Option<&'static str>,
) -> u16 {
    tokio::task::spawn_blocking(move || {
        let (k, v) = bearer();
        http_with(addr, method, path, &[(k, &v)], json).map(|r| r.0).unwrap_or(0)
    })
    .await
    .unwrap()
}

async fn fault(addr: std::net::SocketAddr, json: &'static str) {
    assert_eq!(instructor(addr, "POST", "/api/instructor/faults", Some(json)).await, 200, "{json}");
}

async fn get(addr: std::net::SocketAddr, path: &'static str) -> Option<(u16, String, String)> {
    tokio::task::spawn_blocking(move || http_with(addr, "GET", path, &[], None)).await.unwrap()
}

fn notes(s: &TestServer, kind: NoteKind) -> Vec<String> {
    s.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Note(n) if n.what == kind => Some(n.text),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_instructor_route_is_403_without_the_token() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    let routes: [(&str, &str, Option<&str>); 13] = [
        ("GET", "/api/instructor", None),
        ("GET", "/api/instructor/room", None),
        ("GET", "/api/instructor/faults", None),
        ("POST", "/api/instructor/faults", Some(r#"{"fault":{"kind":"dropRequest"}}"#)),
        ("DELETE", "/api/instructor/faults", None),
        ("DELETE", "/api/instructor/faults/1", None),
        ("POST", "/api/instructor/down", Some(r#"{"seconds":1}"#)),
        ("POST", "/api/instructor/hold", Some(r#"{"on":true}"#)),
        ("POST", "/api/instructor/release", Some("{}")),
        ("POST", "/api/instructor/reset", None),
        ("POST", "/api/instructor/session", Some("{}")),
        ("POST", "/api/instructor/highlight", Some(r#"{"client":null}"#)),
        ("POST", "/api/instructor/clients/c-x/kick", None),
    ];
    let more: [(&str, &str, Option<&str>); 3] = [
        ("PATCH", "/api/instructor/sessions/1", Some(r#"{"name":"x"}"#)),
        ("DELETE", "/api/instructor/sessions/1", None),
        ("PATCH", "/api/instructor/clients/c-x", Some(r#"{"muted":true}"#)),
    ];
    for (method, path, body) in routes.into_iter().chain(more) {
        for headers in [vec![], vec![("Authorization", "Bearer wrong-token")], vec![("Authorization", TOKEN)]]
        {
            let r = tokio::task::spawn_blocking(move || http_with(addr, method, path, &headers, body))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.0, 403, "{method} {path} {:?}", r);
            assert!(r.2.contains("Forbidden"));
        }
    }
    // …and with it, they work.
    assert_eq!(instructor(addr, "GET", "/api/instructor", None).await, 204);
    assert_eq!(instructor(addr, "GET", "/api/instructor/room", None).await, 200);
    // Nothing was changed by the refused calls.
    assert!(notes(&s, NoteKind::Fault).is_empty());
    assert!(s.state.faults().list().is_empty());
}

/// What is held, once something is (the message reaches the hold from another task).
async fn held_soon(s: &TestServer) -> Vec<protocol::instructor::Held> {
    for _ in 0..250 {
        let held = s.state.faults().hold_state().held;
        if !held.is_empty() {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing was held within 5 s")
}

#[tokio::test]
async fn the_token_never_appears_in_captured_data() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    tokio::task::spawn_blocking(move || {
        let (k, v) = bearer();
        let status = |r: Option<(u16, String, String)>| r.map(|r| r.0);
        // The token in a header, in a query and in a body: each request is answered and captured.
        assert_eq!(
            status(http_with(addr, "GET", "/transcripts/1", &[(k, &v), ("X-Note", TOKEN)], None)),
            Some(200)
        );
        assert_eq!(
            status(http_with(addr, "GET", &format!("/studentids?name={TOKEN}"), &[], None)),
            Some(200)
        );
        let body = format!(r#"{{"studentName":"{TOKEN}"}}"#);
        assert_eq!(status(http_with(addr, "POST", "/transcripts", &[], Some(&body))), Some(200));
    })
    .await
    .unwrap();
    let events = s
        .wait_events("three captured requests", |evs| {
            evs.iter().filter(|e| matches!(e.kind, EventKind::HttpResponse(_))).count() >= 3
        })
        .await;
    assert_eq!(events.iter().filter(|e| matches!(e.kind, EventKind::HttpRequest(_))).count(), 3);
    let json = serde_json::to_string(&events).unwrap();
    assert!(!json.contains(TOKEN), "the token leaked into the log");
    assert!(json.contains("[redacted]"));
}

#[tokio::test]
async fn the_token_is_in_no_note_name_agent_or_export() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    let leaky = format!("Ana {TOKEN}");
    let moderate = format!(r#"{{"nickname":"{leaky}"}}"#);
    // A student names itself with the token (its own nickname, not the instructor's).
    let (mut own, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/observe?client=c-self&nick=Me%20{TOKEN}"))
            .await
            .unwrap();
    next(&mut own).await.expect("hello: the name in the URL is handled before it");
    tokio::task::spawn_blocking(move || {
        let (k, v) = bearer();
        // A new client whose user agent carries the token, and a nickname that does.
        let agent = format!("curl {TOKEN}");
        let first = http_with(
            addr,
            "GET",
            "/api/health",
            &[("X-Wirescope-Client", "c-leak"), ("User-Agent", &agent)],
            None,
        );
        assert_eq!(first.map(|r| r.0), Some(200));
        let named = http_with(addr, "PATCH", "/api/instructor/clients/c-leak", &[(k, &v)], Some(&moderate));
        assert_eq!(named.map(|r| r.0), Some(204));
        // A fault note that names the path of the request it refused.
        let down = http_with(addr, "POST", "/api/instructor/down", &[(k, &v)], Some(r#"{"seconds":1}"#));
        assert_eq!(down.map(|r| r.0), Some(200));
        let refused = http_with(
            addr,
            "GET",
            &format!("/transcripts/{TOKEN}"),
            &[("X-Wirescope-Client", "c-leak")],
            None,
        );
        assert_eq!(refused, None, "the server is down");
    })
    .await
    .unwrap();
    let events = s
        .wait_events("the refusal noted", |evs| {
            evs.iter()
                .any(|e| matches!(&e.kind, EventKind::Note(n) if n.text.starts_with("server down: GET")))
        })
        .await;
    let json = serde_json::to_string(&events).unwrap();
    assert!(!json.contains(TOKEN), "the token leaked into the log: {json}");
    assert!(json.contains("Ana [redacted]") && json.contains("\"agent\":\"curl\""), "{json}");
    assert!(json.contains("Me [redacted]"), "a student's own nickname is scrubbed too: {json}");
    // Every export of the session, written from the log, holds none of it either (once the
    // one-second outage, which refuses exports too, is over).
    while s.state.faults().down_for_s() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for format in ["trace", "har", "mermaid"] {
        let uri = format!("/api/sessions/current/export?format={format}");
        let text = common::body_text(s.get(&uri).await).await;
        assert!(!text.contains(TOKEN), "{format} export holds the token");
        assert!(text.contains("[redacted]") || format == "mermaid", "{format}: {text}");
    }
    assert!(!format!("{:?}", s.state.config()).contains(TOKEN), "Debug of the config shows the token");
    // The roster a screen gets after `hello` names the client scrubbed too.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/observe")).await.unwrap();
    let mut roster = String::new();
    while !roster.contains(r#""type":"clients""#) {
        if let Message::Text(t) = common::next_frame(&mut ws).await {
            roster = t.to_string();
        }
    }
    assert!(roster.contains("Ana [redacted]") && !roster.contains(TOKEN), "{roster}");
}

#[tokio::test]
async fn held_requests_wait_until_released_and_the_timeout_releases_them() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    assert_eq!(
        instructor(addr, "POST", "/api/instructor/hold", Some(r#"{"on":true,"timeoutMs":60000}"#)).await,
        200
    );
    let waiting = tokio::task::spawn_blocking(move || http(addr, "GET", "/transcripts/1", None));
    let held = held_soon(&s).await;
    assert!(!waiting.is_finished(), "the server has not answered");
    assert_eq!(held.len(), 1);
    // Noted like a held frame: every screen shows it is waiting.
    assert!(notes(&s, NoteKind::Held).iter().any(|n| n == "held: GET /transcripts/1"));
    assert_eq!(held[0].path, "/transcripts/1");
    // Observers and the instructor are never held.
    assert_eq!(instructor(addr, "GET", "/api/instructor/room", None).await, 200);
    assert_eq!(instructor(addr, "POST", "/api/instructor/release", Some(r#"{"count":1}"#)).await, 200);
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    assert_eq!(status, 200);
    // With a short timeout, a forgotten request goes on by itself.
    assert_eq!(
        instructor(addr, "POST", "/api/instructor/hold", Some(r#"{"on":true,"timeoutMs":300}"#)).await,
        200
    );
    let t = Instant::now();
    let (status, _) =
        tokio::task::spawn_blocking(move || http(addr, "GET", "/transcripts/2", None)).await.unwrap();
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(280), "{:?}", t.elapsed());
    assert!(notes(&s, NoteKind::Released).iter().any(|n| n.contains("timeout")));
    assert_eq!(instructor(addr, "POST", "/api/instructor/hold", Some(r#"{"on":false}"#)).await, 200);
}

#[tokio::test]
async fn http_faults_latency_status_drops_and_duplicates_are_applied_and_drawn() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    fault(addr, r#"{"target":{"path":"/transcripts/1"},"fault":{"kind":"latency","fixedMs":400,"jitterMs":0},"times":1}"#).await;
    let t = Instant::now();
    assert_eq!(get(addr, "/transcripts/1").await.unwrap().0, 200);
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert!(notes(&s, NoteKind::Fault).iter().any(|n| n == "latency +400 ms"));

    fault(addr, r#"{"fault":{"kind":"status","status":503,"retryAfterS":2},"times":1}"#).await;
    let (status, head, body) = get(addr, "/transcripts").await.unwrap();
    assert_eq!(status, 503);
    assert!(head.to_lowercase().contains("retry-after: 2"), "{head}");
    assert!(body.contains("Service Unavailable"));
    fault(addr, r#"{"fault":{"kind":"status","status":429,"retryAfterS":1},"times":1}"#).await;
    assert_eq!(get(addr, "/transcripts").await.unwrap().0, 429);

    // Drop the request: no answer, and nothing happened.
    fault(addr, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"dropRequest"},"times":1}"#).await;
    let r = tokio::task::spawn_blocking(move || {
        http_with(addr, "POST", "/transcripts", &[], Some(r#"{"studentName":"lost"}"#))
    })
    .await
    .unwrap();
    assert!(r.is_none(), "no answer: {r:?}");
    assert_eq!(s.state.transcripts().ids_named("lost").await.unwrap(), Vec::<i64>::new());

    // Drop the response: the handler ran (a student exists), the client heard nothing; its
    // retry with the same idempotency key gets the first answer, not a second student.
    fault(addr, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"dropResponse"},"times":1}"#).await;
    let key = [("Idempotency-Key", "retry-1")];
    let first = tokio::task::spawn_blocking(move || {
        http_with(addr, "POST", "/transcripts", &key, Some(r#"{"studentName":"once"}"#))
    })
    .await
    .unwrap();
    assert!(first.is_none());
    assert_eq!(s.state.transcripts().ids_named("once").await.unwrap().len(), 1, "the handler ran");
    let retry = tokio::task::spawn_blocking(move || {
        http_with(addr, "POST", "/transcripts", &key, Some(r#"{"studentName":"once"}"#))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(retry.0, 200);
    assert!(retry.1.to_lowercase().contains("idempotent-replayed: true"));
    assert_eq!(s.state.transcripts().ids_named("once").await.unwrap().len(), 1, "the retry created nothing");
    assert_eq!(retry.2, s.state.transcripts().ids_named("once").await.unwrap()[0].to_string());

    // Duplicate delivery: without a key, two students; with one, one.
    fault(addr, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"duplicate"},"times":2}"#).await;
    tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/transcripts", Some(r#"{"studentName":"twice"}"#))
    })
    .await
    .unwrap();
    assert_eq!(s.state.transcripts().ids_named("twice").await.unwrap().len(), 2);
    let key = [("Idempotency-Key", "dup-1")];
    tokio::task::spawn_blocking(move || {
        http_with(addr, "POST", "/transcripts", &key, Some(r#"{"studentName":"guarded"}"#))
    })
    .await
    .unwrap();
    assert_eq!(s.state.transcripts().ids_named("guarded").await.unwrap().len(), 1);

    let evs = s.events();
    let failures = evs
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Failure(f) if f.message.contains("fault")))
        .count();
    assert_eq!(failures, 2, "both drops are drawn as lost messages");
    let fault_notes = notes(&s, NoteKind::Fault);
    for want in
        ["answered 503", "answered 429", "request dropped", "response dropped", "request delivered twice"]
    {
        assert!(fault_notes.iter().any(|n| n.contains(want)), "{want}: {fault_notes:?}");
    }
}

async fn next(ws: &mut Ws) -> Option<Message> {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("something within 5 s") {
        Some(Ok(m)) => Some(m),
        _ => None,
    }
}

#[tokio::test]
async fn websocket_faults_reorder_close_and_cut() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    fault(addr, r#"{"target":{"path":"/ws/echo"},"fault":{"kind":"reorderFrames"},"times":1}"#).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    ws.send(Message::text("first")).await.unwrap();
    ws.send(Message::text("second")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("second")));
    assert_eq!(next(&mut ws).await, Some(Message::text("first")));

    for code in [1001u16, 1011, 4000] {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo?client=c-{code}")).await.unwrap();
        ws.send(Message::text("x")).await.unwrap();
        next(&mut ws).await;
        let body: &'static str = Box::leak(
            format!(r#"{{"target":{{"client":"c-{code}"}},"fault":{{"kind":"close","code":{code}}}}}"#)
                .into_boxed_str(),
        );
        fault(addr, body).await;
        match next(&mut ws).await {
            Some(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), code),
            other => panic!("{code}: {other:?}"),
        }
    }

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo?client=c-cut")).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    next(&mut ws).await;
    fault(addr, r#"{"target":{"client":"c-cut"},"fault":{"kind":"cut"}}"#).await;
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        None | Some(Err(_)) => {}
        Some(Ok(Message::Close(f))) => panic!("a cut sends no close frame: {f:?}"),
        Some(Ok(other)) => panic!("{other:?}"),
    }
    let evs = s
        .wait_events("the cut", |e| {
            e.iter().any(|e| e.client == "c-cut" && matches!(&e.kind, EventKind::WsClose(c) if !c.clean))
        })
        .await;
    assert!(evs.iter().any(
        |e| matches!(&e.kind, EventKind::WsClose(c) if c.close.as_ref().is_some_and(|i| i.code == 4000))
    ));
}

#[tokio::test]
async fn server_down_refuses_and_cuts_except_observers_and_the_instructor_then_recovers() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    let (mut echo, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    let (mut observer, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/observe")).await.unwrap();
    next(&mut observer).await;
    assert_eq!(instructor(addr, "POST", "/api/instructor/down", Some(r#"{"seconds":2}"#)).await, 200);
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_secs(5), echo.next()).await.unwrap(),
            None | Some(Err(_))
        ),
        "open sockets are cut"
    );
    assert!(get(addr, "/transcripts/1").await.is_none(), "new requests get no answer");
    assert_eq!(
        instructor(addr, "GET", "/api/instructor/room", None).await,
        200,
        "the instructor still gets through"
    );
    observer.send(Message::text(r#"{"type":"clock","clientTimeUs":1}"#)).await.unwrap();
    loop {
        let m = next(&mut observer).await.expect("the observer stays connected");
        if m.to_text().unwrap_or("").contains("\"clock\"") {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(get(addr, "/transcripts/1").await.unwrap().0, 200, "back up");
    assert!(!notes(&s, NoteKind::Down).is_empty());
}

#[tokio::test]
async fn reset_session_highlight_and_moderation() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    tokio::task::spawn_blocking(move || http(addr, "DELETE", "/transcripts/1", None)).await.unwrap();
    assert_eq!(instructor(addr, "POST", "/api/instructor/reset", None).await, 204);
    assert_eq!(s.state.transcripts().list().await.unwrap().len(), 4);
    assert!(
        s.state.transcripts().get(1).await.unwrap().is_none(),
        "the seed comes back with new ids; none is reused"
    );

    let before = s.state.log().session();
    assert_eq!(
        instructor(addr, "POST", "/api/instructor/session", Some(r#"{"name":"lecture 2"}"#)).await,
        204
    );
    assert!(s.state.log().session() > before);
    assert!(notes(&s, NoteKind::Session).iter().any(|n| n == "lecture 2"));
    let (_, list) =
        tokio::task::spawn_blocking(move || http(addr, "GET", "/api/sessions", None)).await.unwrap();
    assert!(list.contains("lecture 2"), "{list}");
    assert_eq!(
        instructor(addr, "DELETE", "/api/instructor/sessions/1", None).await,
        204,
        "an earlier session can go"
    );
    let (status, _) =
        tokio::task::spawn_blocking(move || http(addr, "GET", "/api/sessions/1/events", None)).await.unwrap();
    assert_eq!(status, 404);

    assert_eq!(
        instructor(addr, "POST", "/api/instructor/highlight", Some(r#"{"client":"c-ana"}"#)).await,
        204
    );
    assert_eq!(s.state.highlight().as_deref(), Some("c-ana"));

    // Mute: chat refused. Kick: connection closed with 4000.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/events?client=c-ana")).await.unwrap();
    for m in [r#"{"type":"hello","data":{"name":"Ana"}}"#, r#"{"type":"join","data":{"room":"r"}}"#] {
        ws.send(Message::text(m)).await.unwrap();
        next(&mut ws).await;
    }
    assert_eq!(
        instructor(
            addr,
            "PATCH",
            "/api/instructor/clients/c-ana",
            Some(r#"{"muted":true,"nickname":"Ana B."}"#)
        )
        .await,
        204
    );
    ws.send(Message::text(r#"{"type":"chat","data":{"room":"r","text":"hi"}}"#)).await.unwrap();
    let m = next(&mut ws).await.unwrap();
    assert!(m.to_text().unwrap().contains("muted"), "{m:?}");
    assert_eq!(s.state.clients().nickname("c-ana").as_deref(), Some("Ana B."));
    assert_eq!(instructor(addr, "POST", "/api/instructor/clients/c-ana/kick", None).await, 204);
    loop {
        match next(&mut ws).await {
            Some(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Library(4000));
                break;
            }
            Some(_) => continue,
            None => panic!("closed without 4000"),
        }
    }
}

#[tokio::test]
async fn chat_is_rate_limited_per_client() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/events?client=c-fast")).await.unwrap();
    ws.send(Message::text(r#"{"type":"join","data":{"room":"r"}}"#)).await.unwrap();
    next(&mut ws).await;
    let mut errors = 0;
    for i in 0..8 {
        ws.send(Message::text(format!(r#"{{"type":"chat","data":{{"room":"r","text":"m{i}"}}}}"#)))
            .await
            .unwrap();
        if next(&mut ws).await.unwrap().to_text().unwrap().contains("slow down") {
            errors += 1;
        }
    }
    assert_eq!(errors, 3, "5 lines pass, the next 3 are refused");
}

#[tokio::test]
async fn websocket_frames_are_held_too() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo?client=c-held")).await.unwrap();
    assert_eq!(
        instructor(addr, "POST", "/api/instructor/hold", Some(r#"{"on":true,"timeoutMs":60000}"#)).await,
        200
    );
    ws.send(Message::text("wait for it")).await.unwrap();
    let held = held_soon(&s).await;
    assert!(tokio::time::timeout(Duration::from_millis(100), ws.next()).await.is_err(), "no echo while held");
    assert_eq!((held.len(), held[0].method.as_str()), (1, "FRAME"));
    assert_eq!(instructor(addr, "POST", "/api/instructor/release", Some("{}")).await, 200);
    assert_eq!(next(&mut ws).await, Some(Message::text("wait for it")));
    assert!(notes(&s, NoteKind::Held).iter().any(|n| n == "held: frame on /ws/echo"));
    assert_eq!(instructor(addr, "POST", "/api/instructor/hold", Some(r#"{"on":false}"#)).await, 200);
}

#[tokio::test]
async fn a_rehearsal_plays_the_students_over_real_sockets_until_stopped() {
    let s = server();
    let (addr, _task) = s.spawn().await;
    s.state.set_local_addr(addr);
    let anonymous = tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/api/instructor/rehearsal", Some(r#"{"students":2}"#)).0
    })
    .await
    .unwrap();
    assert_eq!(anonymous, 403);
    assert_eq!(instructor(addr, "POST", "/api/instructor/rehearsal", Some(r#"{"students":99}"#)).await, 422);
    assert_eq!(instructor(addr, "POST", "/api/instructor/rehearsal", Some(r#"{"students":2}"#)).await, 200);
    // Both simulated students, by name, with the script's first steps: a GET and the
    // WebSocket chat of step 4 comes after (its upgrade is captured like any browser's).
    let evs = s
        .wait_events("two named students acting", |evs| {
            ["rehearsal-1", "rehearsal-2"].iter().all(|c| {
                evs.iter().any(|e| {
                    e.client == *c
                        && matches!(&e.kind, EventKind::Client(i) if i.nickname.as_deref().is_some_and(|n| n.starts_with("Rehearsal")))
                }) && evs.iter().any(|e| e.client == *c && matches!(&e.kind, EventKind::HttpRequest(r) if r.path == "/api/health"))
            })
        })
        .await;
    assert!(evs.iter().all(|e| !matches!(&e.kind, EventKind::Failure(_)) || e.client != "rehearsal-1"));
    let (_, _, state) = tokio::task::spawn_blocking(move || {
        let (k, v) = bearer();
        http_with(addr, "GET", "/api/instructor/rehearsal", &[(k, &v)], None).unwrap()
    })
    .await
    .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["students"], 2, "{state}");
    assert_eq!(instructor(addr, "DELETE", "/api/instructor/rehearsal", None).await, 204);
    assert_eq!(s.state.rehearsal().state().students, 0, "stopped at once");
}

#[tokio::test]
async fn a_duplicated_request_keeps_at_most_the_largest_body_a_handler_takes() {
    use protocol::instructor::{FaultKind, NewFault, Target};
    let s = server();
    s.state
        .faults()
        .add(NewFault { target: Target::default(), fault: FaultKind::Duplicate, times: None })
        .await
        .unwrap();
    // Sent in pieces with no Content-Length, so only reading it shows how big it is.
    let piece = bytes::Bytes::from("x".repeat(64 * 1024));
    let pieces = (0..20).map(move |_| Ok::<_, std::io::Error>(piece.clone()));
    let req = axum::http::Request::post("/transcripts")
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(futures_util::stream::iter(pieces)))
        .unwrap();
    let res = s.send(req).await;
    assert_eq!(res.status(), 413);
    // Refused before it was kept whole (or delivered): no "delivered twice" for it.
    let twice = |s: &TestServer| {
        s.events()
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Note(n) if n.text == "request delivered twice"))
            .count()
    };
    assert_eq!(twice(&s), 0);
    // A body within the limit is still delivered twice.
    let req = axum::http::Request::post("/transcripts")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"studentName":"Twice"}"#))
        .unwrap();
    assert_eq!(s.send(req).await.status(), 200);
    assert_eq!(s.state.transcripts().ids_named("Twice").await.unwrap().len(), 2);
    assert_eq!(twice(&s), 1);
}

/// Connects to `/ws/events` as lane `client`, sending `headers`; the socket and the cookie
/// the server set (if it issued an id), or the refusal's status and body.
async fn events_as(
    addr: std::net::SocketAddr,
    client: &str,
    headers: &[(&'static str, String)],
) -> Result<(Ws, Option<String>), (u16, String)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/ws/events?client={client}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(*k, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, res)) => {
            let cookie = res.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
            Ok((ws, cookie.map(|c| c.split(';').next().unwrap().to_owned())))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let body = String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
            Err((res.status().as_u16(), body))
        }
        Err(e) => panic!("{e}"),
    }
}

/// Sends a chat line to room `r` and answers the error it got (if any) once the line came
/// back or was refused.
async fn chat(ws: &mut Ws, text: &str) -> Option<String> {
    ws.send(Message::text(format!(r#"{{"type":"chat","data":{{"room":"r","text":"{text}"}}}}"#)))
        .await
        .unwrap();
    loop {
        let m = next(ws).await.expect("an answer");
        let t = m.to_text().unwrap();
        if t.contains(r#""type":"error""#) {
            return Some(t.to_owned());
        }
        if t.contains(text) {
            return None;
        }
    }
}

async fn join(ws: &mut Ws) {
    ws.send(Message::text(r#"{"type":"join","data":{"room":"r"}}"#)).await.unwrap();
    while !next(ws).await.unwrap().to_text().unwrap().contains("history") {}
}

#[tokio::test]
async fn a_client_that_renames_itself_keeps_its_mute_and_its_rate_limit() {
    let s = server();
    let (addr, _t) = s.spawn().await;
    let (mut ana, cookie) = events_as(addr, "c-ana", &[]).await.unwrap();
    let cookie = cookie.expect("the server issues an id on first contact");
    assert!(cookie.starts_with("wirescope_id=k-"), "{cookie}");
    join(&mut ana).await;
    assert_eq!(chat(&mut ana, "first").await, None);
    assert_eq!(
        instructor(addr, "PATCH", "/api/instructor/clients/c-ana", Some(r#"{"muted":true}"#)).await,
        204
    );
    assert!(chat(&mut ana, "muted?").await.unwrap().contains("muted"));
    drop(ana);

    // Back under another lane id, with the id the server issued: still muted.
    let (mut again, set) = events_as(addr, "c-not-ana", &[("cookie", cookie.clone())]).await.unwrap();
    assert_eq!(set, None, "a client with its id is not issued another");
    join(&mut again).await;
    assert!(chat(&mut again, "renamed").await.unwrap().contains("muted"));
    assert_eq!(s.state.hub().muted(), ["c-ana"], "the lane the instructor muted");
    // A made-up id is no id: that connection is issued a new one (and is not muted).
    let (mut forged, set) =
        events_as(addr, "c-ana2", &[("cookie", "wirescope_id=k-0123456789abcdef.00".to_owned())])
            .await
            .unwrap();
    assert!(set.is_some_and(|c| c != cookie));
    join(&mut forged).await;
    assert_eq!(chat(&mut forged, "fresh").await, None);
    // Unmuting the first lane frees the id, and every lane seen under it.
    assert_eq!(
        instructor(addr, "PATCH", "/api/instructor/clients/c-ana", Some(r#"{"muted":false}"#)).await,
        204
    );
    assert_eq!(chat(&mut again, "free").await, None);
    assert!(s.state.hub().muted().is_empty());

    // The chat limit (5 lines in 10 s) follows the issued id across lane ids: two lines so far.
    for i in 0..3 {
        assert_eq!(chat(&mut again, &format!("line{i}")).await, None);
    }
    drop(again);
    let (mut third, _) = events_as(addr, "c-third", &[("cookie", cookie)]).await.unwrap();
    join(&mut third).await;
    assert!(chat(&mut third, "sixth").await.unwrap().contains("slow down"));
}

#[tokio::test]
async fn an_address_is_issued_only_so_many_ids() {
    let s = TestServer::with_config(|c| c.ids_per_address = 2);
    let (addr, _t) = s.spawn().await;
    let (_a, kept) = events_as(addr, "c-a", &[]).await.unwrap();
    let _b = events_as(addr, "c-b", &[]).await.unwrap();
    let Err((status, body)) = events_as(addr, "c-c", &[]).await else {
        panic!("a third id from one address")
    };
    assert_eq!(status, 429);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(body["details"].as_str().unwrap().contains("too many new connections"), "{body}");
    // A browser that kept its id is not counted: it comes back however often it likes.
    for _ in 0..3 {
        events_as(addr, "c-a", &[("cookie", kept.clone().unwrap())]).await.unwrap();
    }
    // Without the option, a forwarding header is not believed (anyone can write one).
    let spoofed = events_as(addr, "c-d", &[("x-forwarded-for", "10.9.9.9".to_owned())]).await;
    assert_eq!(spoofed.err().map(|e| e.0), Some(429));
}

#[tokio::test]
async fn behind_a_trusted_balancer_each_forwarded_address_has_its_own_share() {
    let s = TestServer::with_config(|c| {
        c.token = Some(TOKEN.to_owned());
        c.ids_per_address = 1;
        c.client_address_header = Some(axum::http::HeaderName::from_static("x-forwarded-for"));
    });
    let (addr, _t) = s.spawn().await;
    let via = |ip: &str| [("x-forwarded-for", format!("203.0.113.250, {ip}"))];
    events_as(addr, "c-a", &via("10.0.0.1")).await.unwrap();
    assert_eq!(events_as(addr, "c-b", &via("10.0.0.1")).await.err().map(|e| e.0), Some(429));
    events_as(addr, "c-c", &via("10.0.0.2")).await.expect("another student behind the balancer");
    // The instructor's roster shows the forwarded address, not the balancer's.
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        let (k, v) = bearer();
        http_with(
            addr,
            "GET",
            "/api/instructor/clients",
            &[(k, &v), ("X-Wirescope-Client", "c-z"), ("x-forwarded-for", "10.0.0.3")],
            None,
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("10.0.0.1") && body.contains("10.0.0.2"), "{body}");
}
