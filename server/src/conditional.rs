//! Conditional reads (RFC 9110 §8.8.3, §13.1.2): a read's answer carries an `ETag` worked out
//! from its bytes, and a client (or a cache) that sends the tag it holds in `If-None-Match`
//! gets `304 Not Modified` with no body while the answer is unchanged.
//!
//! The tag is a digest of the JSON itself, not a version number: every replica of a cluster
//! gives the same answer the same tag, and a write that changes nothing a read shows leaves
//! that read's tag as it was. It is weak (`W/"…"`): it names the answer, not the bytes sent,
//! which differ by `Content-Encoding` — so the 200 and the 304, compressed or not, HEAD or
//! GET, all carry the same tag, with `Vary: Accept-Encoding`.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;

/// What a read's answer tells caches: they may keep it but must ask again (with the tag) each
/// time, since a transcript can change at any moment.
pub const CACHE_CONTROL: &str = "no-cache";

/// The `If-None-Match` lines of a request, as sent.
#[derive(Debug, Clone, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(IfNoneMatch::from_headers(&parts.headers))
    }
}

impl IfNoneMatch {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        IfNoneMatch(headers.get_all(header::IF_NONE_MATCH).iter().cloned().collect())
    }

    /// Whether the client already holds the answer tagged `etag`: `*`, or a tag equal to it by
    /// the weak comparison (`W/` ignored: a compressed copy is weakly the same answer). A line
    /// that is not a list of tags matches nothing from where it stops being one.
    pub fn matches(&self, etag: &str) -> bool {
        let opaque = etag.strip_prefix("W/").unwrap_or(etag);
        self.0.iter().any(|line| tags(line.as_bytes()).any(|t| t == b"*" || t == opaque.as_bytes()))
    }
}

/// The entity tags of one `If-None-Match` line (each with its quotes, `W/` dropped), or `*`.
fn tags(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if let [b'*', tail @ ..] = rest {
            rest = tail;
            return Some(&b"*"[..]);
        }
        let from = if rest.starts_with(b"W/") { &rest[2..] } else { rest };
        if from.first() != Some(&b'"') {
            rest = &[];
            return None;
        }
        let end = from[1..].iter().position(|&b| b == b'"')? + 2;
        let (tag, tail) = from.split_at(end);
        rest = tail;
        Some(tag)
    })
}

/// The (weak) tag of an answer: the first 16 bytes of its JSON's SHA-256, in hex, quoted.
pub fn etag_of(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    let mut tag = String::with_capacity(36);
    tag.push_str("W/\"");
    for b in &digest[..16] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// A read's answer as JSON with its `ETag` and `Cache-Control`, or `304 Not Modified` (with the
/// same two headers and no body) when `held` already names it.
pub fn json<T: serde::Serialize>(value: &T, held: &IfNoneMatch) -> Response {
    let bytes = match serde_json::to_vec(value) {
        Ok(bytes) => bytes,
        Err(e) => {
            return crate::error::ApiError::Internal(format!("answer not serializable: {e}")).into_response();
        }
    };
    let etag = etag_of(&bytes);
    let tagged = |status: StatusCode| {
        let mut res = status.into_response();
        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
        // Sent compressed or not by the client's Accept-Encoding (`crate::compress`).
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        res
    };
    if held.matches(&etag) {
        return tagged(StatusCode::NOT_MODIFIED);
    }
    let mut res = tagged(StatusCode::OK);
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    *res.body_mut() = axum::body::Body::from(bytes);
    res
}

/// `etag` made weak (`W/"…"`), for a copy of the answer sent in another encoding: its bytes
/// differ, so the strong tag no longer names them. A tag already weak (or not a tag) stays.
pub fn weakened(etag: &str) -> String {
    if etag.starts_with('"') { format!("W/{etag}") } else { etag.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(lines: &[&str]) -> IfNoneMatch {
        IfNoneMatch(lines.iter().map(|l| HeaderValue::from_str(l).unwrap()).collect())
    }

    #[test]
    fn a_tag_held_matches_weakly_and_anything_else_does_not() {
        let tag = etag_of(b"[1,2]");
        assert_eq!(tag.len(), 36);
        assert!(tag.starts_with("W/\"") && tag.ends_with('"'), "{tag}");
        assert_eq!(tag, etag_of(b"[1,2]"), "the same bytes, the same tag");
        assert_ne!(tag, etag_of(b"[1,2,3]"));
        assert!(held(&[&tag]).matches(&tag));
        let strong = &tag[2..];
        assert!(held(&[strong]).matches(&tag), "weak comparison");
        assert!(held(&[&tag]).matches(strong));
        assert!(held(&[&format!("\"a\", {tag}")]).matches(&tag), "one of a list");
        assert!(held(&["\"a\"", &tag]).matches(&tag), "one of several lines");
        assert!(held(&["*"]).matches(&tag));
        assert!(held(&["\"a,b\" , *"]).matches(&tag), "a comma inside a tag is part of it");
        assert!(!held(&[]).matches(&tag));
        assert!(!held(&["\"a\""]).matches(&tag));
        assert!(!held(&[&tag[3..35]]).matches(&tag), "a tag must be quoted");
        assert!(!held(&[&format!("garbage {tag}")]).matches(&tag), "nothing after what is not a tag");
        assert!(!held(&["\"unterminated"]).matches(&tag));
        assert!(!held(&[""]).matches(&tag));
    }

    #[test]
    fn a_read_is_tagged_and_answered_304_when_held() {
        let fresh = json(&vec![1, 2], &IfNoneMatch::default());
        assert_eq!(fresh.status(), StatusCode::OK);
        let tag = fresh.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(fresh.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
        assert_eq!(fresh.headers()[header::CONTENT_TYPE], "application/json");
        let again = json(&vec![1, 2], &held(&[&tag]));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], tag.as_str());
        assert_eq!(again.headers()[header::VARY], "accept-encoding", "what the 200 would have said");
        assert_eq!(again.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
        assert!(!again.headers().contains_key(header::CONTENT_TYPE));
        assert_eq!(json(&vec![1, 2, 3], &held(&[&tag])).status(), StatusCode::OK, "changed");
    }

    #[test]
    fn only_a_strong_tag_is_weakened() {
        assert_eq!(weakened("\"ab\""), "W/\"ab\"");
        assert_eq!(weakened("W/\"ab\""), "W/\"ab\"");
    }
}
