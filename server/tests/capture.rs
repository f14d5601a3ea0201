//! The wire tap: HTTP exchanges through the router, WebSocket frames over real sockets.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use common::{TestServer, body_bytes, body_json, next_frame as next};
use futures_util::{SinkExt, StreamExt};
use protocol::{CloseInfo, Event, EventKind, Opcode, Side};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn kinds(evs: &[Event]) -> Vec<&'static str> {
    evs.iter()
        .map(|e| match &e.kind {
            EventKind::HttpRequest(_) => "request",
            EventKind::HttpResponse(_) => "response",
            EventKind::WsUpgrade(_) => "upgrade",
            EventKind::WsAccept(_) => "accept",
            EventKind::WsFrame(f) if f.from == Side::Client => "frame→",
            EventKind::WsFrame(_) => "frame←",
            EventKind::WsClose(c) if !c.clean => "cut",
            EventKind::WsClose(c) if c.from == Side::Client => "close→",
            EventKind::WsClose(_) => "close←",
            EventKind::Failure(_) => "failure",
            EventKind::Client(_) => "client",
            EventKind::Presence(_) => "presence",
            EventKind::Note(_) => "note",
            EventKind::Hop(_) => "hop",
        })
        .collect()
}

#[tokio::test]
async fn an_http_exchange_is_recorded_with_headers_bodies_and_times_and_secrets_redacted() {
    let s = TestServer::without_app();
    let before = server::clock::now_us();
    let req = Request::post("/transcripts?x=1")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-wirescope-client", "c-alpha")
        .header("x-wirescope-exchange", "41")
        .header(header::AUTHORIZATION, "Bearer hunter2")
        .header(header::COOKIE, "session=abc")
        .body(Body::from(r#"{"studentName":"dana"}"#))
        .unwrap();
    let res = s.send(req).await;
    assert_eq!(body_bytes(res).await, b"5", "the handler still got the whole body");
    let evs = s.events();
    // The write's step into SQLite (the inside view) between the request and its answer.
    assert_eq!(kinds(&evs), ["client", "request", "hop", "response"]);
    assert!(evs.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    let (req_ev, res_ev) = (&evs[1], &evs[3]);
    assert_eq!((req_ev.client.as_str(), req_ev.client_ref), ("c-alpha", Some(41)));
    assert_eq!(req_ev.exchange, res_ev.exchange);
    let EventKind::HttpRequest(r) = &req_ev.kind else { unreachable!() };
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
        ("POST", "/transcripts", Some("x=1"))
    );
    let header = |name: &str| r.headers.iter().find(|h| h.name == name).map(|h| h.value.as_str());
    assert_eq!(header("authorization"), Some("[redacted]"));
    assert_eq!(header("cookie"), Some("[redacted]"));
    assert_eq!(header("content-type"), Some("application/json"));
    let body = r.body.as_ref().unwrap();
    assert_eq!((body.size, body.text.as_deref()), (22, Some(r#"{"studentName":"dana"}"#)));
    let EventKind::HttpResponse(resp) = &res_ev.kind else { unreachable!() };
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.as_ref().unwrap().text.as_deref(), Some("5"));
    let (t_req, t_res) = (req_ev.at.server_us.unwrap(), res_ev.at.server_us.unwrap());
    assert!(before <= t_req && t_req <= t_res && t_res <= server::clock::now_us());
    let json = serde_json::to_string(&evs).unwrap();
    assert!(!json.contains("hunter2") && !json.contains("session=abc"), "no secret anywhere");
}

#[tokio::test]
async fn a_balancers_health_check_is_not_drawn() {
    let s = TestServer::without_app();
    let probe =
        Request::get("/api/health").header("x-wirescope-client", "c-lb").header("x-wirescope-probe", "1");
    assert_eq!(s.send(probe.body(Body::empty()).unwrap()).await.status(), 200);
    // The header hides nothing else: the same probe header on another path is recorded.
    let other =
        Request::get("/transcripts/1").header("x-wirescope-client", "c-lb").header("x-wirescope-probe", "1");
    s.send(other.body(Body::empty()).unwrap()).await;
    let evs = s.wait_events("the later request", |evs| evs.len() >= 2).await;
    let paths: Vec<String> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HttpRequest(r) => Some(r.path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(paths, ["/transcripts/1"], "the health check left no trace");
}

#[tokio::test]
async fn every_event_names_the_node_that_saw_it() {
    let s = TestServer::with_config(|c| c.node = "replica-2".to_owned());
    s.send(Request::get("/api/health").header("x-wirescope-client", "c-n").body(Body::empty()).unwrap())
        .await;
    let evs = s.wait_events("both halves", |evs| evs.len() >= 2).await;
    assert!(evs.iter().all(|e| e.node == "replica-2"), "{evs:?}");
    let json = serde_json::to_string(&evs[0]).unwrap();
    assert!(json.contains(r#""node":"replica-2""#), "{json}");
    // By default, the machine's host name.
    assert!(!server::state::default_node().is_empty());
}

#[tokio::test]
async fn previews_are_cut_but_sizes_are_whole_and_other_secrets_are_scrubbed() {
    let s = TestServer::with_config(|c| c.preview_bytes = 10);
    s.state.secrets().add("s3cr3t-token");
    let sent = r#"{"studentName":"a rather long name indeed"}"#;
    let req = Request::post("/transcripts")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-note", "token s3cr3t-token here")
        .body(Body::from(sent))
        .unwrap();
    s.send(req).await;
    let evs = s.events();
    let EventKind::HttpRequest(r) = &evs[1].kind else { panic!("{evs:?}") };
    let body = r.body.as_ref().unwrap();
    assert_eq!(
        (body.size, body.truncated, body.text.as_deref()),
        (sent.len() as u64, true, Some(r#"{"studentN"#))
    );
    assert_eq!(r.headers.iter().find(|h| h.name == "x-note").unwrap().value, "token [redacted] here");
}

#[tokio::test]
async fn clients_without_an_id_get_a_lane_per_address_and_static_files_are_not_recorded() {
    let s = TestServer::with_app();
    s.get("/transcripts/1").await;
    s.get("/").await;
    s.get("/app-123.js").await;
    let evs = s.events();
    assert_eq!(kinds(&evs), ["client", "request", "response"]);
    assert_eq!(evs[1].client, "anon:unknown", "no connection info in a oneshot call");
    assert!(matches!(&evs[0].kind, EventKind::Client(info) if info.nickname.is_none()));
}

#[tokio::test]
async fn with_capture_off_nothing_is_recorded_and_sessions_say_so() {
    let s = TestServer::with_config(|c| c.capture = false);
    let auth = format!("Bearer {}", s.state.token());
    assert_eq!(s.get("/transcripts").await.status(), 200);
    // What used to be recorded besides exchanges: the instructor's notes and names.
    let fault = Request::post("/api/instructor/faults")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"target":{},"fault":{"kind":"latency","fixedMs":1,"jitterMs":0},"times":1}"#))
        .unwrap();
    assert_eq!(s.send(fault).await.status(), 200);
    let name = Request::patch("/api/instructor/clients/c-ana")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"nickname":"Ana"}"#))
        .unwrap();
    assert_eq!(s.send(name).await.status(), 204);
    assert!(s.events().is_empty(), "{:?}", s.events());
    assert_eq!(s.state.log().latest_seq(), 0);
    assert!(!s.data.path().join("events.sqlite3").exists(), "no event database, so no writer thread");
    for uri in ["/api/sessions", "/api/sessions/1/events", "/api/sessions/current/export"] {
        let res = s.get(uri).await;
        assert_eq!(res.status(), 409, "{uri}");
        let body = body_json(res).await;
        assert!(body["details"].as_str().unwrap().contains("capture is off"), "{uri}: {body}");
    }
    let new_session = Request::post("/api/instructor/session")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(s.send(new_session).await.status(), 409);
}

#[tokio::test]
async fn every_websocket_frame_is_recorded_both_ways() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo?client=c-ws&ref=7")).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    next(&mut ws).await;
    ws.send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef])).await.unwrap();
    next(&mut ws).await;
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    next(&mut ws).await;
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    // Read to the end of the connection (a hang fails instead of waiting forever).
    tokio::time::timeout(Duration::from_secs(10), async { while ws.next().await.is_some() {} })
        .await
        .expect("the connection ends");
    let evs = s
        .wait_events("the close handshake", |e| {
            kinds(e).iter().filter(|k| k.starts_with("close")).count() == 2
        })
        .await;
    assert_eq!(
        kinds(&evs),
        [
            "client", "upgrade", "accept", "frame→", "frame←", "frame→", "frame←", "frame→", "frame←",
            "close→", "close←"
        ]
    );
    assert!(
        evs[1..]
            .iter()
            .all(|e| e.client == "c-ws" && e.client_ref == Some(7) && e.exchange == evs[1].exchange)
    );
    let EventKind::WsAccept(a) = &evs[2].kind else { unreachable!() };
    assert_eq!(a.status, 101);
    let frame = |i: usize| match &evs[i].kind {
        EventKind::WsFrame(f) => f.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (frame(3).opcode, frame(3).fin, frame(3).payload.text.as_deref()),
        (Opcode::Text, true, Some("hello"))
    );
    assert_eq!(
        (frame(5).opcode, frame(5).payload.size, frame(5).payload.hex.as_deref()),
        (Opcode::Binary, 4, Some("deadbeef"))
    );
    assert_eq!((frame(7).opcode, frame(8).opcode), (Opcode::Ping, Opcode::Pong));
    let EventKind::WsClose(c) = &evs[9].kind else { unreachable!() };
    assert_eq!(c.close, Some(CloseInfo { code: 1000, reason: "bye".into() }));
}

#[tokio::test]
async fn secrets_in_frames_close_reasons_and_paths_are_scrubbed() {
    let s = TestServer::with_config(|c| c.preview_bytes = 16);
    s.state.secrets().add("S3CR3T-T0KEN-0123456789");
    let (addr, _task) = s.spawn().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    // The secret straddles the 16-byte preview cut, in both directions (the echo sends it back).
    ws.send(Message::text("0123456789S3CR3T-T0KEN-0123456789 and more")).await.unwrap();
    next(&mut ws).await;
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "S3CR3T-T0KEN-0123456789".into() }))
        .await
        .unwrap();
    // Read to the end of the connection (a hang fails instead of waiting forever).
    tokio::time::timeout(Duration::from_secs(10), async { while ws.next().await.is_some() {} })
        .await
        .expect("the connection ends");
    s.get("/transcripts/S3CR3T-T0KEN-0123456789").await;
    let evs = s.wait_events("the close and the request", |e| kinds(e).contains(&"response")).await;
    let json = serde_json::to_string(&evs).unwrap();
    for part in ["S3CR3T", "T0KEN-0123456789", "S3CR3T-T"] {
        assert!(!json.contains(part), "{part} leaked: {json}");
    }
    let texts: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::WsFrame(f) => f.payload.text.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["0123456789[redac", "0123456789[redac"]);
    assert!(json.contains("/transcripts/[redacted]"), "{json}");
}

#[tokio::test]
async fn a_connection_cut_without_a_close_frame_is_recorded_as_1006() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    next(&mut ws).await;
    drop(ws);
    let evs = s.wait_events("the cut", |e| kinds(e).contains(&"cut")).await;
    assert_eq!(evs.last().unwrap().client, server::identity::pseudonym(Some("127.0.0.1")));
    let EventKind::WsClose(c) = &evs.last().unwrap().kind else { unreachable!() };
    assert_eq!((c.from, c.clean, c.close.as_ref()), (Side::Client, false, None));
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_which_the_client_sees() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    let big = "x".repeat(server::limits::MAX_MESSAGE_BYTES + 10);
    let _ = ws.send(Message::text(big)).await;
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    let evs = s.wait_events("the 1009 and the whole oversized frame", |e| {
        e.iter().any(|e| matches!(&e.kind, EventKind::WsClose(c) if c.from == Side::Server && c.close.as_ref().is_some_and(|i| i.code == 1009)))
            && e.iter().any(|e| matches!(&e.kind, EventKind::WsFrame(f) if f.from == Side::Client))
    })
    .await;
    let big_frame = evs.iter().find_map(|e| match &e.kind {
        EventKind::WsFrame(f) if f.from == Side::Client => Some(f.payload.clone()),
        _ => None,
    });
    assert_eq!(
        big_frame.map(|p| (p.size, p.truncated)),
        Some((server::limits::MAX_MESSAGE_BYTES as u64 + 10, true))
    );
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo")).await.unwrap();
    // A text frame whose payload is not UTF-8 (sent raw: the client library would refuse).
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, 0xfd],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    ws.send(Message::Frame(frame)).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1007),
        other => panic!("expected close 1007, got {other:?}"),
    }
}

#[tokio::test]
async fn a_program_without_an_id_is_a_pseudonym_and_no_screen_learns_its_address_or_agent() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let agent = "curl/8.5.0 (lab machine 17)";
    tokio::task::spawn_blocking(move || {
        let headers = [("User-Agent", agent), ("X-Forwarded-For", "10.1.2.3")];
        let got = common::http_with(addr, "GET", "/api/health", &headers, None);
        assert_eq!(got.map(|r| r.0), Some(200));
    })
    .await
    .unwrap();
    // The instructor asks where everyone is: the answer is recorded by its size only.
    let auth = format!("Bearer {}", s.state.token());
    let req =
        Request::get("/api/instructor/clients").header("authorization", &auth).body(Body::empty()).unwrap();
    let clients = body_json(s.send(req).await).await;
    // What an observer is sent: the events as recorded (the instructor's call among them), and
    // the roster after `hello`.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/observe")).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("\"type\":\"events\"") {
        if let Message::Text(t) = next(&mut ws).await {
            seen.push_str(&t);
        }
    }
    let lane = server::identity::pseudonym(Some("127.0.0.1"));
    assert!(lane.starts_with("anon:") && !lane.contains("127.0.0.1"), "{lane}");
    assert!(seen.contains(&lane), "{seen}");
    assert!(seen.contains("/api/instructor/clients"), "the instructor's call is drawn: {seen}");
    assert!(seen.contains("\"agent\":\"curl\""), "the kind of program is told: {seen}");
    assert!(!seen.contains("10.1.2.3"), "{seen}");
    assert!(!seen.contains("\"addr\"") && !seen.contains("lab machine 17"), "{seen}");
    assert!(seen.contains("\"name\":\"user-agent\",\"value\":\"[curl]\""), "{seen}");
    // The instructor alone maps the pseudonym back.
    let entry = clients.as_array().unwrap().iter().find(|c| c["client"] == lane.as_str()).expect("listed");
    assert_eq!((entry["addr"].as_str(), entry["userAgent"].as_str()), (Some("127.0.0.1"), Some(agent)));
    assert_eq!(s.get("/api/instructor/clients").await.status(), 403);
}

/// The lane of a program without an id, as a real server with `token` names it.
async fn anonymous_lane(token: &'static str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let server = tokio::task::spawn_blocking(move || {
        let s = common::RealServer::start(dir.path(), &["--instructor-token", token]);
        assert_eq!(common::http(s.addr, "GET", "/transcripts/1", None).0, 200);
        (s, dir)
    })
    .await
    .unwrap();
    let seen = common::observe_until(server.0.addr, 0, |e| {
        e.iter().any(|e| matches!(&e.kind, EventKind::HttpRequest(r) if r.path == "/transcripts/1"))
    })
    .await;
    let request = seen.iter().find(|e| matches!(e.kind, EventKind::HttpRequest(_))).unwrap();
    request.client.clone()
}

/// Replicas sharing the token name an address alike; a rotated token names it anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pseudonym_of_an_address_follows_the_token() {
    let one = anonymous_lane("pseudonym-token-one-0123456789").await;
    let same = anonymous_lane("pseudonym-token-one-0123456789").await;
    let rotated = anonymous_lane("pseudonym-token-two-0123456789").await;
    assert!(one.starts_with("anon:"), "{one}");
    assert_eq!(one, same, "another process with the same token: the same lane");
    assert_ne!(one, rotated, "another token: another pseudonym");
}

/// The exchange's events of lane `client`, as (what, hop's words) pairs.
fn steps_of(events: &[Event], client: &str) -> Vec<(&'static str, String)> {
    let mine: Vec<Event> = events.iter().filter(|e| e.client == client).cloned().collect();
    kinds(&mine)
        .into_iter()
        .zip(&mine)
        .map(|(k, e)| match &e.kind {
            EventKind::Hop(h) => (k, h.step.describe()),
            _ => (k, String::new()),
        })
        .collect()
}

#[tokio::test]
async fn the_inside_view_a_write_and_a_trusted_balancers_handoff_drawn_between_request_and_answer() {
    // Behind a trusted balancer: its hand-off headers become a step after the request.
    let s = TestServer::with_config(|c| {
        c.client_address_header = Some(axum::http::HeaderName::from_static("x-forwarded-for"));
    });
    let sent_at = server::clock::now_us() - 1_500;
    let req = Request::post("/transcripts")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-wirescope-client", "c-inside")
        .header("x-forwarded-for", "10.0.0.7")
        .header(server::hops::SERVER_HEADER, "replica-2")
        .header(server::hops::AT_HEADER, sent_at.to_string())
        .body(Body::from(r#"{"studentName":"ines"}"#))
        .unwrap();
    assert_eq!(s.send(req).await.status(), 200);
    let events = answered(&s, "c-inside").await;
    assert_eq!(
        steps_of(&events, "c-inside"),
        [
            ("client", String::new()),
            ("request", String::new()),
            ("hop", "hand-off to replica-2".to_owned()),
            ("hop", "INSERT students · 1 row".to_owned()),
            ("response", String::new()),
        ]
    );
    let hops: Vec<&Event> = events.iter().filter(|e| matches!(e.kind, EventKind::Hop(_))).collect();
    let request = events.iter().find(|e| matches!(e.kind, EventKind::HttpRequest(_))).unwrap();
    let (EventKind::Hop(handoff), EventKind::Hop(write)) = (&hops[0].kind, &hops[1].kind) else { panic!() };
    // The hand-off began when the balancer received the request and took until the replica did.
    assert_eq!(hops[0].at.server_us, Some(sent_at));
    assert_eq!(handoff.took_us as i64, request.at.server_us.unwrap() - sent_at);
    assert!(handoff.took_us >= 1_500, "{handoff:?}");
    assert!(write.took_us > 0 && hops[1].at.server_us >= request.at.server_us, "{write:?}");
    assert!(hops.iter().all(|h| h.exchange == request.exchange && h.node == request.node));
    // A read is answered from memory: nothing inside.
    let req =
        Request::get("/transcripts/1").header("x-wirescope-client", "c-read").body(Body::empty()).unwrap();
    assert_eq!(s.send(req).await.status(), 200);
    let events = answered(&s, "c-read").await;
    assert_eq!(
        kinds(&events.into_iter().filter(|e| e.client == "c-read").collect::<Vec<_>>()),
        ["client", "request", "response"]
    );

    // A time no balancer would stamp (the epoch's first second) is not drawn.
    let req = Request::get("/api/health")
        .header("x-wirescope-client", "c-epoch")
        .header("x-forwarded-for", "10.0.0.8")
        .header(server::hops::SERVER_HEADER, "replica-2")
        .header(server::hops::AT_HEADER, "1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(s.send(req).await.status(), 200);
    let events = answered(&s, "c-epoch").await;
    assert!(
        !events.iter().any(|e| e.client == "c-epoch" && matches!(e.kind, EventKind::Hop(_))),
        "{events:?}"
    );

    // Without a trusted balancer the same headers are anyone's words: no hand-off.
    let plain = TestServer::without_app();
    let req = Request::get("/api/health")
        .header("x-wirescope-client", "c-spoof")
        .header(server::hops::SERVER_HEADER, "replica-9")
        .header(server::hops::AT_HEADER, sent_at.to_string())
        .body(Body::empty())
        .unwrap();
    assert_eq!(plain.send(req).await.status(), 200);
    let events = answered(&plain, "c-spoof").await;
    assert!(!events.iter().any(|e| matches!(e.kind, EventKind::Hop(_))), "{events:?}");
}

/// The events once lane `client` has its answer.
async fn answered(s: &TestServer, client: &str) -> Vec<Event> {
    let answered =
        |e: &[Event]| e.iter().any(|e| e.client == client && matches!(e.kind, EventKind::HttpResponse(_)));
    s.wait_events("the answer", answered).await
}
