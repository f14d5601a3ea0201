//! A cluster on one machine, all real: PostgreSQL, NATS with JetStream, two replicas of the
//! `wirescope` binary and HAProxy in front, with the configuration the project writes. One
//! start, shared by every step.

mod common;

use std::collections::BTreeSet;

use common::{RealServer, until};
use protocol::{Event, EventKind, ObserverMsg};

const TOKEN: &str = "cluster-test-token-0123456789";

/// `GET /api/health` through `addr`: the node that answered.
fn node(addr: std::net::SocketAddr) -> String {
    let (status, body) = common::http(addr, "GET", "/api/health", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["node"].as_str().unwrap().to_owned()
}

/// Reads an observer's events, keeping the newest `seq` in `last`, until `enough` holds of what
/// it read or the socket ends (within 30 s).
async fn read_events(ws: &mut common::Ws, last: &mut u64, enough: impl Fn(&[Event]) -> bool) {
    use futures_util::StreamExt;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !enough(&events) {
        let next = tokio::time::timeout_at(deadline, ws.next()).await.expect("within 30 s");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = next else {
            if matches!(next, None | Some(Err(_))) {
                return;
            }
            continue;
        };
        if let ObserverMsg::Events { events: more } = serde_json::from_str(&t).unwrap() {
            *last = more.iter().map(|e| e.seq).fold(*last, u64::max);
            events.extend(more);
        }
    }
}

/// Whether `events` hold a response in lane `client`.
fn answered(events: &[Event], client: &str) -> bool {
    events.iter().any(|e| e.client == client && matches!(e.kind, EventKind::HttpResponse(_)))
}

/// The requests in `events` of lane `client` (node and exchange), in order.
fn requests_of<'a>(events: &'a [Event], client: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.client == client && matches!(e.kind, EventKind::HttpRequest(_))).collect()
}

/// The `ETag` of a response's head.
fn etag(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("no ETag in {head}"))
        .to_owned()
}

/// A replica's note that it could not publish for a while.
fn is_late_note(e: &Event) -> bool {
    matches!(&e.kind, EventKind::Note(n) if n.text.contains("events published late"))
}

/// `GET path` on `addr` in lane `client`: the status.
fn get_as(addr: std::net::SocketAddr, client: &str, path: &str) -> u16 {
    common::http_with(addr, "GET", path, &[("X-Wirescope-Client", client)], None).unwrap().0
}

/// An instructor's call on replica `r`: (status, body).
fn instructor(r: std::net::SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) = common::http_with(r, method, path, &[("Authorization", &auth)], body).unwrap();
    (status, body)
}

fn room(r: std::net::SocketAddr) -> protocol::instructor::Room {
    let (status, body) = instructor(r, "GET", "/api/instructor/room", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `/ws/events` on `r` as `client`, greeted and in the room `across`.
async fn member(r: std::net::SocketAddr, client: &str) -> common::Ws {
    member_with(r, client, None).await.0
}

/// The same, sending `cookie` (an issued id); with the cookie the server set, if it set one.
async fn member_with(
    r: std::net::SocketAddr,
    client: &str,
    cookie: Option<&str>,
) -> (common::Ws, Option<String>) {
    use futures_util::SinkExt;
    use protocol::channel::{ClientMsg, ServerEnvelope, ServerMsg};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{r}/ws/events?client={client}").into_client_request().unwrap();
    if let Some(cookie) = cookie {
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
    }
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let set = response.headers().get("set-cookie").and_then(|v| v.to_str().ok());
    let set = set.and_then(|c| c.split(';').next()).map(str::to_owned);
    for msg in [ClientMsg::Hello { name: client.to_owned() }, ClientMsg::Join { room: "across".to_owned() }] {
        let text = serde_json::to_string(&msg).unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
    }
    loop {
        let env: ServerEnvelope = common::next_json(&mut ws).await;
        if matches!(env.msg, ServerMsg::History { .. }) {
            return (ws, set);
        }
    }
}

/// The next message on `ws` that `pick` takes.
async fn next_of<T>(ws: &mut common::Ws, pick: impl Fn(protocol::channel::ServerMsg) -> Option<T>) -> T {
    loop {
        let env: protocol::channel::ServerEnvelope = common::next_json(ws).await;
        if let Some(t) = pick(env.msg) {
            return t;
        }
    }
}

/// The instructor's room is the cluster's: a fault armed, the hold, "release next", the
/// highlight and a mute set through one replica hold on the other; a kick and a chat line
/// reach across.
fn the_room_is_one(rt: &tokio::runtime::Handle, r1: std::net::SocketAddr, r2: std::net::SocketAddr) {
    use futures_util::SinkExt;
    use protocol::channel::{ClientMsg, ServerMsg};
    // Students are sent to the balancer, not to a replica.
    assert_eq!(room(r1).join_urls, ["http://lecture-hall.test/"]);
    // A fault armed through replica 1 for one use: replica 2 applies it, and then nobody.
    let fault = r#"{"target":{"path":"/transcripts/4"},"fault":{"kind":"status","status":503,"retryAfterS":1},"times":1}"#;
    assert_eq!(instructor(r1, "POST", "/api/instructor/faults", Some(fault)).0, 200);
    until("replica 2 has the fault", || room(r2).faults.len() == 1);
    assert_eq!(common::http(r2, "GET", "/transcripts/4", None).0, 503, "armed on 1, applied by 2");
    until("replica 1 sees the use spent", || room(r1).faults.is_empty());
    assert_eq!(common::http(r1, "GET", "/transcripts/4", None).0, 200, "its one use was spent");

    // Holding switched on through replica 1 holds a request that replica 2 answers; the
    // balancer's health checks are never held; "release next" through 1 lets it go.
    assert_eq!(instructor(r1, "POST", "/api/instructor/hold", Some(r#"{"on":true}"#)).0, 200);
    until("replica 2 holds", || room(r2).hold.on);
    let held = std::thread::spawn(move || common::http(r2, "GET", "/transcripts/2", None).0);
    until("the request held on 2 is on 1's list", || {
        room(r1).hold.held.iter().any(|h| h.path == "/transcripts/2" && h.method == "GET")
    });
    let probe = [("X-Wirescope-Probe", "1")];
    assert_eq!(common::http_with(r2, "GET", "/api/health", &probe, None).unwrap().0, 200, "probes pass");
    assert_eq!(instructor(r1, "POST", "/api/instructor/release", Some(r#"{"count":1}"#)).0, 200);
    assert_eq!(held.join().unwrap(), 200, "released through the other replica");
    assert_eq!(instructor(r2, "POST", "/api/instructor/hold", Some(r#"{"on":false}"#)).0, 200);
    until("replica 1 stops holding", || !room(r1).hold.on);

    // The highlight set through replica 2 is replica 1's too.
    assert_eq!(instructor(r2, "POST", "/api/instructor/highlight", Some(r#"{"client":"c-x"}"#)).0, 204);
    until("replica 1 has the highlight", || room(r1).highlight.as_deref() == Some("c-x"));

    // Members of one room on different replicas talk; a mute through replica 2 silences a
    // member on replica 1; a kick through replica 1 closes a socket on replica 2.
    rt.block_on(async {
        let mut x = member(r1, "c-x").await;
        let mut y = member(r2, "c-y").await;
        let say = |text: &str| {
            let msg = ClientMsg::Chat { room: "across".to_owned(), text: text.to_owned() };
            tokio_tungstenite::tungstenite::Message::text(serde_json::to_string(&msg).unwrap())
        };
        x.send(say("hello from replica 1")).await.unwrap();
        let line = next_of(&mut y, |m| if let ServerMsg::Chat(l) = m { Some(l) } else { None }).await;
        assert_eq!((line.text.as_str(), line.from.client_id.as_str()), ("hello from replica 1", "c-x"));

        assert_eq!(instructor(r2, "PATCH", "/api/instructor/clients/c-x", Some(r#"{"muted":true}"#)).0, 204);
        while !room(r1).muted.contains(&"c-x".to_owned()) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        x.send(say("still here?")).await.unwrap();
        let refused =
            next_of(&mut x, |m| if let ServerMsg::Error { message } = m { Some(message) } else { None });
        assert!(refused.await.contains("muted"));

        // A client with sockets on both replicas has one chat allowance, not one per replica:
        // 3 lines through replica 1 (heard on replica 2: y sees the third), 2 through replica
        // 2, and the next is refused there.
        let (mut z1, cookie) = member_with(r1, "c-z", None).await;
        let cookie = cookie.expect("replica 1 issued an id");
        let (mut z2, _) = member_with(r2, "c-z", Some(&cookie)).await;
        for n in 1..=3 {
            z1.send(say(&format!("z line {n}"))).await.unwrap();
        }
        next_of(&mut y, |m| matches!(&m, ServerMsg::Chat(l) if l.text == "z line 3").then_some(())).await;
        for n in 4..=6 {
            z2.send(say(&format!("z line {n}"))).await.unwrap();
        }
        let refused =
            next_of(&mut z2, |m| if let ServerMsg::Error { message } = m { Some(message) } else { None });
        assert!(refused.await.contains("slow down"), "the sixth line, on the other replica");
        let seen = next_of(&mut y, |m| if let ServerMsg::Chat(l) = m { Some(l.text) } else { None });
        assert_eq!(seen.await, "z line 4");

        assert_eq!(instructor(r1, "POST", "/api/instructor/clients/c-y/kick", None).0, 204);
        let close = loop {
            if let tokio_tungstenite::tungstenite::Message::Close(c) = common::next_frame(&mut y).await {
                break c;
            }
        };
        assert_eq!(close.map(|c| u16::from(c.code)), Some(4000), "kicked through the other replica");
    });
    assert_eq!(instructor(r1, "PATCH", "/api/instructor/clients/c-x", Some(r#"{"muted":false}"#)).0, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_haproxy_share_the_work_and_survive_a_sigkill() {
    let url = common::pg::fresh_database().await;
    let mut nats = common::nats::Nats::start().await;
    let nats_url = nats.url.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let args = |node: &str| {
            vec![
                "--postgres".to_owned(),
                url.clone(),
                "--nats".to_owned(),
                nats_url.clone(),
                "--node".to_owned(),
                node.to_owned(),
                "--instructor-token".to_owned(),
                TOKEN.to_owned(),
                "--client-address-header".to_owned(),
                "X-Forwarded-For".to_owned(),
                "--public-url".to_owned(),
                "http://lecture-hall.test".to_owned(),
            ]
        };
        let start = |i: usize| {
            let a = args(&format!("replica-{}", i + 1));
            RealServer::start(dirs[i].path(), &a.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let (r1, r2) = (start(0), start(1));
        let lb = common::haproxy::Haproxy::start(&[r1.addr, r2.addr]);

        // Round robin: both replicas answer through the one address.
        let seen: BTreeSet<String> = (0..6).map(|_| node(lb.addr)).collect();
        assert_eq!(seen, BTreeSet::from(["replica-1".to_owned(), "replica-2".to_owned()]));

        // A write through the balancer is read back through it, whichever replica answers,
        // and the change reaches both replicas' feeds.
        let (status, id) = common::http(lb.addr, "POST", "/transcripts", Some(r#"{"studentName":"behind"}"#));
        assert_eq!((status, id.as_str()), (200, "5"));
        for _ in 0..4 {
            assert_eq!(common::http(lb.addr, "GET", "/transcripts/5", None).0, 200);
        }
        for r in [r1.addr, r2.addr] {
            let (_, body) = common::http(r, "GET", "/api/changes?since=0&wait=20", None);
            assert!(body.contains(r#""studentID":5"#), "{body}");
        }

        // Conditional reads through the balancer: every replica tags the same answer alike, so
        // the tag one gave is a 304 from either; after a write, a 200 with the new one. The
        // diagram shows both answers in the reader's lane.
        let reader = [("X-Wirescope-Client", "c-cache")];
        let (status, head, _) = common::http_with(lb.addr, "GET", "/transcripts/5", &reader, None).unwrap();
        assert_eq!(status, 200);
        let tag = etag(&head);
        let held = [("X-Wirescope-Client", "c-cache"), ("If-None-Match", tag.as_str())];
        for _ in 0..4 {
            let (status, head, body) =
                common::http_with(lb.addr, "GET", "/transcripts/5", &held, None).unwrap();
            assert_eq!((status, body.as_str(), etag(&head)), (304, "", tag.clone()));
        }
        assert_eq!(common::http(lb.addr, "POST", "/transcripts/5/DemoClass", Some("77")).0, 204);
        let (status, head, body) = common::http_with(lb.addr, "GET", "/transcripts/5", &held, None).unwrap();
        assert_eq!(status, 200, "{body}");
        assert_ne!(etag(&head), tag);
        let answers = |e: &[Event]| -> Vec<(u16, String)> {
            e.iter()
                .filter(|e| e.client == "c-cache")
                .filter_map(|e| match &e.kind {
                    EventKind::HttpResponse(r) => Some((r.status, e.node.clone())),
                    _ => None,
                })
                .collect()
        };
        let drawn = answers(&rt.block_on(common::observe_until(r1.addr, 0, |e| answers(e).len() == 6)));
        assert_eq!(drawn.iter().map(|a| a.0).collect::<Vec<_>>(), [200, 304, 304, 304, 304, 200]);
        let nodes: BTreeSet<&str> = drawn.iter().filter(|a| a.0 == 304).map(|a| a.1.as_str()).collect();
        assert_eq!(nodes.len(), 2, "304s from both replicas: {nodes:?}");

        // The inside view: a read through the balancer holds the request, the hand-off (balancer
        // to the replica it chose), the replica's PostgreSQL statement and the answer, in that
        // order, each step timed and on the replica that served it.
        let inside = [("X-Wirescope-Client", "c-inside")];
        assert_eq!(common::http_with(lb.addr, "GET", "/transcripts/5", &inside, None).unwrap().0, 200);
        let steps =
            |e: &[Event]| -> Vec<Event> { e.iter().filter(|e| e.client == "c-inside").cloned().collect() };
        let drawn = steps(&rt.block_on(common::observe_until(r1.addr, 0, |e| answered(e, "c-inside"))));
        let what: Vec<String> = drawn
            .iter()
            .filter(|e| !matches!(e.kind, EventKind::Client(_)))
            .map(|e| match &e.kind {
                EventKind::Hop(h) => {
                    let (from, to) = h.step.lanes(&e.node);
                    format!("{from} → {to}: {}", h.step.describe())
                }
                EventKind::HttpRequest(r) => format!("request {}", r.path),
                EventKind::HttpResponse(r) => format!("answer {}", r.status),
                other => format!("{other:?}"),
            })
            .collect();
        let served = drawn.iter().find(|e| matches!(e.kind, EventKind::HttpRequest(_))).unwrap().node.clone();
        assert!(served.starts_with("replica-"), "{served}");
        assert_eq!(
            what,
            [
                "request /transcripts/5".to_owned(),
                format!("balancer → {served}: hand-off to {served}"),
                format!("{served} → postgresql: SELECT students, grades · 1 row"),
                "answer 200".to_owned(),
            ]
        );
        let hops: Vec<(i64, u64)> = drawn
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Hop(h) => Some((e.at.server_us.unwrap(), h.took_us)),
                _ => None,
            })
            .collect();
        let request = drawn.iter().find(|e| matches!(e.kind, EventKind::HttpRequest(_))).unwrap();
        let request_at = request.at.server_us.unwrap();
        assert!(hops[0].0 <= request_at, "hand-off before the request: {hops:?}");
        assert_eq!(hops[0].0 + hops[0].1 as i64, request_at, "and lasting until the replica had it");
        assert!(hops[1].0 >= request_at && hops[1].1 > 0, "the query after it: {hops:?}");

        // A POST retried with the same Idempotency-Key on the other replica (the balancer may
        // send a retry anywhere) is answered the same, not run twice.
        let key = [("Idempotency-Key", "retry-across")];
        let body = Some(r#"{"studentName":"once"}"#);
        let first = common::http_with(r1.addr, "POST", "/transcripts", &key, body).unwrap();
        let retry = common::http_with(r2.addr, "POST", "/transcripts", &key, body).unwrap();
        assert_eq!((first.0, retry.0, &retry.2), (200, 200, &first.2), "the same answer");
        assert!(retry.1.to_ascii_lowercase().contains("idempotent-replayed: true"), "{}", retry.1);
        let (_, list) = common::http(lb.addr, "GET", "/transcripts", None);
        assert_eq!(list.matches(r#""studentName":"once""#).count(), 1, "one student, not two");

        // The same instructor token on every replica.
        for r in [r1.addr, r2.addr] {
            let auth = format!("Bearer {TOKEN}");
            let status =
                common::http_with(r, "GET", "/api/instructor", &[("Authorization", &auth)], None).unwrap().0;
            assert_eq!(status, 204);
        }

        the_room_is_one(&rt, r1.addr, r2.addr);

        // Recorded sessions are the cluster's: spans of the one stream, listed on the board.
        common::sessions::contract(r1.addr, &[r2.addr], TOKEN, "cluster");

        // One event log for the cluster: observers on either replica see both replicas'
        // traffic, numbered by the stream in one order, each exchange id its replica's own.
        assert_eq!(get_as(r1.addr, "c-one", "/transcripts/1"), 200);
        assert_eq!(get_as(r2.addr, "c-two", "/transcripts/2"), 200);
        let both = |e: &[Event]| answered(e, "c-one") && answered(e, "c-two");
        let on = [r1.addr, r2.addr].map(|r| rt.block_on(common::observe_until(r, 0, both)));
        let mine = |events: &[Event]| -> Vec<(u64, String, u64)> {
            events
                .iter()
                .filter(|e| e.client == "c-one" || e.client == "c-two")
                .map(|e| (e.seq, e.node.clone(), e.exchange))
                .collect()
        };
        assert_eq!(mine(&on[0]), mine(&on[1]), "the same events in the same order on both");
        let seqs: Vec<u64> = on[0].iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq strictly increasing: {seqs:?}");
        let (one, two) = (requests_of(&on[1], "c-one")[0], requests_of(&on[1], "c-two")[0]);
        assert_eq!((one.node.as_str(), two.node.as_str()), ("replica-1", "replica-2"));
        assert_ne!(one.exchange >> 32, two.exchange >> 32, "exchange ids apart per replica");
        let last = *seqs.last().unwrap();

        // NATS stopped: REST keeps answering; what replica 1 captured meanwhile reaches the
        // observers on replica 2 when NATS is back, with a note of the delay.
        nats.stop();
        for i in 0..3 {
            assert_eq!(get_as(r1.addr, "c-late", "/transcripts/3"), 200, "request {i} while NATS is down");
        }
        // Started again once replica 1 has found it out of reach (its health says so).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, body) = common::http(r1.addr, "GET", "/api/health", None);
            let health: protocol::Health = serde_json::from_str(&body).unwrap();
            let stream = health.event_stream.expect("a replica reports its event stream");
            if !stream.reachable {
                assert!(stream.waiting >= 6, "the requests' events wait: {stream:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "replica 1 never found NATS gone: {stream:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        nats.start_again();
        let late = |e: &[Event]| {
            requests_of(e, "c-late").len() == 3 && e.iter().any(|e| e.node == "replica-1" && is_late_note(e))
        };
        let after = rt.block_on(common::observe_until(r2.addr, last, late));
        // Each replica that could not publish says so (replica 2's presence waited too).
        let note = after.iter().find(|e| e.node == "replica-1" && is_late_note(e)).unwrap();
        assert!(format!("{:?}", note.kind).contains(", 0 dropped"), "{note:?}");
        assert!(after.iter().all(|e| e.seq > last), "resumed after {last}, nothing again");

        // An observer and an app's /ws/events on replica 1, caught up with a request made now.
        let (_, body) = common::http(lb.addr, "GET", "/api/changes?since=0", None);
        let changes: serde_json::Value = serde_json::from_str(&body).unwrap();
        let last_change = changes["latest"].as_u64().unwrap();
        let (mut observer, mut app) = rt.block_on(async {
            let observer = tokio_tungstenite::connect_async(format!("ws://{}/ws/observe", r1.addr));
            let app = tokio_tungstenite::connect_async(format!("ws://{}/ws/events?client=c-app", r1.addr));
            (observer.await.unwrap().0, app.await.unwrap().0)
        });
        assert_eq!(get_as(r1.addr, "c-before", "/transcripts/1"), 200);
        let mut last = 0;
        rt.block_on(read_events(&mut observer, &mut last, |e| answered(e, "c-before")));

        // Replica 1 is killed: no request through the balancer fails, reads or writes.
        r1.kill();
        for i in 0..20 {
            assert_eq!(common::http(lb.addr, "GET", "/transcripts/1", None).0, 200, "read {i}");
        }
        let (status, id) = common::http(lb.addr, "POST", "/transcripts", Some(r#"{"studentName":"after"}"#));
        assert_eq!((status, id.as_str()), (200, "7"));
        assert_eq!(node(lb.addr), "replica-2");

        // Both sockets on replica 1 ended (the observer may have had more events first); they
        // reconnect through the balancer and resume where they were: the observer with no gap
        // in `seq`, the app with the change it missed, once.
        rt.block_on(read_events(&mut observer, &mut last, |_| false));
        rt.block_on(async {
            use futures_util::StreamExt;
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(std::time::Duration::from_secs(10), app.next()).await
            {}
        });
        assert_eq!(get_as(lb.addr, "c-after", "/transcripts/7"), 200);
        let resumed = rt.block_on(common::observe_until(lb.addr, last, |e| answered(e, "c-after")));
        let seqs: Vec<u64> = resumed.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (last + 1..last + 1 + seqs.len() as u64).collect::<Vec<_>>(), "no gap after {last}");
        let change = rt.block_on(async {
            let url = format!("ws://{}/ws/events?client=c-app&since={last_change}", lb.addr);
            let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
            loop {
                if let protocol::channel::ServerMsg::TranscriptChanged(c) = common::next_json(&mut ws).await {
                    return c;
                }
            }
        });
        assert_eq!((change.seq, change.student_id), (last_change + 1, 7), "the missed change, first");
        drop(lb);
        drop(nats);
    })
    .await
    .unwrap();
}
