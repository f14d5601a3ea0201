//! The one error type at the HTTP edge. Every error answer is JSON `{"message", "details"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: the request was understood but its parameters are wrong.
    BadRequest(String),
    /// 404: nothing lives at this path.
    NotFound(String),
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 500: our fault, never a client's.
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> protocol::ApiError {
        let (message, details) = match self {
            ApiError::BadRequest(d) => ("Invalid parameters", d.clone()),
            ApiError::NotFound(d) => ("Not Found", d.clone()),
            ApiError::MethodNotAllowed => {
                ("Method Not Allowed", "this path does not accept that method".to_owned())
            }
            ApiError::Internal(d) => ("Internal Server Error", d.clone()),
        };
        protocol::ApiError { message: message.to_owned(), details }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(what) = &self {
            tracing::error!(%what, "internal error");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body();
        write!(f, "{} {}: {}", self.status().as_u16(), body.message, body.details)
    }
}

impl std::error::Error for ApiError {}

/// Fallback for a known path asked with a method it does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
