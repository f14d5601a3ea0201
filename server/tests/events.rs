//! `/ws/events` over real sockets, and the change feed's polling styles and SSE.

mod common;

use std::time::Duration;

use common::{TestServer, Ws, http};
use futures_util::{SinkExt, StreamExt};
use protocol::channel::{ChangeKind, ClientMsg, ServerEnvelope, ServerMsg};
use protocol::{EventKind, Side};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn connect(addr: std::net::SocketAddr, client: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws/events?client={client}")).await.unwrap().0
}

async fn send(ws: &mut Ws, msg: ClientMsg) {
    ws.send(Message::text(serde_json::to_string(&msg).unwrap())).await.unwrap();
}

async fn next(ws: &mut Ws) -> ServerEnvelope {
    common::next_json(ws).await
}

/// The next message that is not a tick.
async fn next_msg(ws: &mut Ws) -> ServerMsg {
    loop {
        let env = next(ws).await;
        if !matches!(env.msg, ServerMsg::Tick { .. }) {
            return env.msg;
        }
    }
}

/// Says hello and answers the `welcome` (skipping presence news that came first).
async fn hello(ws: &mut Ws, name: &str) -> ServerMsg {
    send(ws, ClientMsg::Hello { name: name.into() }).await;
    loop {
        let m = next_msg(ws).await;
        if !matches!(m, ServerMsg::Joined { .. } | ServerMsg::Left { .. }) {
            return m;
        }
    }
}

#[tokio::test]
async fn hello_welcome_and_presence() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let mut ana = connect(addr, "c-ana").await;
    match hello(&mut ana, "Ana").await {
        ServerMsg::Welcome { version, client_id, connected } => {
            assert_eq!(
                (version, client_id.as_str(), connected),
                (protocol::channel::CHANNEL_VERSION, "c-ana", 1)
            );
        }
        other => panic!("{other:?}"),
    }
    let mut ben = connect(addr, "c-ben").await;
    hello(&mut ben, "Ben").await;
    match next_msg(&mut ana).await {
        ServerMsg::Joined { peer, connected } => assert_eq!((peer.name.as_str(), connected), ("Ben", 2)),
        other => panic!("{other:?}"),
    }
    drop(ben);
    match next_msg(&mut ana).await {
        ServerMsg::Left { peer, connected } => assert_eq!((peer.client_id.as_str(), connected), ("c-ben", 1)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rooms_are_isolated_and_replay_their_last_200_messages() {
    let s = TestServer::with_config(|c| c.chat_limit = 1000);
    let (addr, _t) = s.spawn().await;
    let mut ana = connect(addr, "c-ana").await;
    let mut ben = connect(addr, "c-ben").await;
    hello(&mut ana, "Ana").await;
    hello(&mut ben, "Ben").await;
    next_msg(&mut ana).await; // Ben joined
    send(&mut ana, ClientMsg::Join { room: "red".into() }).await;
    assert!(matches!(next_msg(&mut ana).await, ServerMsg::History { messages, .. } if messages.is_empty()));
    send(&mut ben, ClientMsg::Join { room: "blue".into() }).await;
    next_msg(&mut ben).await;
    for i in 0..205 {
        send(&mut ana, ClientMsg::Chat { room: "red".into(), text: format!("m{i}") }).await;
    }
    for i in 0..205 {
        match next_msg(&mut ana).await {
            ServerMsg::Chat(line) => {
                assert_eq!((line.text, line.from.name.as_str()), (format!("m{i}"), "Ana"))
            }
            other => panic!("{other:?}"),
        }
    }
    // Ben (in blue) got none of it; chatting to a room you are not in is an error.
    send(&mut ben, ClientMsg::Chat { room: "red".into(), text: "hi".into() }).await;
    let m = next_msg(&mut ben).await;
    assert!(matches!(m, ServerMsg::Error { .. }), "{m:?}");
    send(&mut ben, ClientMsg::Join { room: "red".into() }).await;
    match next_msg(&mut ben).await {
        ServerMsg::History { room, members, messages } => {
            assert_eq!((room.as_str(), members, messages.len()), ("red", 2, 200));
            assert_eq!(messages[0].text, "m5");
            assert_eq!(messages[199].text, "m204");
        }
        other => panic!("{other:?}"),
    }
    send(&mut ben, ClientMsg::Chat { room: "red".into(), text: "hello red".into() }).await;
    assert!(matches!(next_msg(&mut ana).await, ServerMsg::Chat(l) if l.text == "hello red"));
    assert!(
        matches!(next_msg(&mut ben).await, ServerMsg::Chat(l) if l.text == "hello red"),
        "the sender hears its own line"
    );
    send(&mut ben, ClientMsg::Leave { room: "red".into() }).await;
    send(&mut ana, ClientMsg::Chat { room: "red".into(), text: "after".into() }).await;
    assert!(matches!(next_msg(&mut ana).await, ServerMsg::Chat(l) if l.text == "after"));
    send(&mut ben, ClientMsg::Hello { name: "Ben".into() }).await;
    assert!(
        matches!(next_msg(&mut ben).await, ServerMsg::Welcome { .. }),
        "nothing from red reached Ben after leaving"
    );
}

#[tokio::test]
async fn the_ping_pong_demo_runs_its_rounds() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let mut ws = connect(addr, "c-pp").await;
    send(&mut ws, ClientMsg::Pingpong { rounds: 3 }).await;
    for n in 1..=3 {
        assert_eq!(next_msg(&mut ws).await, ServerMsg::Ping { n });
        send(&mut ws, ClientMsg::Pong { n }).await;
    }
    assert_eq!(next_msg(&mut ws).await, ServerMsg::PingpongDone { rounds: 3 });
}

#[tokio::test]
async fn ticks_carry_the_watchers_and_every_message_its_seq_and_time() {
    let s = TestServer::with_config(|c| c.tick = Duration::from_millis(100));
    let (addr, _t) = s.spawn().await;
    let mut a = connect(addr, "c-a").await;
    let _b = connect(addr, "c-b").await;
    let before = server::clock::now_us();
    let mut seqs = Vec::new();
    loop {
        let env = next(&mut a).await;
        seqs.push(env.seq);
        assert!(env.at_us >= before - 5_000_000);
        if let ServerMsg::Tick { watchers } = env.msg {
            assert_eq!(watchers, 2);
            break;
        }
    }
    send(&mut a, ClientMsg::Hello { name: "A".into() }).await;
    loop {
        let env = next(&mut a).await;
        seqs.push(env.seq);
        if matches!(env.msg, ServerMsg::Welcome { .. }) {
            break;
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 1, "{seqs:?}");
}

#[tokio::test]
async fn bad_messages_get_an_error_and_the_connection_stays_open() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let mut ws = connect(addr, "c-x").await;
    for bad in [
        r#"{"type":"dance","data":{}}"#,
        "not json",
        r#"{"type":"join","data":{"room":""}}"#,
        r#"{"type":"pong","data":{"n":1}}"#,
    ] {
        ws.send(Message::text(bad)).await.unwrap();
        assert!(matches!(next_msg(&mut ws).await, ServerMsg::Error { .. }), "{bad}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(matches!(next_msg(&mut ws).await, ServerMsg::Error { .. }));
    assert!(matches!(hello(&mut ws, "still here").await, ServerMsg::Welcome { .. }));
    // Over the size limit: 1009, seen by the client.
    let _ = ws.send(Message::text("x".repeat(protocol::channel::MAX_MESSAGE_BYTES + 1))).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Close(Some(f)) => {
                assert_eq!(f.code, CloseCode::Size);
                break;
            }
            Message::Text(_) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_rest_write_is_pushed_to_every_connection_and_linked_to_its_request() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let mut a = connect(addr, "c-a").await;
    let mut b = connect(addr, "c-b").await;
    let (status, id) = tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/transcripts", Some(r#"{"studentName":"pushed"}"#))
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let mut causes = Vec::new();
    for ws in [&mut a, &mut b] {
        match next_msg(ws).await {
            ServerMsg::TranscriptChanged(c) => {
                assert_eq!((c.kind, c.student_id.to_string()), (ChangeKind::StudentCreated, id.clone()));
                causes.push(c.cause.expect("a cause"));
            }
            other => panic!("{other:?}"),
        }
    }
    let evs = s
        .wait_events("the pushed frames in the log", |e| {
            e.iter().filter(|e| e.cause.is_some() && matches!(e.kind, EventKind::WsFrame(_))).count() == 2
        })
        .await;
    let post =
        evs.iter().find(|e| matches!(&e.kind, EventKind::HttpRequest(r) if r.method == "POST")).unwrap();
    assert!(causes.iter().all(|c| *c == post.exchange), "the change names the POST's exchange");
    let pushed: Vec<_> = evs.iter().filter(|e| e.cause == Some(post.exchange)).collect();
    assert_eq!(pushed.len(), 2, "one pushed frame per connection, each linked to the POST");
    assert!(pushed.iter().all(|e| matches!(&e.kind, EventKind::WsFrame(f) if f.from == Side::Server)));
    assert_ne!(pushed[0].client, pushed[1].client);
}

#[tokio::test]
async fn a_reconnecting_client_gets_the_changes_it_missed_once_each() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let post = |name: &'static str| {
        tokio::task::spawn_blocking(move || {
            http(addr, "POST", "/transcripts", Some(&format!(r#"{{"studentName":"{name}"}}"#)))
        })
    };
    let mut ws = connect(addr, "c-r").await;
    post("seen").await.unwrap();
    let ServerMsg::TranscriptChanged(seen) = next_msg(&mut ws).await else { panic!("a change") };
    drop(ws);
    // Away: two changes happen.
    let (_, a) = post("missed-a").await.unwrap();
    let (_, b) = post("missed-b").await.unwrap();
    let url = format!("ws://{addr}/ws/events?client=c-r&since={}", seen.seq);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        if let ServerMsg::TranscriptChanged(c) = next_msg(&mut ws).await {
            got.push((c.seq, c.student_id.to_string()));
        }
    }
    assert_eq!(got, [(seen.seq + 1, a), (seen.seq + 2, b)], "replayed in order, nothing before `since`");
    // Then live, with no duplicate of the replay.
    let (_, c) = post("live").await.unwrap();
    loop {
        match next_msg(&mut ws).await {
            ServerMsg::TranscriptChanged(ch) => {
                assert_eq!((ch.seq, ch.student_id.to_string()), (seen.seq + 3, c));
                break;
            }
            ServerMsg::Joined { .. } | ServerMsg::Left { .. } | ServerMsg::Welcome { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    // A bad `since` is refused before the upgrade, with a JSON error.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws/events?since=x")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 422);
            let body = String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("since"), "{body}");
        }
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[tokio::test]
async fn the_change_feed_by_short_poll_long_poll_and_sse() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let get = |path: &'static str| tokio::task::spawn_blocking(move || http(addr, "GET", path, None));
    let (status, body) = get("/api/changes").await.unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"changes":[],"latest":0}"#));
    assert_eq!(get("/api/changes?wait=99").await.unwrap().0, 422);

    // Long poll: answered at the first change, not at the end of the wait.
    let started = std::time::Instant::now();
    let waiting = get("/api/changes?since=0&wait=20");
    // The poll is at the server before the change is made.
    s.wait_events("the long poll", |evs| {
        evs.iter().any(|e| {
            matches!(&e.kind, EventKind::HttpRequest(r)
                if r.path == "/api/changes" && r.query.as_deref() == Some("since=0&wait=20"))
        })
    })
    .await;
    tokio::task::spawn_blocking(move || http(addr, "DELETE", "/transcripts/4", None)).await.unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["latest"].as_u64(), v["changes"][0]["kind"].as_str()), (Some(1), Some("studentDeleted")));
    // Nothing new: the long poll gives up after its wait, empty.
    let (_, body) = get("/api/changes?since=1&wait=1").await.unwrap();
    assert_eq!(body, r#"{"changes":[],"latest":1}"#);

    // SSE: the backlog after Last-Event-ID, then live changes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sse = tokio::net::TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /api/changes/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 0\r\n\r\n").await.unwrap();
    tokio::task::spawn_blocking(move || http(addr, "POST", "/transcripts/1/Streams", Some("77")))
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !(got.contains("id: 1") && got.contains("id: 2")) {
        let n = tokio::time::timeout(Duration::from_secs(5), sse.read(&mut buf))
            .await
            .expect("sse data")
            .unwrap();
        assert!(n > 0, "stream ended: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("content-type: text/event-stream"), "{got}");
    assert!(got.contains("event: transcriptChanged"));
    assert!(got.contains(r#""kind":"gradeAdded""#) && got.contains(r#""course":"Streams""#), "{got}");
}

/// An instructor's request to the lab.
async fn lab(
    s: &TestServer,
    addr: std::net::SocketAddr,
    method: &'static str,
    body: Option<&'static str>,
) -> (u16, String) {
    let auth = format!("Bearer {}", s.state.token());
    tokio::task::spawn_blocking(move || {
        let (status, _, body) =
            common::http_with(addr, method, "/api/lab", &[("Authorization", &auth)], body).unwrap();
        (status, body)
    })
    .await
    .unwrap()
}

/// Reads room `lab` until a pushed report satisfies `done`.
async fn lab_report_until(
    ws: &mut Ws,
    done: impl Fn(&protocol::lab::LabReport) -> bool,
) -> protocol::lab::LabReport {
    loop {
        if let ServerMsg::LabReport(r) = next_msg(ws).await
            && done(&r)
        {
            return r;
        }
    }
}

#[tokio::test]
async fn the_lab_follows_a_scratch_store_four_ways_and_never_touches_the_course_data() {
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let before = tokio::task::spawn_blocking(move || http(addr, "GET", "/transcripts", None)).await.unwrap();
    let student = tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/api/lab", Some(r#"{"rate":10,"subscribers":20,"pollMs":200}"#))
    })
    .await
    .unwrap();
    assert_eq!(student.0, 403, "only the instructor runs what the projector shows: {}", student.1);
    let bad = lab(&s, addr, "POST", Some(r#"{"rate":500,"subscribers":0,"pollMs":1}"#)).await;
    assert_eq!(bad.0, 422);
    for f in ["rate", "subscribers", "pollMs"] {
        assert!(bad.1.contains(f), "{}", bad.1);
    }
    let mut ws = connect(addr, "c-lab").await;
    send(&mut ws, ClientMsg::Join { room: "lab".into() }).await;
    next_msg(&mut ws).await;
    let (status, _) = lab(&s, addr, "POST", Some(r#"{"rate":10,"subscribers":20,"pollMs":200}"#)).await;
    assert_eq!(status, 200);
    // Room lab hears the scratch changes and, every second, the figures: wait until every
    // pattern has delivered (pushed; nobody polls the report).
    let r = lab_report_until(&mut ws, |r| {
        r.changes >= 10 && r.patterns.iter().all(|p| p.counts.requests >= 20 && p.counts.deliveries > 0)
    })
    .await;
    assert!(r.running && r.failed == 0, "{r:?}");
    let r = serde_json::to_value(&r).unwrap();
    let names: Vec<&str> =
        r["patterns"].as_array().unwrap().iter().map(|p| p["pattern"].as_str().unwrap()).collect();
    assert_eq!(names, ["shortPoll", "longPoll", "sse", "webSocket"]);
    for p in r["patterns"].as_array().unwrap() {
        assert!(p["payloadBytes"].as_u64().unwrap() > 0, "{p}");
        assert!(p["summary"].as_str().unwrap().ends_with('.'));
    }
    let short = &r["patterns"][0];
    let ws_p = &r["patterns"][3];
    assert!(
        short["requests"].as_u64() > ws_p["requests"].as_u64(),
        "polling makes more requests than a WebSocket"
    );
    // A second run (a new rate, as the lecture's step 5 does) posts grades too.
    let (status, _) = lab(&s, addr, "POST", Some(r#"{"rate":20,"subscribers":5,"pollMs":500}"#)).await;
    assert_eq!(status, 200);
    let second = lab_report_until(&mut ws, |r| {
        r.config.is_some_and(|c| c.rate == 20.0) && (r.changes >= 5 || r.failed > 0)
    })
    .await;
    assert_eq!((second.failed, second.problem.as_deref()), (0, None), "every grade of the second run posted");
    let (_, lab_changes) =
        tokio::task::spawn_blocking(move || http(addr, "GET", "/api/lab/changes", None)).await.unwrap();
    assert!(lab_changes.contains("gradeAdded"));
    assert_eq!(
        tokio::task::spawn_blocking(move || http(addr, "DELETE", "/api/lab", None)).await.unwrap().0,
        403
    );
    assert_eq!(lab(&s, addr, "DELETE", None).await.0, 204);
    // Stopped: the room is told, and the figures stay.
    let stopped = lab_report_until(&mut ws, |r| !r.running).await;
    assert!(stopped.changes >= second.changes && stopped.config.is_some(), "{stopped:?}");
    let (_, again) = tokio::task::spawn_blocking(move || http(addr, "GET", "/api/lab", None)).await.unwrap();
    let again: protocol::lab::LabReport = serde_json::from_str(&again).unwrap();
    assert_eq!((again.running, again.changes, again.seconds), (false, stopped.changes, stopped.seconds));
    let after = tokio::task::spawn_blocking(move || http(addr, "GET", "/transcripts", None)).await.unwrap();
    assert_eq!(before, after, "the course's transcripts are untouched");
    let (_, changes) =
        tokio::task::spawn_blocking(move || http(addr, "GET", "/api/changes", None)).await.unwrap();
    assert_eq!(changes, r#"{"changes":[],"latest":0}"#, "and no course change was published");
}
