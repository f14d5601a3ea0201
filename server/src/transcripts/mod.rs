//! The course activity's Transcript REST API, at the root paths its clients expect.
//!
//! Handlers validate what the client sent (naming every problem), hand writes to the backend
//! ([`Transcripts`]: SQLite, or a cluster's PostgreSQL), and answer only after the commit.

pub mod backend;
pub mod fanout;
pub mod keys;
pub mod postgres;
pub mod store;
pub mod validate;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use protocol::{NewTranscript, StudentId, Transcript};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::changes::ChangeFeed;
use crate::conditional::{self, IfNoneMatch};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathText, QueryText};
pub use backend::{Embedded, Transcripts};
pub use store::{Store, StoreError};
use validate::Problems;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            e @ (StoreError::Db(_) | StoreError::TooNew(_) | StoreError::Backend(_)) => {
                ApiError::Internal(e.to_string())
            }
            StoreError::Unavailable(why) => {
                tracing::warn!(%why, "transcripts unavailable");
                ApiError::Unavailable(1)
            }
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

fn check(problems: Problems) -> Result<(), ApiError> {
    if problems.is_empty() { Ok(()) } else { Err(ApiError::Validation(problems)) }
}

/// What the transcript routes need: the store, and the feed their writes publish to.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Transcripts>,
    pub changes: Arc<ChangeFeed>,
}

/// The routes, with CORS open to any origin (students' own front ends call this API).
pub fn routes() -> Router<Ctx> {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::HeaderName::from_static(crate::idempotency::HEADER),
        ])
        // A page of another origin may read the tag, to send it back in If-None-Match.
        .expose_headers([header::ETAG])
        .max_age(std::time::Duration::from_secs(600))
        // Every origin gets the same answer (`*`), so nothing varies by it: with a `Vary` on
        // the request's origin a shared cache would keep a copy per origin, or none at all.
        .vary(Vec::<header::HeaderName>::new());
    Router::new()
        .route("/transcripts", get(list).post(create))
        .route("/transcripts/{studentID}", get(get_transcript).delete(delete))
        .route("/transcripts/{studentID}/{courseNumber}", get(get_grade).post(add_grade))
        .route("/studentids", get(student_ids))
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .layer(cors)
}

/// Every transcript, ordered by student id.
#[utoipa::path(get, path = "/transcripts", tag = "transcripts", operation_id = "listTranscripts",
    params(("If-None-Match" = Option<String>, Header, description = "Tags of copies the client holds (or `*`): a 304 answers if one is current")),
    responses(
        (status = 200, description = "All transcripts, by id", body = Vec<Transcript>, headers(("ETag" = String, description = "The answer's tag: send it back in If-None-Match"), ("Cache-Control" = String, description = "`no-cache`: a copy may be kept but is checked each time"))),
        (status = 304, description = "Not modified: the tag in If-None-Match is still the answer's (no body)", headers(("ETag" = String, description = "The answer's tag"))),
    ))]
pub async fn list(State(state): State<Ctx>, held: IfNoneMatch) -> Result<Response, ApiError> {
    Ok(conditional::json(&state.store.list().await?, &held))
}

/// Adds a student (with optional grades, at most one per course); answers the new id.
#[utoipa::path(post, path = "/transcripts", tag = "transcripts", operation_id = "addStudent",
    request_body(content = NewTranscript, description = "The student's name and, optionally, grades",
        example = json!({"studentName": "dana", "grades": [{"course": "DemoClass", "grade": 92}]})),
    responses(
        (status = 200, description = "The new student's id, as a bare JSON number", body = i64, content_type = "application/json", example = json!(5)),
        (status = 400, description = "Malformed JSON, or a course twice in `grades`", body = crate::error::InvalidParameters),
        (status = 422, description = "A field is missing, of the wrong type, empty or unknown", body = crate::error::ValidationFailed),
    ))]
pub async fn create(State(state): State<Ctx>, JsonBody(body): JsonBody) -> Result<Json<StudentId>, ApiError> {
    let (name, grades) = validate::new_transcript(&body).map_err(ApiError::Validation)?;
    let id = state.store.create(name, grades, crate::cause::current()).await?;
    Ok(Json(id))
}

/// One student's transcript.
#[utoipa::path(get, path = "/transcripts/{studentID}", tag = "transcripts", operation_id = "getTranscript",
    params(("studentID" = i64, Path, description = "The student's id"), ("If-None-Match" = Option<String>, Header, description = "Tags of copies the client holds (or `*`): a 304 answers if one is current")),
    responses(
        (status = 200, description = "The transcript", body = Transcript, headers(("ETag" = String, description = "The answer's tag: send it back in If-None-Match"), ("Cache-Control" = String, description = "`no-cache`: a copy may be kept but is checked each time"))),
        (status = 304, description = "Not modified: the tag in If-None-Match is still the answer's (no body)", headers(("ETag" = String, description = "The answer's tag"))),
        (status = 400, description = "No student with this id", body = crate::error::InvalidParameters),
        (status = 422, description = "The id is not an integer", body = crate::error::ValidationFailed),
    ))]
pub async fn get_transcript(
    State(state): State<Ctx>,
    held: IfNoneMatch,
    PathText(p): PathText,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let id = validate::student_id(&p[0], &mut problems);
    check(problems)?;
    let id = id.unwrap_or_default();
    let transcript = state.store.get(id).await?.ok_or(StoreError::NoSuchStudent(id))?;
    Ok(conditional::json(&transcript, &held))
}

/// Deletes a student and their grades.
#[utoipa::path(delete, path = "/transcripts/{studentID}", tag = "transcripts", operation_id = "deleteStudent",
    params(("studentID" = i64, Path, description = "The student's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "No student with this id", body = crate::error::InvalidParameters),
        (status = 422, description = "The id is not an integer", body = crate::error::ValidationFailed),
    ))]
pub async fn delete(State(state): State<Ctx>, PathText(p): PathText) -> Result<StatusCode, ApiError> {
    let mut problems = Problems::new();
    let id = validate::student_id(&p[0], &mut problems);
    check(problems)?;
    let id = id.unwrap_or_default();
    state.store.delete(id, crate::cause::current()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records a grade in a course the student has no grade in yet.
#[utoipa::path(post, path = "/transcripts/{studentID}/{courseNumber}", tag = "transcripts", operation_id = "addGrade",
    params(
        ("studentID" = i64, Path, description = "The student's id"),
        ("courseNumber" = String, Path, description = "The course (may contain spaces, sent as %20)",
            min_length = 1, max_length = 200, pattern = r"\S", example = "DemoClass3"),
    ),
    request_body(content = f64, content_type = "application/json", description = "The grade, as a bare JSON number", example = json!(88)),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Malformed JSON, no student with this id, or already graded in this course", body = crate::error::InvalidParameters),
        (status = 422, description = "The grade is not a number, or the id not an integer", body = crate::error::ValidationFailed),
    ))]
pub async fn add_grade(
    State(state): State<Ctx>,
    PathText(p): PathText,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let mut problems = Problems::new();
    let id = validate::student_id(&p[0], &mut problems);
    let course = validate::course(&p[1], &mut problems);
    let grade = validate::grade_body(&body, &mut problems);
    check(problems)?;
    let (Some(id), Some(course), Some(grade)) = (id, course, grade) else {
        return Err(ApiError::Internal("validation passed without values".to_owned()));
    };
    state.store.add_grade(id, course, grade, crate::cause::current()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One grade of one student.
#[utoipa::path(get, path = "/transcripts/{studentID}/{courseNumber}", tag = "transcripts", operation_id = "getGrade",
    params(
        ("studentID" = i64, Path, description = "The student's id"),
        ("courseNumber" = String, Path, description = "The course (may contain spaces, sent as %20)",
            min_length = 1, max_length = 200, pattern = r"\S", example = "DemoClass"),
        ("If-None-Match" = Option<String>, Header, description = "Tags of copies the client holds (or `*`): a 304 answers if one is current"),
    ),
    responses(
        (status = 200, description = "The grade, as a bare JSON number", body = f64, content_type = "application/json", headers(("ETag" = String, description = "The answer's tag: send it back in If-None-Match"), ("Cache-Control" = String, description = "`no-cache`: a copy may be kept but is checked each time")), example = json!(100)),
        (status = 304, description = "Not modified: the tag in If-None-Match is still the answer's (no body)", headers(("ETag" = String, description = "The answer's tag"))),
        (status = 400, description = "No student with this id, or no grade in this course", body = crate::error::InvalidParameters),
        (status = 422, description = "The id is not an integer", body = crate::error::ValidationFailed),
    ))]
pub async fn get_grade(
    State(state): State<Ctx>,
    held: IfNoneMatch,
    PathText(p): PathText,
) -> Result<Response, ApiError> {
    let mut problems = Problems::new();
    let id = validate::student_id(&p[0], &mut problems);
    let course = validate::course(&p[1], &mut problems);
    check(problems)?;
    let (Some(id), Some(course)) = (id, course) else {
        return Err(ApiError::Internal("validation passed without values".to_owned()));
    };
    Ok(conditional::json(&GradeNumber(state.store.grade(id, &course).await?), &held))
}

/// The ids of every student with exactly this name, ascending.
#[utoipa::path(get, path = "/studentids", tag = "transcripts", operation_id = "getStudentIDs",
    params(("name" = String, Query, description = "The exact name to look for", example = "blake"), ("If-None-Match" = Option<String>, Header, description = "Tags of copies the client holds (or `*`): a 304 answers if one is current")),
    responses(
        (status = 200, description = "Matching ids, ascending (empty if none)", body = Vec<i64>, headers(("ETag" = String, description = "The answer's tag: send it back in If-None-Match"), ("Cache-Control" = String, description = "`no-cache`: a copy may be kept but is checked each time")), example = json!([2, 3])),
        (status = 304, description = "Not modified: the tag in If-None-Match is still the answer's (no body)", headers(("ETag" = String, description = "The answer's tag"))),
        (status = 422, description = "`name` is missing", body = crate::error::ValidationFailed),
    ))]
pub async fn student_ids(
    State(state): State<Ctx>,
    held: IfNoneMatch,
    QueryText(q): QueryText,
) -> Result<Response, ApiError> {
    let Some(name) = q.get("name") else {
        return Err(ApiError::Validation(Problems::from([("name".to_owned(), "is required".to_owned())])));
    };
    Ok(conditional::json(&state.store.ids_named(name).await?, &held))
}

/// A grade as a bare JSON number, written like grades everywhere else in the API.
#[derive(Debug, serde::Serialize)]
pub struct GradeNumber(#[serde(serialize_with = "protocol::transcripts::grade_number")] pub f64);
