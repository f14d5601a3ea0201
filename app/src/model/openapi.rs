//! The API page's view of an OpenAPI document: its operations as fillable forms.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub location: In,
    pub required: bool,
    pub description: String,
    /// `integer`, `string`, …
    pub kind: String,
    /// What the form starts with.
    pub example: String,
}

/// One operation (method + path) of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: String,
    pub method: String,
    /// The templated path, e.g. `/transcripts/{studentID}`.
    pub path: String,
    pub summary: String,
    pub tag: String,
    pub params: Vec<Param>,
    /// The request body's example, pretty-printed, when the operation takes a body.
    pub body_example: Option<String>,
    pub body_description: String,
    /// Status code → description, in code order.
    pub responses: Vec<(String, String)>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Follows a local `$ref` (`#/components/...`) once.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(path) => path.split('/').fold(doc, |node, key| &node[key]),
        None => v,
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The operations of `doc`, in document order (methods in the order GET, POST, PUT, PATCH,
/// DELETE within a path).
pub fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    let Some(paths) = doc["paths"].as_object() else { return out };
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(doc, p))
                        .filter_map(|p| {
                            let location = match p["in"].as_str()? {
                                "path" => In::Path,
                                "query" => In::Query,
                                _ => return None,
                            };
                            let schema = resolve(doc, &p["schema"]);
                            let kind = text(&schema["type"]);
                            let example = match (p.get("example"), schema.get("example")) {
                                (Some(e), _) | (None, Some(e)) => text(e),
                                (None, None) if kind == "integer" => "1".to_owned(),
                                _ => String::new(),
                            };
                            Some(Param {
                                name: text(&p["name"]),
                                location,
                                required: p["required"].as_bool().unwrap_or(location == In::Path),
                                description: text(&p["description"]),
                                kind,
                                example,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = op.get("requestBody").map(|b| resolve(doc, b));
            let body_example = body.map(|b| {
                let media = &b["content"]["application/json"];
                let example = media.get("example").or_else(|| resolve(doc, &media["schema"]).get("example"));
                example.map(pretty).unwrap_or_default()
            });
            let mut responses: Vec<(String, String)> = op["responses"]
                .as_object()
                .map(|rs| {
                    rs.iter().map(|(code, r)| (code.clone(), text(&resolve(doc, r)["description"]))).collect()
                })
                .unwrap_or_default();
            responses.sort();
            out.push(Operation {
                id: op["operationId"].as_str().map_or_else(|| format!("{method} {path}"), str::to_owned),
                method: method.to_uppercase(),
                path: path.clone(),
                summary: text(&op["summary"]),
                tag: op["tags"][0].as_str().unwrap_or("").to_owned(),
                params,
                body_example,
                body_description: body.map(|b| text(&b["description"])).unwrap_or_default(),
                responses,
            });
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Operation {
    /// The URL for these form values: path parameters filled in (encoded), query parameters
    /// appended (empty optional ones left out). A required parameter left empty is an error.
    pub fn url(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut path = self.path.clone();
        let mut query = Vec::new();
        for p in &self.params {
            let v = values.get(&p.name).map(String::as_str).unwrap_or("");
            if v.is_empty() && p.required && p.location == In::Path {
                return Err(format!("{} is required", p.name));
            }
            match p.location {
                In::Path => path = path.replace(&format!("{{{}}}", p.name), &encode(v)),
                In::Query if v.is_empty() && !p.required => {}
                In::Query => query.push(format!("{}={}", encode(&p.name), encode(v))),
            }
        }
        if query.is_empty() { Ok(path) } else { Ok(format!("{path}?{}", query.join("&"))) }
    }
}

/// Text with `code` in backticks, as pieces: `(is_code, text)`. An unmatched backtick stays.
pub fn code_spans(text: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(a) = rest.find('`') {
        let Some(len) = rest[a + 1..].find('`') else { break };
        if a > 0 {
            out.push((false, rest[..a].to_owned()));
        }
        out.push((true, rest[a + 1..a + 1 + len].to_owned()));
        rest = &rest[a + 2 + len..];
    }
    if !rest.is_empty() {
        out.push((false, rest.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/transcripts": {
                    "get": {"operationId": "listTranscripts", "summary": "All", "tags": ["transcripts"],
                            "responses": {"200": {"description": "ok"}, "404": {"$ref": "#/components/responses/NotFound"}}},
                    "post": {"operationId": "addStudent", "tags": ["transcripts"],
                             "requestBody": {"description": "who", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewTranscript"}}}},
                             "responses": {"200": {"description": "id"}}}
                },
                "/transcripts/{studentID}/{courseNumber}": {
                    "post": {"operationId": "addGrade",
                             "parameters": [
                                 {"name": "studentID", "in": "path", "required": true, "schema": {"type": "integer"}},
                                 {"name": "courseNumber", "in": "path", "required": true, "example": "DemoClass3", "schema": {"type": "string"}}
                             ],
                             "requestBody": {"content": {"application/json": {"example": 88, "schema": {"type": "number"}}}},
                             "responses": {"204": {"description": "done"}}}
                },
                "/studentids": {
                    "get": {"parameters": [{"name": "name", "in": "query", "required": true, "example": "blake", "schema": {"type": "string"}}],
                            "responses": {"200": {"description": "ids"}}}
                }
            },
            "components": {
                "schemas": {"NewTranscript": {"type": "object", "example": {"studentName": "dana"}}},
                "responses": {"NotFound": {"description": "No such path"}}
            }
        })
    }

    #[test]
    fn backticks_become_code() {
        assert_eq!(
            code_spans("Only changes after `since`, or `wait`"),
            [
                (false, "Only changes after ".to_owned()),
                (true, "since".to_owned()),
                (false, ", or ".to_owned()),
                (true, "wait".to_owned())
            ]
        );
        assert_eq!(code_spans("a `b"), [(false, "a `b".to_owned())]);
        assert!(code_spans("").is_empty());
    }

    #[test]
    fn operations_are_read_in_order_with_examples() {
        let ops = operations(&doc());
        let names: Vec<(&str, &str)> = ops.iter().map(|o| (o.method.as_str(), o.path.as_str())).collect();
        assert_eq!(
            names,
            [
                ("GET", "/transcripts"),
                ("POST", "/transcripts"),
                ("POST", "/transcripts/{studentID}/{courseNumber}"),
                ("GET", "/studentids"),
            ]
        );
        assert_eq!(
            ops[0].responses,
            [("200".to_owned(), "ok".to_owned()), ("404".to_owned(), "No such path".to_owned())]
        );
        assert_eq!(ops[0].body_example, None);
        assert_eq!(
            ops[1].body_example.as_deref(),
            Some("{\n  \"studentName\": \"dana\"\n}"),
            "example from the $ref'd schema"
        );
        assert_eq!(ops[1].body_description, "who");
        assert_eq!(ops[2].body_example.as_deref(), Some("88"));
        assert_eq!(ops[2].params[0].example, "1", "integers start at 1");
        assert_eq!(ops[2].params[1].example, "DemoClass3");
        assert_eq!(ops[3].id, "get /studentids");
        assert_eq!(ops[3].params[0].location, In::Query);
    }

    #[test]
    fn urls_fill_and_encode_parameters() {
        let ops = operations(&doc());
        let values = BTreeMap::from([
            ("studentID".to_owned(), "5".to_owned()),
            ("courseNumber".to_owned(), "Intro 101/a".to_owned()),
        ]);
        assert_eq!(ops[2].url(&values).unwrap(), "/transcripts/5/Intro%20101%2Fa");
        assert_eq!(ops[2].url(&BTreeMap::new()).unwrap_err(), "studentID is required");
        let q = BTreeMap::from([("name".to_owned(), "jo ann&x".to_owned())]);
        assert_eq!(ops[3].url(&q).unwrap(), "/studentids?name=jo%20ann%26x");
        assert_eq!(
            ops[3].url(&BTreeMap::new()).unwrap(),
            "/studentids?name=",
            "a required query is sent even when empty"
        );
        assert_eq!(ops[0].url(&BTreeMap::new()).unwrap(), "/transcripts");
    }

    #[test]
    fn encoding_keeps_unreserved_characters() {
        assert_eq!(encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(encode("é /?"), "%C3%A9%20%2F%3F");
    }
}
