//! The one error type at the HTTP edge. Every error answer is JSON `{"message", "details"}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::ToSchema;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: the request was understood but its parameters are wrong (or its JSON malformed).
    BadRequest(String),
    /// 404: nothing lives at this path.
    NotFound(String),
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 413: the body is larger than the limit.
    PayloadTooLarge(String),
    /// 415: the body is not `application/json`.
    UnsupportedMediaType(String),
    /// 403: an instructor route without the instructor's token.
    Forbidden,
    /// 403: something that is the instructor's until shared (an unpublished session).
    Private(String),
    /// 403: a browser page on another origin (named) asked for a WebSocket or a change.
    ForeignOrigin(String),
    /// 408: the request body did not arrive in time.
    RequestTimeout(String),
    /// 409: the server is not in a state to do this (e.g. sessions while capture is off).
    Conflict(String),
    /// 429 (with `Retry-After`, seconds): too many requests (a rate limit, or a fault).
    TooManyRequests(u64),
    /// 429 with `Retry-After` (seconds) and what exactly was too many.
    Throttled(u64, String),
    /// 503 (with `Retry-After`, seconds): not now (a fault).
    Unavailable(u64),
    /// 426: a WebSocket endpoint asked without a WebSocket handshake.
    UpgradeRequired(String),
    /// 422: named fields failed validation (field as the client wrote it → reason).
    Validation(BTreeMap<String, String>),
    /// 500: our fault, never a client's.
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::Forbidden | ApiError::ForeignOrigin(_) | ApiError::Private(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests(_) | ApiError::Throttled(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body: `message` names the kind of error, `details` says what exactly.
    pub fn body(&self) -> protocol::ApiError<Value> {
        let (message, details) = match self {
            ApiError::BadRequest(d) => ("Invalid parameters", Value::from(d.as_str())),
            ApiError::NotFound(d) => ("Not Found", Value::from(d.as_str())),
            ApiError::MethodNotAllowed => (
                "Method Not Allowed",
                Value::from("this path does not accept that method; see the Allow header"),
            ),
            ApiError::PayloadTooLarge(d) => ("Payload Too Large", Value::from(d.as_str())),
            ApiError::UnsupportedMediaType(d) => ("Unsupported Media Type", Value::from(d.as_str())),
            ApiError::UpgradeRequired(d) => ("Upgrade Required", Value::from(d.as_str())),
            ApiError::Conflict(d) => ("Conflict", Value::from(d.as_str())),
            ApiError::Private(d) => ("Forbidden", Value::from(d.as_str())),
            ApiError::RequestTimeout(d) => ("Request Timeout", Value::from(d.as_str())),
            ApiError::ForeignOrigin(o) => (
                "Forbidden",
                Value::from(format!(
                    "a page on {o} may not use this server from a browser; start the server with --allow-origin {o} to allow it"
                )),
            ),
            ApiError::Forbidden => {
                ("Forbidden", Value::from("this needs the instructor's token (Authorization: Bearer …)"))
            }
            ApiError::TooManyRequests(s) => {
                ("Too Many Requests", Value::from(format!("slow down: retry in {s} s")))
            }
            ApiError::Throttled(_, d) => ("Too Many Requests", Value::from(d.as_str())),
            ApiError::Unavailable(s) => {
                ("Service Unavailable", Value::from(format!("not now: retry in {s} s")))
            }
            ApiError::Validation(fields) => (
                "Validation Failed",
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect()),
            ),
            ApiError::Internal(d) => ("Internal Server Error", Value::from(d.as_str())),
        };
        protocol::ApiError { message: message.to_owned(), details }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(what) = &self {
            tracing::error!(%what, "internal error");
        }
        let mut res = (self.status(), Json(self.body())).into_response();
        let headers = res.headers_mut();
        match self {
            ApiError::UpgradeRequired(_) => {
                headers
                    .insert(axum::http::header::UPGRADE, axum::http::HeaderValue::from_static("websocket"));
                headers
                    .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("Upgrade"));
            }
            ApiError::TooManyRequests(s) | ApiError::Throttled(s, _) | ApiError::Unavailable(s) => {
                headers.insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(s));
            }
            _ => {}
        }
        res
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body();
        write!(f, "{} {}: {}", self.status().as_u16(), body.message, body.details)
    }
}

impl std::error::Error for ApiError {}

/// 400 body in the OpenAPI document: `details` says what is wrong.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"message": "Invalid parameters", "details": "no student with id 42"}))]
pub struct InvalidParameters {
    pub message: String,
    pub details: String,
}

/// 422 body in the OpenAPI document: `details` maps each field, as the client named it, to
/// what is wrong with it.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"message": "Validation Failed", "details": {"studentName": "is required"}}))]
pub struct ValidationFailed {
    pub message: String,
    pub details: std::collections::HashMap<String, String>,
}

/// Any other error body in the OpenAPI document (404, 405, 409, 413, 415).
#[derive(Debug, ToSchema)]
#[schema(example = json!({"message": "Not Found", "details": "no such endpoint: GET /transcripts/1/a/b"}))]
pub struct ErrorBody {
    pub message: String,
    pub details: String,
}

/// Fallback for a known path asked with a method it does not serve (axum adds `Allow`).
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
