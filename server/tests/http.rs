//! The HTTP surface through the router (`oneshot`): health, errors, the app's files.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestServer, body_bytes, body_json};

#[tokio::test]
async fn health_reports_ok_version_and_clock() {
    let s = TestServer::without_app();
    let before = server::clock::now_us();
    let res = s.get("/api/health").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let health: protocol::Health = serde_json::from_value(body_json(res).await).unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.protocol, protocol::PROTOCOL_VERSION);
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    assert!(health.server_time_us >= before && health.server_time_us <= server::clock::now_us());
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let s = TestServer::without_app();
    let res = s.send(Request::post("/api/health").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.headers()[header::ALLOW].to_str().unwrap().contains("GET"));
    let body = body_json(res).await;
    assert_eq!(body["message"], "Method Not Allowed");

    // The app's pages and files are read-only too, and say which methods they take.
    for path in ["/", "/lab", "/index.html"] {
        let res = s.send(Request::delete(path).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(res.headers()[header::ALLOW], "GET,HEAD", "{path}");
        assert_eq!(body_json(res).await["message"], "Method Not Allowed", "{path}");
    }
}

#[tokio::test]
async fn unknown_api_paths_are_json_404s_never_the_app() {
    let s = TestServer::with_app();
    for path in ["/api/nope", "/api", "/ws/nope", "/transcripts/1/x/y", "/studentids/z"] {
        let res = s.get(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body = body_json(res).await;
        assert_eq!(body["message"], "Not Found", "{path}");
        assert!(body["details"].as_str().unwrap().contains(path), "{path}: {body}");
    }
}

#[tokio::test]
async fn page_routes_fall_back_to_the_app() {
    let s = TestServer::with_app();
    for path in ["/", "/docs", "/lab/anything", "/apis"] {
        let res = s.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(String::from_utf8(body_bytes(res).await).unwrap().contains("APP"), "{path}");
    }
}

#[tokio::test]
async fn files_are_served_with_their_types_and_missing_files_are_404() {
    let s = TestServer::with_app();
    let res = s.get("/app-123_bg.wasm").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/wasm");
    assert_eq!(body_bytes(res).await, b"\0asm\x01\0\0\0");
    let res = s.get("/app-123.js").await;
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().contains("javascript"));

    let res = s.get("/missing.js").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(res).await["message"], "Not Found");
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let s = TestServer::with_app();
    // The data directory sits next to the assets directory in the temp dir.
    let data = s.data.path().file_name().unwrap().to_str().unwrap().to_owned();
    for path in [
        format!("/../{data}/outside.txt"),
        format!("/%2e%2e/{data}/outside.txt"),
        format!("/x/..%2f..%2f{data}/outside.txt"),
        "/..%5c..%5cetc%5cpasswd".to_owned(),
    ] {
        let res = s.get(&path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = body_bytes(res).await;
        assert!(!String::from_utf8_lossy(&body).contains("SECRET"), "{path}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["message"], "Invalid parameters");
    }
}

#[tokio::test]
async fn without_a_built_app_the_page_says_how_to_build_it_and_the_api_works() {
    let s = TestServer::without_app();
    let res = s.get("/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = String::from_utf8(body_bytes(res).await).unwrap();
    assert!(page.contains("scripts/build"), "{page}");
    assert_eq!(s.get("/api/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn data_dir_is_created_and_may_hold_other_files() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested/data");
    let state = server::AppState::new(server::Config::new(parent.path().join("dist"), &dir));
    assert!(state.is_ok() && dir.is_dir());
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    assert!(server::AppState::new(server::Config::new(parent.path().join("dist"), &dir)).is_ok());
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
}

#[tokio::test]
async fn a_page_on_another_origin_may_not_open_a_websocket_or_change_anything() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = TestServer::without_app();
    let (addr, _t) = s.spawn().await;
    let with_origin = |origin: &str| {
        let mut req = format!("ws://{addr}/ws/events").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };
    // A foreign page: 403 with a JSON body, before any upgrade.
    match tokio_tungstenite::connect_async(with_origin("http://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            let body: serde_json::Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert!(
                body["details"].as_str().unwrap().contains("--allow-origin http://evil.example"),
                "{body}"
            );
        }
        other => panic!("a foreign origin was let in: {other:?}"),
    }
    // The server's own page, and programs that send no Origin, are let in.
    tokio_tungstenite::connect_async(with_origin(&format!("http://{addr}"))).await.expect("own origin");
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws/events"))
        .await
        .expect("no origin: not a browser");
    // A change outside the transcript API is refused; the transcript API stays open to all.
    let post = |uri: &str, origin: &str| {
        Request::post(uri)
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::HOST, "127.0.0.1:8081")
            .body(Body::from(r#"{"studentName":"Eve"}"#))
            .unwrap()
    };
    let refused = s.send(post("/api/instructor/session", "http://evil.example")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(body_json(refused).await["details"].as_str().unwrap().contains("may not use this server"));
    assert_eq!(s.send(post("/transcripts", "http://evil.example")).await.status(), StatusCode::OK);
    let own = s.send(post("/api/instructor/session", "http://127.0.0.1:8081")).await;
    assert_eq!(
        own.status(),
        StatusCode::FORBIDDEN,
        "own origin passes the origin check; the token is still needed"
    );
    assert!(body_json(own).await["details"].as_str().unwrap().contains("instructor's token"));
    let listed = TestServer::with_config(|c| c.allowed_origins = vec!["https://course.example.edu/".into()]);
    let res = listed.send(post("/api/lab", "https://course.example.edu")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        body_json(res).await["details"].as_str().unwrap().contains("instructor's token"),
        "an allowed origin passes"
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_and_nobody_else_waits() {
    use std::io::{Read, Write};
    let s = TestServer::with_config(|c| c.body_grace = std::time::Duration::from_secs(1));
    let (addr, _t) = s.spawn().await;
    let slow = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let head = "POST /transcripts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{";
        c.write_all(head.as_bytes()).unwrap();
        // A byte every 50 ms, well past the grace: never idle, only slow (20 B/s, not 1 KiB/s).
        let started = std::time::Instant::now();
        let mut sent = 1;
        c.set_nonblocking(true).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if sent < 399 && c.write_all(b" ").is_ok() {
                        sent += 1;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(_) => break,
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "never cut");
        }
        (String::from_utf8_lossy(&answer).into_owned(), sent)
    });
    // While it trickles, others are answered.
    let (status, _) =
        tokio::task::spawn_blocking(move || common::http(addr, "GET", "/transcripts/1", None)).await.unwrap();
    assert_eq!(status, 200);
    let (answer, sent) = slow.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(sent > 10, "it was still sending when it was cut ({sent} bytes)");
    assert!(answer.contains("came too slowly"), "{answer}");
}

#[tokio::test]
async fn the_apps_files_are_sent_precompressed_with_their_cache_headers() {
    use server::compress::{Encoding, compress};
    let s = TestServer::without_app();
    let dir = s.assets.path();
    let wasm: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let js = "export default function init() { return 1; }\n".repeat(200).into_bytes();
    let html = "<!doctype html><title>wirescope</title><body></body>\n".repeat(40).into_bytes();
    let files = [
        ("app-0123456789abcdef_bg.wasm", &wasm, "application/wasm"),
        ("app-0123456789abcdef.js", &js, "text/javascript"),
        ("index.html", &html, "text/html"),
    ];
    for (name, bytes, _) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
        std::fs::write(dir.join(format!("{name}.br")), compress(bytes, Encoding::Brotli).unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.gz")), compress(bytes, Encoding::Gzip).unwrap()).unwrap();
    }
    for (name, original, kind) in files {
        for (accept, sent) in [("gzip, deflate, br", Some("br")), ("gzip", Some("gzip")), ("identity", None)]
        {
            let path = if name == "index.html" { "/live".to_owned() } else { format!("/{name}") };
            let req =
                Request::get(&path).header(header::ACCEPT_ENCODING, accept).body(Body::empty()).unwrap();
            let res = s.send(req).await;
            assert_eq!(res.status(), StatusCode::OK, "{path} {accept}");
            let h = res.headers().clone();
            assert_eq!(h.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()), sent, "{path} {accept}");
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}: {h:?}");
            assert!(
                h[header::VARY].to_str().unwrap().to_ascii_lowercase().contains("accept-encoding"),
                "{path}"
            );
            let cache = h[header::CACHE_CONTROL].to_str().unwrap();
            if name == "index.html" {
                assert_eq!(cache, "no-cache", "the page is revalidated every time");
            } else {
                assert_eq!(cache, "public, max-age=31536000, immutable", "{path}");
            }
            let body = body_bytes(res).await;
            let decoded = match sent {
                Some("br") => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut brotli::Decompressor::new(&body[..], 4096), &mut out)
                        .unwrap();
                    assert!(body.len() < original.len(), "{path}: sent smaller than it is");
                    out
                }
                Some("gzip") => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
                        .unwrap();
                    out
                }
                _ => body,
            };
            assert_eq!(&decoded, original, "{path} {accept}: decodes to the original");
        }
    }
}

#[tokio::test]
async fn large_json_answers_are_compressed_and_the_capture_notes_it() {
    let s = TestServer::without_app();
    forty_students(&s).await;
    let plain = body_bytes(s.get("/transcripts").await).await;
    assert!(plain.len() as u64 > server::compress::THRESHOLD, "{}", plain.len());
    let req = Request::get("/transcripts").header(header::ACCEPT_ENCODING, "br").body(Body::empty()).unwrap();
    let res = s.send(req).await;
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "br");
    assert!(res.headers().get_all(header::VARY).iter().any(|v| v == "accept-encoding"));
    let packed = body_bytes(res).await;
    assert!(packed.len() * 3 < plain.len(), "{} of {}", packed.len(), plain.len());
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(&packed[..], 4096), &mut out).unwrap();
    assert_eq!(out, plain);
    // Small answers go as they are.
    let req = Request::get("/api/health").header(header::ACCEPT_ENCODING, "br").body(Body::empty()).unwrap();
    assert!(s.send(req).await.headers().get(header::CONTENT_ENCODING).is_none());
    // The diagram shows the body the handler made, and notes the encoding sent.
    let events = s
        .wait_events("the 43 answers", |events| {
            events.iter().filter(|e| matches!(e.kind, protocol::EventKind::HttpResponse(_))).count() >= 43
        })
        .await;
    let noted: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            protocol::EventKind::HttpResponse(r) if r.status == 200 => Some(r),
            _ => None,
        })
        .filter(|r| r.body.as_ref().is_some_and(|b| b.size == plain.len() as u64))
        .map(|r| {
            let named = |n: &str| r.headers.iter().find(|h| h.name == n).map(|h| h.value.clone());
            let varies = r.headers.iter().any(|h| h.name == "vary" && h.value == "accept-encoding");
            (named("content-encoding"), named("content-length").is_some(), varies)
        })
        .collect();
    // The plain read, with its length; then the compressed one, whose length on the wire is
    // not the body's (the preview keeps the body's size), with the encoding and Vary sent.
    assert_eq!(noted, [(None, true, true), (Some("br".to_owned()), false, true)]);
}

#[tokio::test]
async fn a_repeated_read_is_answered_304_until_a_write_changes_it_and_the_diagram_shows_both() {
    let s = TestServer::without_app();
    let post = |body: &'static str, path: &str| {
        Request::post(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap()
    };
    let created = s.send(post(r#"{"studentName":"ada"}"#, "/transcripts")).await;
    assert_eq!(created.status(), StatusCode::OK);
    let one = format!("/transcripts/{}", body_json(created).await);
    let one = one.as_str();
    let grade = format!("{one}/DemoClass");
    let read = |path: &str, held: Option<&str>| {
        let mut req = Request::get(path).header(header::ORIGIN, "http://students.example");
        if let Some(tag) = held {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        req.body(Body::empty()).unwrap()
    };
    let first = s.send(read(one, None)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(first.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    // The same answer for every origin (a cache keeps one); by encoding it may differ.
    assert_eq!(first.headers()[header::VARY], "accept-encoding");
    assert_eq!(first.headers().get_all(header::VARY).iter().count(), 1);
    assert_eq!(first.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS], "etag");
    let tag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        tag.starts_with("W/\"") && tag.ends_with('"'),
        "a weak tag: it names the answer, not the bytes: {tag}"
    );

    let again = s.send(read(one, Some(&tag))).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // What the 200 would have said about caching, and no length (hyper sends none on a 304).
    assert_eq!(again.headers()[header::ETAG], tag.as_str());
    assert_eq!(again.headers()[header::VARY], "accept-encoding");
    assert_eq!(again.headers()[header::CACHE_CONTROL], "no-cache");
    assert!(body_bytes(again).await.is_empty());
    // Another read's tag, or the strong form of this one, is judged like the RFC says.
    assert_eq!(s.send(read(one, Some("\"other\""))).await.status(), StatusCode::OK);
    assert_eq!(s.send(read(one, Some(&tag[2..]))).await.status(), StatusCode::NOT_MODIFIED);
    // Every read is tagged: the list, a grade, the ids by name.
    for path in ["/transcripts", "/studentids?name=ada"] {
        let tag = s.send(read(path, None)).await.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(s.send(read(path, Some(&tag))).await.status(), StatusCode::NOT_MODIFIED, "{path}");
    }

    // A write changes the transcript: the tag held no longer matches, a 200 brings the new one.
    assert_eq!(s.send(post("91", &grade)).await.status(), StatusCode::NO_CONTENT);
    let after = s.send(read(one, Some(&tag))).await;
    assert_eq!(after.status(), StatusCode::OK);
    let new_tag = after.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    assert_eq!(body_json(after).await["grades"][0]["grade"], 91);
    let grade_tag = s.send(read(&grade, None)).await.headers()[header::ETAG].clone();
    let grade_again = s.send(read(&grade, Some(grade_tag.to_str().unwrap()))).await;
    assert_eq!(grade_again.status(), StatusCode::NOT_MODIFIED);

    // The diagram: the repeated read answered 304, then the read after the write answered 200,
    // each with the tag it carried.
    let events = s
        .wait_events("the grade's 304", |events| {
            events.iter().any(|e| {
                matches!(&e.kind, protocol::EventKind::HttpResponse(r)
                    if r.status == 304 && r.headers.iter().any(|h| h.name == "etag" && h.value == grade_tag))
            })
        })
        .await;
    let reads: Vec<(u16, String)> = answers(&events)
        .into_iter()
        .filter(|(path, _)| path == one)
        .map(|(_, r)| {
            let etag = r.headers.iter().find(|h| h.name == "etag").map(|h| h.value.clone());
            (r.status, etag.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        reads,
        [(200, tag.clone()), (304, tag.clone()), (200, tag.clone()), (304, tag.clone()), (200, new_tag)]
    );
}

#[tokio::test]
async fn a_compressed_read_carries_the_same_tag_and_revalidates_with_what_the_200_said() {
    let s = TestServer::without_app();
    forty_students(&s).await;
    let plain = s.get("/transcripts").await.headers()[header::ETAG].to_str().unwrap().to_owned();
    let br = |held: Option<&str>| {
        let mut req = Request::get("/transcripts").header(header::ACCEPT_ENCODING, "br");
        if let Some(tag) = held {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        req.body(Body::empty()).unwrap()
    };
    let res = s.send(br(None)).await;
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(res.headers()[header::ETAG], plain.as_str(), "other bytes, the same (weak) tag");
    assert_eq!(res.headers().get_all(header::VARY).iter().count(), 1, "Vary said once");
    let again = s.send(br(Some(&plain))).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], plain.as_str());
    assert_eq!(again.headers()[header::VARY], "accept-encoding");
    // The diagram notes the tag that was sent, beside the encoding.
    let events = s
        .wait_events("the 304", |events| {
            events.iter().any(|e| matches!(&e.kind, protocol::EventKind::HttpResponse(r) if r.status == 304))
        })
        .await;
    let sent: Vec<String> = answers(&events)
        .into_iter()
        .filter(|(path, r)| path == "/transcripts" && r.status == 200)
        .filter_map(|(_, r)| r.headers.iter().find(|h| h.name == "etag").map(|h| h.value.clone()))
        .collect();
    assert_eq!(sent, [plain.clone(), plain]);
    let not_modified = answers(&events).into_iter().find(|(_, r)| r.status == 304).unwrap().1;
    assert!(!not_modified.headers.iter().any(|h| h.name == "content-length"), "none was sent");
}

/// Each answer of the diagram with the path its request asked for.
fn answers(events: &[protocol::Event]) -> Vec<(String, &protocol::HttpResponse)> {
    let paths: std::collections::HashMap<u64, String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            protocol::EventKind::HttpRequest(r) => Some((e.exchange, r.path.clone())),
            _ => None,
        })
        .collect();
    events
        .iter()
        .filter_map(|e| match &e.kind {
            protocol::EventKind::HttpResponse(r) => Some((paths.get(&e.exchange)?.clone(), r)),
            _ => None,
        })
        .collect()
}

/// Enough transcripts that the list is past the compression threshold.
async fn forty_students(s: &TestServer) {
    for i in 0..40 {
        let body = format!(r#"{{"studentName":"Student number {i} with a long name"}}"#);
        let req = Request::post("/transcripts")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        assert_eq!(s.send(req).await.status(), StatusCode::OK);
    }
}
