//! Compression of JSON answers on their way out: a JSON body of more than [`THRESHOLD`] bytes
//! (and at most [`MAX`]) is sent with brotli or gzip when the client accepts one, with
//! `Content-Encoding` and `Vary: Accept-Encoding`, its `ETag` made weak. Streamed answers (exports, the event
//! stream) and everything else pass as they are.
//!
//! The layer sits outside the capture layer, so the diagram shows the body the handler
//! made; the capture layer asks [`chosen`] — the same decision this layer takes — and
//! notes the `Content-Encoding` that was sent.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use http_body_util::BodyExt;

/// Smaller answers are sent as they are: compressing them saves less than it costs.
pub const THRESHOLD: u64 = 1024;
/// Larger answers are sent as they are: compressing them would hold a worker too long.
pub const MAX: u64 = 1 << 20;

/// An encoding the server compresses answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// Every `Accept-Encoding` line of a request, as one value (a client may send several).
pub fn accept_encoding(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = headers.get_all(header::ACCEPT_ENCODING).iter();
    let first = lines.next()?;
    let rest: Vec<&[u8]> = lines.map(HeaderValue::as_bytes).collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let joined = std::iter::once(first.as_bytes()).chain(rest).collect::<Vec<_>>().join(&b", "[..]);
    HeaderValue::from_bytes(&joined).ok()
}

/// Which encodings an `Accept-Encoding` value allows: brotli first, then gzip; one given
/// `q=0` (or not named, with no `*`) is refused.
pub fn accepted(accept: Option<&HeaderValue>) -> Option<Encoding> {
    let value = accept?.to_str().ok()?;
    let mut br = None;
    let mut gzip = None;
    let mut star = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let (name, q) = p.split_once('=')?;
                name.trim().eq_ignore_ascii_case("q").then(|| q.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        match name.as_str() {
            "br" => br = Some(q > 0.0),
            "gzip" | "x-gzip" => gzip = Some(q > 0.0),
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    let allows = |named: Option<bool>| named.or(star).unwrap_or(false);
    if allows(br) {
        Some(Encoding::Brotli)
    } else if allows(gzip) {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// The encoding an answer of `size` bytes with `headers` is sent with, for a request that
/// accepts `accept`: a JSON body between [`THRESHOLD`] and [`MAX`] bytes not already encoded.
pub fn chosen(accept: Option<&HeaderValue>, headers: &HeaderMap, size: Option<u64>) -> Option<Encoding> {
    let size = size?;
    if !(THRESHOLD < size && size <= MAX) || headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim();
            t.eq_ignore_ascii_case("application/json") || t.ends_with("+json")
        });
    if !json {
        return None;
    }
    accepted(accept)
}

/// Whether `headers` already say the answer varies by `Accept-Encoding`.
pub fn varies_by_encoding(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| v.split(',').any(|h| h.trim().eq_ignore_ascii_case("accept-encoding")))
    })
}

/// `bytes` compressed with `encoding` (brotli at quality 5, gzip at level 6: fast enough for
/// every answer, most of the gain).
pub fn compress(bytes: &[u8], encoding: Encoding) -> std::io::Result<Vec<u8>> {
    match encoding {
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(bytes.len() / 4);
            {
                // A window no larger than the body: a small answer does not set up 4 MiB.
                let window = (usize::BITS - bytes.len().max(1).leading_zeros()).clamp(10, 22);
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, window);
                w.write_all(bytes)?;
                w.flush()?;
            }
            Ok(out)
        }
        Encoding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(
                Vec::with_capacity(bytes.len() / 4),
                flate2::Compression::new(6),
            );
            w.write_all(bytes)?;
            w.finish()
        }
    }
}

/// The layer: compresses what [`chosen`] says, sets `Content-Encoding`, `Vary` and the new
/// `Content-Length`. A tower layer of its own, not `from_fn`: that one boxes and clones the
/// service on every request, some twenty allocations, for answers it mostly leaves as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compress;

impl<S> tower::Layer<S> for Compress {
    type Service = CompressService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CompressService { inner }
    }
}

/// The service [`Compress`] wraps around the router.
#[derive(Debug, Clone)]
pub struct CompressService<S> {
    inner: S,
}

impl<S> tower::Service<Request> for CompressService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let accept = accept_encoding(req.headers());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let res = answer.await?;
            let size = res.body().size_hint().exact();
            let Some(encoding) = chosen(accept.as_ref(), res.headers(), size) else {
                return Ok(res);
            };
            let (mut parts, body) = res.into_parts();
            let Ok(collected) = body.collect().await else {
                return Ok(Response::from_parts(parts, Body::empty()));
            };
            let bytes = collected.to_bytes();
            let Ok(packed) = compress(&bytes, encoding) else {
                return Ok(Response::from_parts(parts, Body::from(bytes)));
            };
            parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
            if !varies_by_encoding(&parts.headers) {
                parts.headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(packed.len()));
            let weak = parts
                .headers
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(crate::conditional::weakened);
            if let Some(weak) = weak.and_then(|w| HeaderValue::from_str(&w).ok()) {
                parts.headers.insert(header::ETAG, weak);
            }
            Ok(Response::from_parts(parts, Body::from(packed)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn accept(v: &str) -> Option<Encoding> {
        accepted(Some(&HeaderValue::from_str(v).unwrap()))
    }

    #[test]
    fn brotli_is_preferred_and_q0_refuses() {
        assert_eq!(accept("gzip, deflate, br, zstd"), Some(Encoding::Brotli));
        assert_eq!(accept("gzip, deflate"), Some(Encoding::Gzip));
        assert_eq!(accept("br;q=0, gzip;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(accept("br;q=0, gzip;q=0"), None);
        assert_eq!(accept("identity"), None);
        assert_eq!(accept("*"), Some(Encoding::Brotli));
        assert_eq!(accept("*;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(accept("br;Q=0, gzip"), Some(Encoding::Gzip), "q is case-insensitive");
        let mut two = HeaderMap::new();
        two.append(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        two.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(accepted(accept_encoding(&two).as_ref()), Some(Encoding::Brotli), "every line counts");
        assert_eq!(accepted(None), None);
    }

    #[test]
    fn only_json_of_a_middling_size_is_compressed() {
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        let br = Some(HeaderValue::from_static("br"));
        assert_eq!(chosen(br.as_ref(), &json, Some(THRESHOLD + 1)), Some(Encoding::Brotli));
        assert_eq!(chosen(br.as_ref(), &json, Some(THRESHOLD)), None);
        assert_eq!(chosen(br.as_ref(), &json, Some(MAX + 1)), None);
        assert_eq!(chosen(br.as_ref(), &json, None), None, "streamed");
        assert_eq!(chosen(None, &json, Some(5000)), None);
        let mut html = HeaderMap::new();
        html.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert_eq!(chosen(br.as_ref(), &html, Some(5000)), None);
        json.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(chosen(br.as_ref(), &json, Some(5000)), None, "already encoded");
    }

    #[test]
    fn what_is_compressed_decodes_to_the_original() {
        let original =
            serde_json::to_vec(&vec![serde_json::json!({"studentName": "Ada", "grades": [1, 2, 3]}); 200])
                .unwrap();
        let br = compress(&original, Encoding::Brotli).unwrap();
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut back).unwrap();
        assert_eq!(back, original);
        assert!(br.len() * 10 < original.len(), "{} of {}", br.len(), original.len());
        let gz = compress(&original, Encoding::Gzip).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, original);
    }
}
