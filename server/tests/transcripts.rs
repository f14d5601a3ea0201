//! The Transcript REST API through the router: every route, every error.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestServer, body_bytes, body_json};
use serde_json::{Value, json};

fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn delete(uri: &str) -> Request<Body> {
    Request::delete(uri).body(Body::empty()).unwrap()
}

async fn status_and_json(s: &TestServer, req: Request<Body>) -> (StatusCode, Value) {
    let res = s.send(req).await;
    let status = res.status();
    (status, body_json(res).await)
}

fn validation(field: &str, reason: &str) -> Value {
    json!({"message": "Validation Failed", "details": {field: reason}})
}

fn invalid(details: &str) -> Value {
    json!({"message": "Invalid parameters", "details": details})
}

#[tokio::test]
async fn a_new_database_holds_the_activity_seed() {
    let s = TestServer::without_app();
    let res = s.get("/transcripts").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        body_json(res).await,
        json!([
            {"student": {"studentID": 1, "studentName": "avery"}, "grades": [{"course": "DemoClass", "grade": 100}, {"course": "DemoClass2", "grade": 100}]},
            {"student": {"studentID": 2, "studentName": "blake"}, "grades": [{"course": "DemoClass", "grade": 80}]},
            {"student": {"studentID": 3, "studentName": "blake"}, "grades": [{"course": "DemoClass", "grade": 85}, {"course": "DemoClass2", "grade": 40}]},
            {"student": {"studentID": 4, "studentName": "casey"}, "grades": [{"course": "DemoClass", "grade": 100}]},
        ])
    );
}

#[tokio::test]
async fn create_answers_the_new_id_as_a_bare_number() {
    let s = TestServer::without_app();
    let res = s.send(post_json("/transcripts", r#"{"studentName":"dana"}"#)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(body_bytes(res).await, b"5");
    let body = r#"{"studentName":"erin","grades":[{"course":"Intro 101","grade":92.5},{"course":"Networks","grade":88}]}"#;
    assert_eq!(status_and_json(&s, post_json("/transcripts", body)).await, (StatusCode::OK, json!(6)));
    assert_eq!(
        body_json(s.get("/transcripts/6").await).await,
        json!({"student": {"studentID": 6, "studentName": "erin"}, "grades": [{"course": "Intro 101", "grade": 92.5}, {"course": "Networks", "grade": 88}]})
    );
}

#[tokio::test]
async fn create_names_every_invalid_field() {
    let s = TestServer::without_app();
    let cases = [
        (r#"{}"#, validation("studentName", "is required")),
        (r#"{"studentName": 7}"#, validation("studentName", "must be a string")),
        (r#"{"studentName": " "}"#, validation("studentName", "must not be empty")),
        (r#"{"studentName": "d", "nickname": "x"}"#, validation("nickname", "is not a known property")),
        (
            r#"{"studentName": "d", "grades": [{"course": "A", "grade": "A+"}]}"#,
            validation("grades[0].grade", "must be a number"),
        ),
        (
            r#"{"studentName": "d", "grades": [{"course": "A", "grade": 1}, {"grade": 2}]}"#,
            validation("grades[1].course", "is required"),
        ),
        (r#"{"studentName": "d", "grades": 5}"#, validation("grades", "must be an array")),
    ];
    for (body, expected) in cases {
        assert_eq!(
            status_and_json(&s, post_json("/transcripts", body)).await,
            (StatusCode::UNPROCESSABLE_ENTITY, expected),
            "{body}"
        );
    }
    let (status, two) = status_and_json(&s, post_json("/transcripts", r#"{"studentName": 1, "x": 2}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(two["details"].as_object().unwrap().len(), 2, "all problems at once: {two}");
    assert_eq!(
        body_json(s.get("/transcripts").await).await.as_array().unwrap().len(),
        4,
        "nothing was stored"
    );
}

#[tokio::test]
async fn create_refuses_a_course_twice_and_malformed_or_foreign_bodies() {
    let s = TestServer::without_app();
    let dup = r#"{"studentName":"d","grades":[{"course":"A","grade":1},{"course":"A","grade":2}]}"#;
    assert_eq!(
        status_and_json(&s, post_json("/transcripts", dup)).await,
        (StatusCode::BAD_REQUEST, invalid(r#"course "A" appears more than once in grades"#))
    );
    let (status, body) = status_and_json(&s, post_json("/transcripts", r#"{"studentName":"#)).await;
    assert_eq!((status, &body["message"]), (StatusCode::BAD_REQUEST, &json!("Invalid parameters")));
    assert!(body["details"].as_str().unwrap().starts_with("malformed JSON"), "{body}");

    let form = Request::post("/transcripts")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"studentName":"d"}"#))
        .unwrap();
    let (status, body) = status_and_json(&s, form).await;
    assert_eq!(
        (status, &body["message"]),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, &json!("Unsupported Media Type"))
    );
    let bare = Request::post("/transcripts").body(Body::from(r#"{"studentName":"d"}"#)).unwrap();
    assert_eq!(s.send(bare).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = format!(r#"{{"studentName":"{}"}}"#, "x".repeat(server::extract::BODY_LIMIT));
    let (status, body) = status_and_json(&s, post_json("/transcripts", &huge)).await;
    assert_eq!((status, &body["message"]), (StatusCode::PAYLOAD_TOO_LARGE, &json!("Payload Too Large")));
    // Also when the size is not announced up front (a streamed body).
    let stream = futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let chunked = Request::post("/transcripts")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(s.send(chunked).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(s.get("/transcripts").await).await.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn get_one_transcript_and_its_errors() {
    let s = TestServer::without_app();
    assert_eq!(
        status_and_json(&s, Request::get("/transcripts/2").body(Body::empty()).unwrap()).await,
        (
            StatusCode::OK,
            json!({"student": {"studentID": 2, "studentName": "blake"}, "grades": [{"course": "DemoClass", "grade": 80}]})
        )
    );
    assert_eq!(body_json(s.get("/transcripts/99").await).await, invalid("no student with id 99"));
    assert_eq!(s.get("/transcripts/99").await.status(), StatusCode::BAD_REQUEST);
    for bad in ["abc", "1.5", "99999999999999999999999"] {
        let res = s.get(&format!("/transcripts/{bad}")).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(body_json(res).await, validation("studentID", "must be an integer"));
    }
}

#[tokio::test]
async fn delete_answers_204_then_the_student_is_gone_and_its_id_never_returns() {
    let s = TestServer::without_app();
    let res = s.send(delete("/transcripts/4")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(body_bytes(res).await.is_empty());
    assert_eq!(
        status_and_json(&s, delete("/transcripts/4")).await,
        (StatusCode::BAD_REQUEST, invalid("no student with id 4"))
    );
    assert_eq!(s.get("/transcripts/4").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(status_and_json(&s, delete("/transcripts/x")).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        status_and_json(&s, post_json("/transcripts", r#"{"studentName":"casey"}"#)).await.1,
        json!(5)
    );
}

#[tokio::test]
async fn grades_are_added_once_per_course_and_read_back_bare() {
    let s = TestServer::without_app();
    let res = s.send(post_json("/transcripts/2/Intro%20101", "91.5")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(body_bytes(s.get("/transcripts/2/Intro%20101").await).await, b"91.5");
    assert_eq!(body_bytes(s.get("/transcripts/1/DemoClass").await).await, b"100");
    let res = s.send(post_json("/transcripts/2/Intro%20101", "60")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(res).await, invalid(r#"student 2 already has a grade in course "Intro 101""#));
    assert_eq!(
        body_bytes(s.get("/transcripts/2/Intro%20101").await).await,
        b"91.5",
        "the first grade is kept"
    );

    assert_eq!(
        status_and_json(&s, post_json("/transcripts/77/X", "1")).await,
        (StatusCode::BAD_REQUEST, invalid("no student with id 77"))
    );
    assert_eq!(
        status_and_json(&s, post_json("/transcripts/2/X", r#""ninety""#)).await,
        (StatusCode::UNPROCESSABLE_ENTITY, validation("grade", "must be a number"))
    );
    let (status, both) = status_and_json(&s, post_json("/transcripts/two/X", "null")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(both["details"], json!({"studentID": "must be an integer", "grade": "must be a number"}));
    assert_eq!(status_and_json(&s, post_json("/transcripts/2/X", "9 0")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(status_and_json(&s, post_json("/transcripts/2/X", "")).await.0, StatusCode::BAD_REQUEST);

    assert_eq!(
        status_and_json(&s, Request::get("/transcripts/2/Nope").body(Body::empty()).unwrap()).await,
        (StatusCode::BAD_REQUEST, invalid(r#"student 2 has no grade in course "Nope""#))
    );
    assert_eq!(
        status_and_json(&s, Request::get("/transcripts/88/DemoClass").body(Body::empty()).unwrap()).await,
        (StatusCode::BAD_REQUEST, invalid("no student with id 88"))
    );
    assert_eq!(
        status_and_json(&s, Request::get("/transcripts/z/DemoClass").body(Body::empty()).unwrap()).await,
        (StatusCode::UNPROCESSABLE_ENTITY, validation("studentID", "must be an integer"))
    );
}

#[tokio::test]
async fn student_ids_by_exact_name() {
    let s = TestServer::without_app();
    assert_eq!(body_json(s.get("/studentids?name=blake").await).await, json!([2, 3]));
    assert_eq!(body_json(s.get("/studentids?name=Blake").await).await, json!([]));
    assert_eq!(body_json(s.get("/studentids?name=").await).await, json!([]));
    s.send(post_json("/transcripts", r#"{"studentName":"jo ann"}"#)).await;
    assert_eq!(body_json(s.get("/studentids?name=jo%20ann").await).await, json!([5]));
    let res = s.get("/studentids").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_json(res).await, validation("name", "is required"));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let s = TestServer::without_app();
    for path in ["/transcripts/1/DemoClass/x", "/transcripts/", "/studentids/1", "/api/nothing"] {
        let (status, body) = status_and_json(&s, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!((status, &body["message"]), (StatusCode::NOT_FOUND, &json!("Not Found")), "{path}");
    }
    let res = s.send(Request::put("/transcripts/1").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = res.headers()[header::ALLOW].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    assert_eq!(body_json(res).await["message"], "Method Not Allowed");
    assert_eq!(s.send(delete("/transcripts")).await.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.send(post_json("/studentids", "{}")).await.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn any_origin_may_call_the_transcript_api() {
    let s = TestServer::without_app();
    let res = s
        .send(
            Request::get("/transcripts/1")
                .header(header::ORIGIN, "http://localhost:5173")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let preflight = Request::options("/transcripts")
        .header(header::ORIGIN, "http://localhost:5173")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type,idempotency-key")
        .body(Body::empty())
        .unwrap();
    let res = s.send(preflight).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(res.headers()[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap().contains("POST"));
    let allowed = res.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("content-type") && allowed.contains("idempotency-key"), "{allowed}");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_error() {
    let s = TestServer::without_app();
    let doc = body_json(s.get("/api/openapi.json").await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = [
        // Reads: 304 for a client holding the current tag (If-None-Match).
        ("/transcripts", "get", &["200", "304", "404", "405"][..]),
        ("/transcripts", "post", &["200", "400", "404", "405", "408", "413", "415", "422"]),
        ("/transcripts/{studentID}", "get", &["200", "304", "400", "404", "405", "422"]),
        ("/transcripts/{studentID}", "delete", &["204", "400", "404", "405", "422"]),
        (
            "/transcripts/{studentID}/{courseNumber}",
            "post",
            &["204", "400", "404", "405", "408", "413", "415", "422"],
        ),
        ("/transcripts/{studentID}/{courseNumber}", "get", &["200", "304", "400", "404", "405", "422"]),
        ("/studentids", "get", &["200", "304", "400", "404", "405", "422"]),
        ("/api/health", "get", &["200", "404", "405"]),
        // A change outside the open transcript API: a foreign page's browser is refused (403).
        ("/api/lab", "post", &["200", "400", "403", "404", "405", "408", "413", "415", "422"]),
        ("/api/sessions", "get", &["200", "404", "405", "409"]),
    ];
    for (path, method, codes) in ops {
        let responses =
            doc["paths"][path][method]["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}"));
        let mut have: Vec<&str> = responses.keys().map(String::as_str).collect();
        have.sort_unstable();
        assert_eq!(have, codes, "{method} {path}");
    }
    for schema in [
        "Transcript",
        "Student",
        "CourseGrade",
        "NewTranscript",
        "InvalidParameters",
        "ValidationFailed",
        "ErrorBody",
        "Health",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let example =
        &doc["paths"]["/transcripts"]["post"]["requestBody"]["content"]["application/json"]["example"];
    let (status, _) = status_and_json(&s, post_json("/transcripts", &example.to_string())).await;
    assert_eq!(status, StatusCode::OK, "the documented example is accepted");
}
