//! The typed HTTP client. Same-origin relative URLs only, so the trunk dev proxy and the
//! production server behave the same. Every request and its answer (or its failure) is
//! recorded as it happens.

use gloo_net::http::{Method, RequestBuilder};
use protocol::{Body, EventKind, Failure, Header, Health, HttpRequest, HttpResponse, Side};
use serde::de::DeserializeOwned;

// This browser's client id and its id for each exchange (so its record and the server's can
// be joined) travel in headers both ends name from `protocol`.
use protocol::{CLIENT_HEADER, EXCHANGE_HEADER, IDEMPOTENCY_HEADER};

use crate::recorder::{PREVIEW_BYTES, Recorder};

/// What an API call answered, when it was not what the caller hoped for.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiFailure {
    /// No HTTP answer at all (server down, connection refused, CORS…).
    Network(String),
    /// An HTTP answer with an error status; `message` from its JSON error body when it has one.
    Status { status: u16, message: String },
    /// A 2xx answer whose body was not what the route promises.
    Decode(String),
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Network(e) => write!(f, "no answer: {e}"),
            ApiFailure::Status { status, message } => write!(f, "{status}: {message}"),
            ApiFailure::Decode(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

/// A raw answer: status, headers and body text.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<Header>,
    pub text: String,
}

impl Answer {
    /// Decodes a 2xx body as `T`, or turns an error status into [`ApiFailure::Status`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiFailure> {
        if !(200..300).contains(&self.status) {
            let message = serde_json::from_str::<protocol::ApiError<serde_json::Value>>(&self.text)
                .map(|e| e.message)
                .unwrap_or_else(|_| self.text.chars().take(200).collect());
            return Err(ApiFailure::Status { status: self.status, message });
        }
        serde_json::from_str(&self.text).map_err(|e| ApiFailure::Decode(e.to_string()))
    }
}

/// Sends one request and records the exchange: the request when it leaves, the response when
/// its body has arrived, or a failure when no answer came.
pub async fn exchange(
    rec: &Recorder,
    method: Method,
    path: &str,
    json_body: Option<String>,
) -> Result<Answer, ApiFailure> {
    exchange_with(rec, method, path, json_body, &[]).await
}

/// [`exchange`] with extra headers. `Authorization` is sent but recorded as `[redacted]`:
/// nothing this browser records (and so nothing it exports) holds a token.
pub async fn exchange_with(
    rec: &Recorder,
    method: Method,
    path: &str,
    json_body: Option<String>,
    extra: &[(&str, String)],
) -> Result<Answer, ApiFailure> {
    let ex = rec.exchange();
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path.to_owned(), None),
    };
    let mut headers = vec![Header::new("accept", "application/json")];
    if json_body.is_some() {
        headers.push(Header::new("content-type", "application/json"));
    }
    let mut builder = RequestBuilder::new(path)
        .method(method.clone())
        .header(CLIENT_HEADER, &rec.client())
        .header(EXCHANGE_HEADER, &ex.to_string());
    for h in &headers {
        builder = builder.header(&h.name, &h.value);
    }
    for (name, value) in extra {
        builder = builder.header(name, value);
        let shown = if name.eq_ignore_ascii_case("authorization") {
            "[redacted]".to_owned()
        } else {
            (*value).clone()
        };
        headers.push(Header::new(name.to_ascii_lowercase(), shown));
    }
    rec.record(
        ex,
        EventKind::HttpRequest(HttpRequest {
            method: method.to_string(),
            path: path_only,
            query,
            headers,
            body: json_body.as_deref().map(|b| Body::capture(b.as_bytes(), PREVIEW_BYTES)),
        }),
    );
    let sent = match json_body {
        Some(b) => builder.body(b).map_err(|e| e.to_string()),
        None => builder.build().map_err(|e| e.to_string()),
    };
    let response = match sent {
        Ok(req) => req.send().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let response = match response {
        Ok(r) => r,
        Err(message) => {
            rec.record(ex, EventKind::Failure(Failure { from: Side::Client, message: message.clone() }));
            return Err(ApiFailure::Network(message));
        }
    };
    let status = response.status();
    let headers: Vec<Header> = response.headers().entries().map(|(n, v)| Header::new(n, v)).collect();
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => {
            let message = format!("{status} but the body was cut: {e}");
            rec.record(ex, EventKind::Failure(Failure { from: Side::Server, message: message.clone() }));
            return Err(ApiFailure::Network(message));
        }
    };
    rec.record(
        ex,
        EventKind::HttpResponse(HttpResponse {
            status,
            streaming: false,
            headers: headers.clone(),
            body: Some(Body::capture(text.as_bytes(), PREVIEW_BYTES)),
        }),
    );
    Ok(Answer { status, headers, text })
}

/// The HTTP method named `name` (as written in an OpenAPI document).
pub fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        "OPTIONS" => Method::OPTIONS,
        _ => Method::GET,
    }
}

/// A fresh `Idempotency-Key`.
pub fn idempotency_key() -> String {
    format!("{}-{}", crate::clock::now_us(), (js_sys::Math::random() * 1e9) as u64)
}

/// Sends a request and, when no answer came or the answer was 429/503, tries again (up to
/// three times, waiting `Retry-After` or 1 s, 2 s). A POST carries one `Idempotency-Key` for
/// every attempt, so a retried create never creates twice. Every attempt is drawn.
pub async fn exchange_retrying(
    rec: &Recorder,
    method: Method,
    path: &str,
    json_body: Option<String>,
) -> Result<Answer, ApiFailure> {
    let key = idempotency_key();
    let extra: Vec<(&str, String)> =
        if method == Method::POST { vec![(IDEMPOTENCY_HEADER, key)] } else { Vec::new() };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = exchange_with(rec, method.clone(), path, json_body.clone(), &extra).await;
        let wait_s = match &result {
            Err(ApiFailure::Network(_)) => attempt as u64,
            Ok(a) if a.status == 429 || a.status == 503 => a
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                .and_then(|h| h.value.trim().parse::<u64>().ok())
                .unwrap_or(attempt as u64)
                .min(5),
            _ => return result,
        };
        if attempt >= 3 {
            return result;
        }
        crate::clock::sleep((wait_s * 1000) as i32).await;
    }
}

/// `GET /api/health`.
pub async fn health(rec: &Recorder) -> Result<Health, ApiFailure> {
    exchange(rec, Method::GET, "/api/health", None).await?.json()
}

/// `GET /api/openapi.json`, the API's own description (drives the API page).
pub async fn openapi(rec: &Recorder) -> Result<serde_json::Value, ApiFailure> {
    exchange(rec, Method::GET, "/api/openapi.json", None).await?.json()
}

/// The Transcript REST API, one typed function per route.
pub mod transcripts {
    use gloo_net::http::Method;
    use protocol::{CourseGrade, NewTranscript, StudentId, Transcript};

    use super::{ApiFailure, exchange};
    use crate::model::openapi::encode;
    use crate::recorder::Recorder;

    fn no_content(a: super::Answer) -> Result<(), ApiFailure> {
        if a.status == 204 { Ok(()) } else { a.json::<serde_json::Value>().map(|_| ()) }
    }

    /// `GET /transcripts`
    pub async fn list(rec: &Recorder) -> Result<Vec<Transcript>, ApiFailure> {
        exchange(rec, Method::GET, "/transcripts", None).await?.json()
    }

    /// `POST /transcripts`: the new student's id.
    pub async fn add_student(
        rec: &Recorder,
        name: &str,
        grades: Vec<CourseGrade>,
    ) -> Result<StudentId, ApiFailure> {
        let body = NewTranscript { student_name: name.to_owned(), grades };
        let json = serde_json::to_string(&body).map_err(|e| ApiFailure::Decode(e.to_string()))?;
        super::exchange_retrying(rec, Method::POST, "/transcripts", Some(json)).await?.json()
    }

    /// `GET /transcripts/{studentID}`
    pub async fn get(rec: &Recorder, id: StudentId) -> Result<Transcript, ApiFailure> {
        exchange(rec, Method::GET, &format!("/transcripts/{id}"), None).await?.json()
    }

    /// `DELETE /transcripts/{studentID}`
    pub async fn delete(rec: &Recorder, id: StudentId) -> Result<(), ApiFailure> {
        no_content(super::exchange_retrying(rec, Method::DELETE, &format!("/transcripts/{id}"), None).await?)
    }

    /// `POST /transcripts/{studentID}/{courseNumber}` with the grade as a bare number.
    pub async fn add_grade(
        rec: &Recorder,
        id: StudentId,
        course: &str,
        grade: f64,
    ) -> Result<(), ApiFailure> {
        let path = format!("/transcripts/{id}/{}", encode(course));
        no_content(super::exchange_retrying(rec, Method::POST, &path, Some(grade.to_string())).await?)
    }

    /// `GET /transcripts/{studentID}/{courseNumber}`
    pub async fn get_grade(rec: &Recorder, id: StudentId, course: &str) -> Result<f64, ApiFailure> {
        exchange(rec, Method::GET, &format!("/transcripts/{id}/{}", encode(course)), None).await?.json()
    }

    /// `GET /studentids?name=N`
    pub async fn student_ids(rec: &Recorder, name: &str) -> Result<Vec<StudentId>, ApiFailure> {
        exchange(rec, Method::GET, &format!("/studentids?name={}", encode(name)), None).await?.json()
    }
}

/// The instructor's calls: `/api/instructor/…` with `Authorization: Bearer TOKEN`.
pub mod instructor {
    use gloo_net::http::Method;

    use super::{Answer, ApiFailure, exchange_with};
    use crate::recorder::Recorder;

    pub async fn call(
        rec: &Recorder,
        token: &str,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, ApiFailure> {
        exchange_with(rec, method, path, body, &[("Authorization", format!("Bearer {token}"))]).await
    }
}
