//! Helpers shared by the server's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use server::{AppState, Config, app};
use tempfile::TempDir;
use tower::ServiceExt;

/// A server state over temporary directories (removed when dropped).
pub struct TestServer {
    pub state: AppState,
    pub assets: TempDir,
    pub data: TempDir,
}

impl TestServer {
    /// Assets directory with a built-looking app in it.
    pub fn with_app() -> Self {
        let s = Self::without_app();
        std::fs::write(s.assets.path().join("index.html"), "<!doctype html><title>wirescope</title>APP")
            .unwrap();
        std::fs::write(s.assets.path().join("app-123_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(s.assets.path().join("app-123.js"), "export default 1;").unwrap();
        std::fs::write(s.data.path().join("outside.txt"), "SECRET").unwrap();
        s
    }

    /// Empty assets directory: no app built.
    pub fn without_app() -> Self {
        let assets = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let state =
            AppState::new(Config { assets: assets.path().into(), data_dir: data.path().into() }).unwrap();
        Self { state, assets, data }
    }

    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        app(self.state.clone()).oneshot(req).await.unwrap()
    }

    pub async fn get(&self, uri: &str) -> Response<Body> {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    /// Serves on 127.0.0.1, port 0; the server stops when the returned guard is dropped.
    pub async fn spawn(&self) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(self.state.clone());
        let shutdown = self.state.shutdown().clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
                .unwrap();
        });
        (addr, task)
    }
}

pub async fn body_bytes(res: Response<Body>) -> Vec<u8> {
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

pub async fn body_json(res: Response<Body>) -> serde_json::Value {
    let bytes = body_bytes(res).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}
