//! Helpers shared by the server's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use server::{AppState, Config, app};
use tempfile::TempDir;
use tower::ServiceExt;

pub mod haproxy;
pub mod nats;
pub mod owned;
pub mod pg;
pub mod sessions;

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
        Self::with_config(|_| {})
    }

    /// No app built; `adjust` may change the configuration first.
    pub fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let assets = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::new(assets.path(), data.path());
        adjust(&mut config);
        let state = AppState::new(config).unwrap();
        Self { state, assets, data }
    }

    /// Every event recorded so far, parsed.
    pub fn events(&self) -> Vec<protocol::Event> {
        self.state.log().since(0).entries.iter().map(|e| serde_json::from_str(&e.json).unwrap()).collect()
    }

    /// Waits until `pred` holds for the recorded events (the tap records from other tasks).
    pub async fn wait_events(
        &self,
        what: &str,
        pred: impl Fn(&[protocol::Event]) -> bool,
    ) -> Vec<protocol::Event> {
        for _ in 0..250 {
            let evs = self.events();
            if pred(&evs) {
                return evs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.events())
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
            server::serve::serve(listener, router, shutdown).await.unwrap();
        });
        (addr, task)
    }
}

pub async fn body_text(res: Response<Body>) -> String {
    String::from_utf8(body_bytes(res).await).unwrap()
}

pub async fn body_bytes(res: Response<Body>) -> Vec<u8> {
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

pub async fn body_json(res: Response<Body>) -> serde_json::Value {
    let bytes = body_bytes(res).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// The real `wirescope` binary, started on 127.0.0.1 port 0 over a data directory.
pub struct RealServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl RealServer {
    pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wirescope"))
            .args(["--addr", "127.0.0.1:0", "--assets", "/nonexistent", "--exit-on-stdin-eof", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the wirescope binary starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("first line: {line}"));
        Self { addr: addr.parse().unwrap(), child }
    }

    /// SIGKILL: no chance to flush or shut down.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; answers (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = json.unwrap_or("");
    let ct = if json.is_some() { "Content-Type: application/json\r\n" } else { "" };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(body) } else { body.to_owned() })
}

/// The body of a chunked answer, its chunks joined.
pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// One HTTP/1.1 request with extra headers over a fresh connection; answers (status, head,
/// body), or `None` when the server closed the connection without answering.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<&str>,
) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let body = json.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if json.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    if raw.len() < 12 {
        return None;
    }
    let (h, b) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Some((raw[9..12].parse().unwrap(), h.to_owned(), b.to_owned()))
}

/// Polls `check` (every 20 ms, at most 20 s) until it holds (blocking): state another
/// process takes in in the background, such as another replica of a cluster.
pub fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "not within 20 s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A client WebSocket over plain TCP.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next frame; fails if none comes within 5 s, the stream ended or the socket failed.
pub async fn next_frame(ws: &mut Ws) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("a message within 5 s")
        .expect("open")
        .expect("ok")
}

/// The next text frame, parsed as JSON (other frames are skipped).
pub async fn next_json<T: serde::de::DeserializeOwned>(ws: &mut Ws) -> T {
    loop {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = next_frame(ws).await {
            return serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
        }
    }
}

/// An observer of `addr` from `since`: every event it is sent, until `enough` holds of them
/// (within 60 s; fails if the socket ends first).
pub async fn observe_until(
    addr: SocketAddr,
    since: u64,
    enough: impl Fn(&[protocol::Event]) -> bool,
) -> Vec<protocol::Event> {
    use futures_util::StreamExt;
    let url = format!("ws://{addr}/ws/observe?since={since}");
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !enough(&events) {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let next = next.unwrap_or_else(|_| panic!("not seen within 60 s on {addr}; seen: {events:#?}"));
        let Some(Ok(message)) = next else { panic!("the observer's socket ended; seen: {events:#?}") };
        if let tokio_tungstenite::tungstenite::Message::Text(t) = message
            && let protocol::ObserverMsg::Events { events: more } = serde_json::from_str(&t).unwrap()
        {
            events.extend(more);
        }
    }
    events
}
