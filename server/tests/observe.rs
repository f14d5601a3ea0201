//! `/ws/observe` over real sockets: snapshot, live events, resume without gap or duplicate,
//! stalled and slow observers, presence.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestServer, Ws};
use futures_util::SinkExt;
use protocol::{Event, EventKind, ObserverMsg, Stamps};
use tokio_tungstenite::tungstenite::Message;

async fn connect(addr: std::net::SocketAddr, query: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws/observe{query}")).await.unwrap().0
}

async fn msg(ws: &mut Ws) -> ObserverMsg {
    common::next_json(ws).await
}

/// Reads until `n` events arrived (control messages collected too).
async fn read_events(ws: &mut Ws, n: usize) -> (Vec<Event>, Vec<ObserverMsg>) {
    let (mut evs, mut controls) = (Vec::new(), Vec::new());
    while evs.len() < n {
        match msg(ws).await {
            ObserverMsg::Events { events } => evs.extend(events),
            other => controls.push(other),
        }
    }
    (evs, controls)
}

fn note(s: &TestServer, i: u64) -> u64 {
    let kind =
        EventKind::Failure(protocol::Failure { from: protocol::Side::Client, message: format!("n{i}") });
    s.state.log().record(
        "c-test",
        i,
        None,
        Stamps { client_us: None, server_us: Some(server::clock::now_us()) },
        kind,
    )
}

#[tokio::test]
async fn hello_then_a_snapshot_then_live_events_in_seq_order() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    for i in 0..3 {
        note(&s, i);
    }
    let mut ws = connect(addr, "").await;
    let ObserverMsg::Hello { version, latest_seq, .. } = msg(&mut ws).await else { panic!("hello first") };
    assert_eq!((version, latest_seq), (protocol::PROTOCOL_VERSION, 3));
    let (snapshot, _) = read_events(&mut ws, 3).await;
    assert_eq!(snapshot.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    // (No presence note can come between: the first one is a second away.)
    // A real exchange, captured and streamed.
    tokio::task::spawn_blocking(move || common::http(addr, "GET", "/transcripts/1", None)).await.unwrap();
    let (live, _) = read_events(&mut ws, 3).await;
    let kinds: Vec<bool> = live.iter().map(|e| e.kind.is_message()).collect();
    assert_eq!(kinds, [false, true, true], "client note, request, response");
    assert_eq!(live.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6]);
    // The observer's own traffic is not in the log.
    assert!(s.events().iter().all(|e| !format!("{:?}", e.kind).contains("/ws/observe")));
}

#[tokio::test]
async fn resuming_with_since_has_no_gap_and_no_duplicate_under_concurrent_writes() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let log = s.state.log().clone();
    let writer = tokio::spawn(async move {
        for i in 0..3000u64 {
            let kind = EventKind::Failure(protocol::Failure {
                from: protocol::Side::Client,
                message: format!("w{i}"),
            });
            log.record("c-w", i, None, Stamps::default(), kind);
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let mut seen = BTreeSet::new();
    let mut dupes = 0;
    let mut since = 0u64;
    // Reconnect five times while the writer runs, each time resuming after the last seq seen.
    for round in 0..6 {
        let mut ws = connect(addr, &format!("?since={since}")).await;
        let ObserverMsg::Hello { .. } = msg(&mut ws).await else { panic!("hello") };
        // Presence notes share the log (one a second at most); count only the writer's events.
        let want = if round < 5 { 200 } else { 3000 - seen.len() };
        let mut got = 0;
        while got < want {
            let (evs, _) = read_events(&mut ws, 1).await;
            for e in evs {
                since = since.max(e.seq);
                if e.client == "c-w" {
                    got += 1;
                    if !seen.insert(e.seq) {
                        dupes += 1;
                    }
                }
            }
        }
        drop(ws);
    }
    writer.await.unwrap();
    assert_eq!(dupes, 0);
    // No gap: exactly the writer's events as the log numbered them, each once.
    let logged: BTreeSet<u64> = s.events().iter().filter(|e| e.client == "c-w").map(|e| e.seq).collect();
    assert_eq!(logged.len(), 3000);
    assert_eq!(seen, logged, "no gap");
}

#[tokio::test]
async fn a_stalled_observer_does_not_starve_another() {
    let s = TestServer::with_config(|c| c.log.observer_queue = 64);
    let (addr, _task) = s.spawn().await;
    // The stalled one connects and never reads again.
    let mut stalled = connect(addr, "").await;
    let ObserverMsg::Hello { .. } = msg(&mut stalled).await else { panic!() };
    let mut reader = connect(addr, "").await;
    let ObserverMsg::Hello { .. } = msg(&mut reader).await else { panic!() };
    const N: u64 = 20_000;
    let producer = {
        let log = s.state.log().clone();
        tokio::spawn(async move {
            for i in 0..N {
                let kind = EventKind::Failure(protocol::Failure {
                    from: protocol::Side::Server,
                    message: "x".repeat(200),
                });
                log.record("c-p", i, None, Stamps::default(), kind);
                if i % 500 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut evs = Vec::new();
    while evs.len() < N as usize {
        let (more, _) = read_events(&mut reader, 1).await;
        evs.extend(more.into_iter().filter(|e| e.client == "c-p"));
    }
    producer.await.unwrap();
    let seqs: BTreeSet<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), N as usize, "the reading observer got every event, once");
    assert_eq!(evs.len(), N as usize);
    drop(stalled);
}

#[tokio::test]
async fn a_slow_observer_is_told_it_lagged_and_caught_up_from_the_log() {
    let s = TestServer::with_config(|c| c.log.observer_queue = 8);
    let (addr, _task) = s.spawn().await;
    let mut ws = connect(addr, "").await;
    let ObserverMsg::Hello { .. } = msg(&mut ws).await else { panic!() };
    // Many events at once, while the observer is not reading.
    let recorded: Vec<u64> = (0..2000).map(|i| note(&s, i)).collect();
    let mut seqs = Vec::new();
    let mut controls = Vec::new();
    while seqs.len() < recorded.len() {
        let (evs, c) = read_events(&mut ws, 1).await;
        controls.extend(c);
        seqs.extend(evs.iter().filter(|e| e.client == "c-test").map(|e| e.seq));
    }
    assert!(controls.iter().any(|c| matches!(c, ObserverMsg::Lagged { .. })), "{controls:?}");
    assert_eq!(seqs, recorded, "in order, nothing missing, nothing twice");
}

#[tokio::test]
async fn observers_coming_and_going_are_merged_into_presence_events() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let a = connect(addr, "?client=c-a&nick=Ana").await;
    let b = connect(addr, "").await;
    let c = connect(addr, "").await;
    drop(c);
    let totals = |e: &[Event]| {
        e.iter().fold((0, 0, 0), |(j, l, _), e| match e.kind {
            EventKind::Presence(p) => (j + p.joined, l + p.left, p.observers),
            _ => (j, l, 0),
        })
    };
    let evs = s.wait_events("presence", |e| totals(e) == (3, 1, 2)).await;
    let times: Vec<i64> = evs
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Presence(_)))
        .map(|e| e.at.server_us.unwrap())
        .collect();
    assert!(times.len() <= 2, "merged: {times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 900_000), "at most one a second: {times:?}");
    let named = evs.iter().any(|e| {
        e.client == "c-a" && matches!(&e.kind, EventKind::Client(i) if i.nickname.as_deref() == Some("Ana"))
    });
    assert!(named, "the nickname is recorded");
    drop((a, b));
}

#[tokio::test]
async fn clock_pings_are_answered_with_the_server_time() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let mut ws = connect(addr, "").await;
    let _hello = msg(&mut ws).await;
    let t0 = server::clock::now_us();
    ws.send(Message::text(format!(r#"{{"type":"clock","clientTimeUs":{t0}}}"#))).await.unwrap();
    loop {
        if let ObserverMsg::Clock { client_time_us, server_time_us } = msg(&mut ws).await {
            assert_eq!(client_time_us, t0);
            assert!(server_time_us >= t0 && server_time_us <= server::clock::now_us());
            break;
        }
    }
}

/// Reads until a control message (not events) arrives.
async fn control(ws: &mut Ws) -> ObserverMsg {
    loop {
        match msg(ws).await {
            ObserverMsg::Events { .. } | ObserverMsg::Hello { .. } | ObserverMsg::Clients { .. } => {}
            other => return other,
        }
    }
}

#[tokio::test]
async fn nickname_changes_are_limited_and_bad_commands_get_an_error() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let mut ws = connect(addr, "?client=c-n").await;
    let nick = |n: &str| Message::text(format!(r#"{{"type":"nickname","nickname":"{n}"}}"#));
    for n in ["One", "Two", "Three"] {
        ws.send(nick(n)).await.unwrap();
    }
    ws.send(nick("Four")).await.unwrap();
    assert_eq!(
        control(&mut ws).await,
        ObserverMsg::Error { message: "too many name changes; wait a minute".into() }
    );
    ws.send(Message::text(r#"{"type":"launch"}"#)).await.unwrap();
    let ObserverMsg::Error { message } = control(&mut ws).await else { panic!("an error") };
    assert!(message.starts_with("unreadable command"), "{message}");
    // The connection stays usable, and the last accepted name is the one recorded.
    assert_eq!(s.state.clients().nickname("c-n").as_deref(), Some("Three"));
    let t0 = server::clock::now_us();
    ws.send(Message::text(format!(r#"{{"type":"clock","clientTimeUs":{t0}}}"#))).await.unwrap();
    assert!(matches!(control(&mut ws).await, ObserverMsg::Clock { .. }));
}

#[tokio::test]
async fn a_name_the_instructor_set_cannot_be_changed_by_the_client() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    let mut ws = connect(addr, "?client=c-p&nick=Rude").await;
    s.state.clients().rename_by_instructor(s.state.log(), "c-p", "Student 7");
    ws.send(Message::text(r#"{"type":"nickname","nickname":"Rude again"}"#)).await.unwrap();
    assert_eq!(control(&mut ws).await, ObserverMsg::Error { message: "the instructor set this name".into() });
    assert_eq!(s.state.clients().nickname("c-p").as_deref(), Some("Student 7"));
    // Reconnecting with the old name does not undo it either.
    let mut again = connect(addr, "?client=c-p&nick=Rude").await;
    // The name in the URL is handled before the hello is sent.
    let ObserverMsg::Hello { .. } = msg(&mut again).await else { panic!("hello") };
    assert_eq!(s.state.clients().nickname("c-p").as_deref(), Some("Student 7"));
}

#[tokio::test]
async fn a_screen_that_joins_late_learns_every_nickname_right_after_hello() {
    let s = TestServer::without_app();
    let (addr, _task) = s.spawn().await;
    // Ana names herself; her own screen sees the `client` event once it is recorded.
    let mut ana = connect(addr, "?client=c-ana-0001&nick=Ana").await;
    loop {
        let (evs, _) = read_events(&mut ana, 1).await;
        if evs.iter().any(|e| matches!(&e.kind, EventKind::Client(i) if i.nickname.as_deref() == Some("Ana")))
        {
            break;
        }
    }
    // A screen opened later, resuming after everything (so no `client` event reaches it).
    let latest = s.state.log().latest_seq();
    let mut late = connect(addr, &format!("?since={latest}")).await;
    let ObserverMsg::Hello { .. } = msg(&mut late).await else { panic!("hello first") };
    let ObserverMsg::Clients { clients } = msg(&mut late).await else { panic!("then who is who") };
    let ana = clients.iter().find(|c| c.client == "c-ana-0001").expect("Ana is known");
    assert_eq!(ana.info.nickname.as_deref(), Some("Ana"));
}

/// Connects an observer with `query` and an optional cookie; the socket and the cookie the
/// server set for it (its issued id), if any.
async fn connect_with(addr: std::net::SocketAddr, query: &str, cookie: Option<&str>) -> (Ws, Option<String>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/ws/observe{query}").into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    let (ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    let set =
        res.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (ws, set)
}

#[tokio::test]
async fn only_the_client_that_named_a_lane_renames_it_and_the_instructors_lane_is_nobody_elses() {
    let s = TestServer::with_config(|c| c.token = Some("observe-test-token-0123456789".to_owned()));
    let (addr, _task) = s.spawn().await;
    let nickname = |c: &str| s.state.clients().nickname(c);
    let (mut ana, cookie) = connect_with(addr, "?client=c-ana&nick=Ana", None).await;
    let cookie = cookie.expect("an id issued on first contact");
    let ObserverMsg::Hello { .. } = msg(&mut ana).await else { panic!("hello") };
    assert_eq!(nickname("c-ana").as_deref(), Some("Ana"));
    // Mallory sends Ana's lane id (every screen can read it): she cannot rename the lane,
    // neither in the URL nor by message.
    let (mut mallory, _) = connect_with(addr, "?client=c-ana&nick=Mallory", None).await;
    mallory.send(Message::text(r#"{"type":"nickname","nickname":"Ana is out"}"#)).await.unwrap();
    assert_eq!(
        control(&mut mallory).await,
        ObserverMsg::Error { message: "this lane was named by another client".into() }
    );
    assert_eq!(nickname("c-ana").as_deref(), Some("Ana"));
    // Ana, with her id, still can.
    let (mut back, set) = connect_with(addr, "?client=c-ana&nick=Ana%20B", Some(&cookie)).await;
    assert_eq!(set, None);
    back.send(Message::text(r#"{"type":"nickname","nickname":"Ana C"}"#)).await.unwrap();
    let mut named = false;
    while !named {
        let (evs, _) = read_events(&mut back, 1).await;
        named = evs
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Client(i) if i.nickname.as_deref() == Some("Ana C")));
    }
    // The instructor's page takes its lane; nobody else renames it, even one that named it first.
    let (_early, _) = connect_with(addr, "?client=c-prof&nick=Prof%20Fake", None).await;
    let auth = "Bearer observe-test-token-0123456789";
    let status = tokio::task::spawn_blocking(move || {
        common::http_with(
            addr,
            "GET",
            "/api/instructor",
            &[("Authorization", auth), ("X-Wirescope-Client", "c-prof")],
            None,
        )
        .unwrap()
        .0
    })
    .await
    .unwrap();
    assert_eq!(status, 204);
    let (mut fake, _) = connect_with(addr, "?client=c-prof", None).await;
    assert_eq!(nickname("c-prof").as_deref(), Some("Instructor"), "not the name a student gave it first");
    fake.send(Message::text(r#"{"type":"nickname","nickname":"Prof Fake 2"}"#)).await.unwrap();
    assert_eq!(
        control(&mut fake).await,
        ObserverMsg::Error { message: "this lane was named by another client".into() }
    );
}
