//! Turns what a client sent into the store's inputs, or says exactly what is wrong with it.
//!
//! Every problem is reported under the name the client wrote (`studentName`,
//! `grades[0].grade`, `studentID`), and all problems of a request are reported at once.

use std::collections::BTreeMap;

use protocol::{CourseGrade, StudentId};
use serde_json::Value;

/// Longest student name or course name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Field name → what is wrong with it.
pub type Problems = BTreeMap<String, String>;

/// A string that must be present, non-blank and not too long.
fn name(v: Option<&Value>, field: &str, problems: &mut Problems) -> Option<String> {
    let problem = match v {
        None => "is required",
        Some(Value::String(s)) if s.trim().is_empty() => "must not be empty",
        Some(Value::String(s)) if s.chars().count() > MAX_NAME_CHARS => "must be at most 200 characters",
        Some(Value::String(s)) => return Some(s.clone()),
        Some(_) => "must be a string",
    };
    problems.insert(field.to_owned(), problem.to_owned());
    None
}

fn grade(v: Option<&Value>, field: &str, problems: &mut Problems) -> Option<f64> {
    match v {
        Some(Value::Number(n)) => {
            // serde_json's numbers are finite; an integer too big for f64 still converts.
            n.as_f64()
        }
        None => {
            problems.insert(field.to_owned(), "is required".to_owned());
            None
        }
        Some(_) => {
            problems.insert(field.to_owned(), "must be a number".to_owned());
            None
        }
    }
}

fn unknown_keys(obj: &serde_json::Map<String, Value>, known: &[&str], prefix: &str, problems: &mut Problems) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        problems.insert(format!("{prefix}{key}"), "is not a known property".to_owned());
    }
}

/// The body of `POST /transcripts`: `{studentName, grades?: [{course, grade}]}`.
pub fn new_transcript(body: &Value) -> Result<(String, Vec<CourseGrade>), Problems> {
    let mut problems = Problems::new();
    let Value::Object(obj) = body else {
        problems.insert("body".to_owned(), "must be a JSON object with studentName".to_owned());
        return Err(problems);
    };
    unknown_keys(obj, &["studentName", "grades"], "", &mut problems);
    let student_name = name(obj.get("studentName"), "studentName", &mut problems);
    let mut grades = Vec::new();
    match obj.get("grades") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("grades[{i}]");
                let Value::Object(g) = item else {
                    problems.insert(at, "must be an object with course and grade".to_owned());
                    continue;
                };
                unknown_keys(g, &["course", "grade"], &format!("{at}."), &mut problems);
                let course = name(g.get("course"), &format!("{at}.course"), &mut problems);
                let grade = grade(g.get("grade"), &format!("{at}.grade"), &mut problems);
                if let (Some(course), Some(grade)) = (course, grade) {
                    grades.push(CourseGrade::new(course, grade));
                }
            }
        }
        Some(_) => {
            problems.insert("grades".to_owned(), "must be an array".to_owned());
        }
    }
    match student_name {
        Some(n) if problems.is_empty() => Ok((n, grades)),
        _ => Err(problems),
    }
}

/// The body of `POST /transcripts/{studentID}/{courseNumber}`: a bare JSON number.
pub fn grade_body(body: &Value, problems: &mut Problems) -> Option<f64> {
    match body {
        Value::Number(n) => n.as_f64(),
        Value::Object(_) => {
            problems.insert("grade".to_owned(), "must be a bare number (e.g. 90), not an object".to_owned());
            None
        }
        _ => {
            problems.insert("grade".to_owned(), "must be a number".to_owned());
            None
        }
    }
}

/// The `{studentID}` path segment.
pub fn student_id(raw: &str, problems: &mut Problems) -> Option<StudentId> {
    match raw.parse::<StudentId>() {
        Ok(id) => Some(id),
        Err(_) => {
            problems.insert("studentID".to_owned(), "must be an integer".to_owned());
            None
        }
    }
}

/// The `{courseNumber}` path segment (already percent-decoded).
pub fn course(raw: &str, problems: &mut Problems) -> Option<String> {
    name(Some(&Value::String(raw.to_owned())), "courseNumber", problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(body: Value) -> Problems {
        new_transcript(&body).unwrap_err()
    }

    #[test]
    fn a_valid_body_passes_with_or_without_grades() {
        let (n, g) = new_transcript(&json!({"studentName": "dana"})).unwrap();
        assert_eq!((n.as_str(), g.len()), ("dana", 0));
        let (_, g) =
            new_transcript(&json!({"studentName": "dana", "grades": [{"course": "A B", "grade": 9.5}]}))
                .unwrap();
        assert_eq!(g, [CourseGrade::new("A B", 9.5)]);
    }

    #[test]
    fn each_problem_is_named_as_the_client_wrote_it() {
        assert_eq!(problems(json!({})), Problems::from([("studentName".into(), "is required".into())]));
        assert_eq!(problems(json!({"studentName": 5}))["studentName"], "must be a string");
        assert_eq!(problems(json!({"studentName": "  "}))["studentName"], "must not be empty");
        assert_eq!(
            problems(json!({"studentName": "x".repeat(201)}))["studentName"],
            "must be at most 200 characters"
        );
        assert_eq!(problems(json!({"studentName": "d", "age": 3}))["age"], "is not a known property");
        assert_eq!(problems(json!({"studentName": "d", "grades": {}}))["grades"], "must be an array");
        let p = problems(json!({"studentName": "d", "grades": [
            {"course": "A", "grade": "90"}, 7, {"grade": 1, "extra": true}
        ]}));
        assert_eq!(p["grades[0].grade"], "must be a number");
        assert_eq!(p["grades[1]"], "must be an object with course and grade");
        assert_eq!(p["grades[2].course"], "is required");
        assert_eq!(p["grades[2].extra"], "is not a known property");
        assert_eq!(p.len(), 4);
        assert!(problems(json!([1, 2])).contains_key("body"));
    }

    #[test]
    fn path_segments_and_bare_grades() {
        let mut p = Problems::new();
        assert_eq!(student_id("42", &mut p), Some(42));
        assert_eq!(student_id("-3", &mut p), Some(-3));
        assert!(p.is_empty());
        assert_eq!(student_id("1.5", &mut p), None);
        assert_eq!(student_id("99999999999999999999", &mut p), None);
        assert_eq!(p["studentID"], "must be an integer");
        let mut p = Problems::new();
        assert_eq!(grade_body(&json!(88), &mut p), Some(88.0));
        assert_eq!(grade_body(&json!("88"), &mut p), None);
        assert_eq!(p["grade"], "must be a number");
        assert_eq!(course("Intro 101", &mut p).as_deref(), Some("Intro 101"));
        assert_eq!(course(" ", &mut p), None);
        assert_eq!(p["courseNumber"], "must not be empty");
    }
}
