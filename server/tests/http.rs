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
