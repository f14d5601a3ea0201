//! Extractors that answer a client's mistakes with [`ApiError`]s, never with plain text.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use crate::error::ApiError;

pub use crate::limits::BODY_LIMIT;

/// A JSON request body, parsed but not yet validated: 415 if it is not `application/json`,
/// 413 over [`BODY_LIMIT`], 400 if it is not well-formed JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody(pub Value);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type =
            req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)").to_owned());
        match content_type.as_deref() {
            Some(ct) if is_json(ct) => {}
            Some(ct) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "send the body as application/json (got Content-Type: {ct})"
                )));
            }
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "send the body as application/json (no Content-Type given)".to_owned(),
                ));
            }
        }
        let too_large =
            || ApiError::PayloadTooLarge(format!("the body is larger than {BODY_LIMIT} bytes (1 MiB)"));
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let mut body = Limited::new(req.into_body(), BODY_LIMIT);
        let start = tokio::time::Instant::now();
        let mut bytes = bytes::BytesMut::new();
        loop {
            let due = crate::limits::body_due(start, crate::limits::BODY_GRACE, bytes.len());
            let Ok(frame) = tokio::time::timeout_at(due, body.frame()).await else {
                return Err(ApiError::RequestTimeout(slow_body(crate::limits::BODY_GRACE)));
            };
            match frame {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
                Some(Err(e)) => return Err(ApiError::BadRequest(format!("could not read the body: {e}"))),
            }
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("malformed JSON: the body is empty".to_owned()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
    }
}

/// Why a body was cut: it came slower than the server waits for.
pub fn slow_body(grace: std::time::Duration) -> String {
    format!(
        "the request body came too slowly (after the first {} s, at least {} bytes a second on average)",
        grace.as_secs_f64(),
        crate::limits::MIN_BODY_RATE
    )
}

/// A JSON object as `T`, as a 422 naming what is wrong otherwise. serde alone would read an
/// array as a struct's fields in order (`[]` as all defaults); a body is always an object.
pub fn from_object<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::Validation([("body".to_owned(), "must be a JSON object".to_owned())].into()));
    }
    serde_json::from_value(body)
        .map_err(|e| ApiError::Validation([("body".to_owned(), e.to_string())].into()))
}

/// Path parameters as text, in route order; a segment that is not valid UTF-8 is a 400.
#[derive(Debug, Clone, PartialEq)]
pub struct PathText(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(pairs) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("bad path: {}", e.body_text())))?;
        Ok(PathText(pairs.into_iter().map(|(_, v)| v).collect()))
    }
}

/// Query parameters as text (the first value of each name); a malformed query is a 400.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryText(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("bad query: {}", e.body_text())))?;
        let mut map = HashMap::new();
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Ok(QueryText(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json(""));
    }
}
