//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' own annotations and
//! types, served at `/api/openapi.json`.
//!
//! Errors every operation can meet (404 for an unknown path below it, 405 for a wrong method;
//! 400 for an unreadable path or query where there are parameters; 408, 413 and 415 for
//! operations with a body; 403 for a browser page on a foreign origin, on every operation that
//! changes something outside the open transcript API) are added once, here, to every operation.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::error::{ErrorBody, InvalidParameters, ValidationFailed};
use crate::transcripts;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wirescope: Transcript REST API",
        description = "The course activity's Transcript API, persisted and validated; plus wirescope's own endpoints under /api.",
        license(name = "MIT"),
    ),
    paths(
        transcripts::list,
        transcripts::create,
        transcripts::get_transcript,
        transcripts::delete,
        transcripts::add_grade,
        transcripts::get_grade,
        transcripts::student_ids,
        crate::health::health,
        crate::changes::get_changes,
        crate::changes::stream_changes,
        crate::lab::report,
        crate::lab::start,
        crate::lab::stop,
        crate::lab::changes,
        crate::lab::stream,
        crate::sessions::list,
        crate::sessions::events,
        crate::sessions::export,
        crate::sessions::export_with,
    ),
    components(schemas(InvalidParameters, ValidationFailed, ErrorBody)),
    tags(
        (name = "transcripts", description = "Students, their transcripts and grades"),
        (name = "server", description = "wirescope's own endpoints"),
        (name = "changes", description = "The transcripts' change feed, pulled (short and long polling) or pushed (Server-Sent Events)"),
        (name = "lab", description = "The pattern lab: a scratch store followed four ways"),
    ),
)]
struct ApiDoc;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        doc["info"]["version"] = Value::from(env!("CARGO_PKG_VERSION"));
        doc["components"]["responses"] = json!({
            "NotFound": error_response("No such path (e.g. an empty or extra path segment)"),
            "BadRequest": error_response("The path or query cannot be read (e.g. a percent-escape that is not UTF-8)"),
            "MethodNotAllowed": error_response("The path does not accept this method; `Allow` lists the ones it does"),
            "PayloadTooLarge": error_response("The body is larger than 1 MiB"),
            "UnsupportedMediaType": error_response("The body is not `application/json`"),
            "RequestTimeout": error_response("The body did not arrive in time (30 s)"),
            "ForeignOrigin": error_response("A browser page on another origin may not do this (see `--allow-origin`)"),
        });
        let paths = doc["paths"].as_object_mut().expect("the document has paths");
        for (path, item) in paths.iter_mut() {
            let open = ["/transcripts", "/studentids"].iter().any(|p| crate::paths::under(path, p));
            let Some(item) = item.as_object_mut() else { continue };
            for (method, op) in item.iter_mut() {
                if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                let has_body = op.get("requestBody").is_some();
                // Path and query parameters (a header such as If-None-Match is never a 400).
                let has_params = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| ps.iter().any(|p| matches!(p["in"].as_str(), Some("path" | "query"))));
                let responses = op["responses"].as_object_mut().expect("operations have responses");
                let mut add = |code: &str, name: &str| {
                    responses.entry(code).or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
                };
                add("404", "NotFound");
                add("405", "MethodNotAllowed");
                if has_params {
                    add("400", "BadRequest");
                }
                if has_body {
                    add("408", "RequestTimeout");
                    add("413", "PayloadTooLarge");
                    add("415", "UnsupportedMediaType");
                }
                if method != "get" && !open {
                    add("403", "ForeignOrigin");
                }
            }
        }
        doc
    })
}

/// `/api/openapi.json`.
pub fn routes() -> axum::Router {
    axum::Router::new().route("/api/openapi.json", axum::routing::get(get))
}

/// `GET /api/openapi.json`.
pub async fn get() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], axum::Json(document()))
}
