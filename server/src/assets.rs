//! The app's static files, with a single-page-app fallback for page routes.
//!
//! - A path under an API prefix (`/api`, `/ws`, `/transcripts`, `/studentids`) that no route
//!   matched is a JSON 404, never the app.
//! - A path whose last segment has a file extension is a file: served if it exists, else 404.
//! - Any other path is a page route of the app: `index.html`.
//! - `..` (also percent-encoded), back-slashes and NUL bytes in a path are refused with 400.
//! - Without a built app, page routes answer 503 with a short page that says how to build it.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;
use crate::paths::is_api_path;

/// Why a request path cannot name a file below the assets directory, if it cannot.
fn traversal(path: &str) -> Option<&'static str> {
    for raw in path.split('/') {
        let Ok(segment) = percent_decode_str(raw).decode_utf8() else {
            return Some("the path is not valid UTF-8");
        };
        if segment == ".." || segment == "." {
            return Some("the path leaves the app's directory");
        }
        if segment.contains(['/', '\\', '\0']) {
            return Some("the path holds an encoded separator or NUL byte");
        }
    }
    None
}

/// The last segment contains a dot: the path names a file, not a page.
fn has_extension(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|last| last.contains('.'))
}

/// Where the trunk-built app is (`index.html` and its hashed assets).
#[derive(Debug, Clone)]
pub struct Dir(pub Arc<Path>);

/// The app's files, as the router's fallback for every path no route matched.
pub fn service(dir: Dir) -> Router {
    Router::new().fallback(serve).with_state(dir)
}

async fn serve(State(Dir(dir)): State<Dir>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if is_api_path(&path) {
        return ApiError::NotFound(format!("no such endpoint: {} {path}", req.method())).into_response();
    }
    if let Some(why) = traversal(&path) {
        return ApiError::BadRequest(format!("refused path {path}: {why}")).into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = ApiError::MethodNotAllowed.into_response();
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        return res;
    }
    let dir = &*dir;
    let index = dir.join("index.html");
    if has_extension(&path) {
        let res = ServeDir::new(dir).precompressed_br().precompressed_gzip().oneshot(req).await;
        return match res {
            Ok(res) if res.status() == StatusCode::NOT_FOUND => {
                ApiError::NotFound(format!("no such file: {path}")).into_response()
            }
            Ok(res) => {
                let mut res = res.map(Body::new);
                // Only a file actually sent (or confirmed) is kept for good: never an error.
                let sent = matches!(
                    res.status(),
                    StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
                );
                let cache = if hashed(&path) && sent { IMMUTABLE } else { "no-cache" };
                res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                res.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                res
            }
            Err(never) => match never {},
        };
    }
    if !index.is_file() {
        return not_built(dir);
    }
    match ServeFile::new(&index).precompressed_br().precompressed_gzip().oneshot(req).await {
        Ok(res) => {
            let mut res = res.map(Body::new);
            // The page names its hashed assets: always revalidate it so a rebuild shows at once.
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            res
        }
        Err(never) => match never {},
    }
}

/// How long a browser keeps a hashed file: a year, never revalidated (a new build has new names).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The build names its files `name-<hash>.ext` (at least 12 hex digits): their content never
/// changes under that name.
fn hashed(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    let stem = last.split('.').next().unwrap_or("");
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn not_built(dir: &Path) -> Response {
    let dir = dir.display().to_string().replace('&', "&amp;").replace('<', "&lt;");
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>wirescope: app not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:18px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2937}}
code{{background:#eef2f7;padding:.1em .35em;border-radius:4px}}</style></head><body>
<h1>The wirescope server is running, but its app is not built</h1>
<p>No <code>index.html</code> in <code>{dir}</code>. Build the app and restart the server:</p>
<p><code>scripts/build</code> (or <code>trunk build --release</code>), then
<code>target/release/wirescope --assets dist</code>.</p>
<p>The API works already: <a href="/api/health"><code>/api/health</code></a>.</p>
</body></html>"#
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_recognised_in_every_spelling() {
        for bad in
            ["/../etc/passwd", "/a/%2e%2e/b", "/a/%2E%2E", "/a/..%2fb", "/a%5c..%5cb", "/a%00b", "/./x"]
        {
            assert!(traversal(bad).is_some(), "{bad}");
        }
        for good in ["/", "/index.html", "/app-1f2e_bg.wasm", "/docs/x", "/a..b/c.d"] {
            assert!(traversal(good).is_none(), "{good}");
        }
    }

    #[test]
    fn only_the_builds_hashed_names_are_immutable() {
        assert!(hashed("/app-b152cc80c515828f.js"));
        assert!(hashed("/app-b152cc80c515828f_bg.wasm"));
        assert!(hashed("/main-333096089a138f12.css"));
        assert!(hashed("/favicon-836efec617f55c0f.svg"));
        assert!(!hashed("/index.html"));
        assert!(!hashed("/robots.txt"));
        assert!(!hashed("/my-page.html"));
        assert!(!hashed("/app-zzzzzzzzzzzzzzzz.js"));
    }

    #[test]
    fn extensions_only_count_in_the_last_segment() {
        assert!(has_extension("/app.js"));
        assert!(has_extension("/x/y.wasm"));
        assert!(!has_extension("/docs"));
        assert!(!has_extension("/v1.2/page"));
    }
}
