//! Which web pages may talk to the server from a browser. A page on another origin (any site
//! a student has open) may not open a WebSocket here or change anything outside the public
//! transcript API: 403 with a JSON body, before any upgrade. Programs that send no `Origin`
//! (curl, the course's clients, tests) are not browsers and pass; the transcript API keeps
//! its open CORS, as the activity needs.
//!
//! Allowed: the server's own origin (the `Host` the request came to, when that is an address
//! or `localhost`), the `trunk serve` development origin, and each `--allow-origin`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::paths::{is_api_path, under};

/// Where `trunk serve` serves the app in development (Trunk.toml), proxying to this server.
pub const DEV_ORIGINS: [&str; 2] = ["http://127.0.0.1:8080", "http://localhost:8080"];

/// The open API of the course activity: any origin may call it (CORS).
const OPEN_PREFIXES: [&str; 2] = ["/transcripts", "/studentids"];

/// The origins allowed besides the server's own.
#[derive(Debug, Clone)]
pub struct Origins(Arc<[String]>);

impl Origins {
    /// The development origins and `extra` (as given to `--allow-origin`, without a trailing `/`).
    pub fn new(extra: &[String]) -> Self {
        let all: Vec<String> = DEV_ORIGINS
            .iter()
            .map(|o| (*o).to_owned())
            .chain(extra.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()))
            .collect();
        Self(all.into())
    }

    /// Whether a browser page at `origin` may use a request that came to `host`. The page is
    /// the server's own when its origin is the `Host` the request came to, and that host is
    /// an address or `localhost`: a name could be made to point here by its owner (DNS
    /// rebinding), so a server reached by name lists its name with `--allow-origin`.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let own = host.is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            let name = h.rsplit_once(':').map_or(h.as_str(), |(n, _)| n).trim_matches(['[', ']']);
            let literal = name == "localhost" || name.parse::<std::net::IpAddr>().is_ok();
            literal && (origin == format!("http://{h}") || origin == format!("https://{h}"))
        });
        own || self.0.contains(&origin)
    }
}

/// Whether a request is one a foreign page must not make: a WebSocket upgrade, or a
/// state-changing method under the API outside the open transcript API.
fn guarded(req: &Request) -> bool {
    let path = req.uri().path();
    if req.headers().contains_key(header::UPGRADE) {
        return true;
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    changes && is_api_path(path) && !OPEN_PREFIXES.iter().any(|p| under(path, p))
}

/// The middleware: 403 for a guarded request from a browser page on a foreign origin.
pub async fn middleware(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    if guarded(&req)
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        let allowed = origin.to_str().is_ok_and(|o| origins.allows(o, host));
        if !allowed {
            let origin = String::from_utf8_lossy(origin.as_bytes()).chars().take(200).collect::<String>();
            return ApiError::ForeignOrigin(origin).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_dev_and_listed_origins_are_allowed_others_not() {
        let o = Origins::new(&["https://Course.example.edu/".to_owned()]);
        assert!(o.allows("http://192.168.1.20:8081", Some("192.168.1.20:8081")));
        assert!(o.allows("http://127.0.0.1:8080", Some("127.0.0.1:8081")), "trunk serve");
        assert!(o.allows("https://course.example.edu", Some("10.0.0.1:8081")));
        assert!(!o.allows("http://evil.example", Some("127.0.0.1:8081")));
        assert!(!o.allows("http://127.0.0.1:8081.evil.example", Some("127.0.0.1:8081")));
        assert!(!o.allows("null", Some("127.0.0.1:8081")));
        assert!(o.allows("http://[::1]:8081", Some("[::1]:8081")));
        assert!(o.allows("http://localhost:8081", Some("localhost:8081")));
        // A name its owner points here (DNS rebinding) is no origin of the server's own.
        assert!(!o.allows("http://evil.example:8081", Some("evil.example:8081")));
    }

    #[test]
    fn upgrades_and_writes_outside_the_transcript_api_are_guarded() {
        let req = |m: Method, p: &str, upgrade: bool| {
            let mut b = Request::builder().method(m).uri(p);
            if upgrade {
                b = b.header(header::UPGRADE, "websocket");
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        assert!(guarded(&req(Method::GET, "/ws/events", true)));
        assert!(guarded(&req(Method::POST, "/api/lab", false)));
        assert!(guarded(&req(Method::DELETE, "/api/instructor/faults", false)));
        assert!(!guarded(&req(Method::GET, "/api/lab", false)));
        assert!(!guarded(&req(Method::POST, "/transcripts", false)));
        assert!(!guarded(&req(Method::POST, "/transcripts/1/CS101", false)));
        assert!(!guarded(&req(Method::POST, "/", false)), "not the API: the app's files answer 405");
    }
}
