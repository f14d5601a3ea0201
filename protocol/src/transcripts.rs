//! The course activity's Transcript REST API: its data, exactly as it travels.
//!
//! Field names are the activity's (`studentID`, `studentName`, `course`, `grade`), so the
//! activity's own clients work unchanged.

use serde::{Deserialize, Serialize, Serializer};

/// A student's id: assigned by the server, never reused within a database.
pub type StudentId = i64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"studentID": 1, "studentName": "avery"})))]
pub struct Student {
    #[serde(rename = "studentID")]
    pub student_id: StudentId,
    #[serde(rename = "studentName")]
    pub student_name: String,
}

/// One course's grade. A transcript holds at most one grade per course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"course": "DemoClass", "grade": 100})))]
pub struct CourseGrade {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub course: String,
    #[serde(serialize_with = "grade_number")]
    pub grade: f64,
}

impl CourseGrade {
    pub fn new(course: impl Into<String>, grade: f64) -> Self {
        Self { course: course.into(), grade }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "student": {"studentID": 1, "studentName": "avery"},
    "grades": [{"course": "DemoClass", "grade": 100}, {"course": "DemoClass2", "grade": 100}]
})))]
pub struct Transcript {
    pub student: Student,
    pub grades: Vec<CourseGrade>,
}

/// Body of `POST /transcripts`. Unknown properties are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "studentName": "dana",
    "grades": [{"course": "DemoClass", "grade": 92}]
})))]
pub struct NewTranscript {
    #[serde(rename = "studentName")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub student_name: String,
    /// Optional; at most one grade per course.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grades: Vec<CourseGrade>,
}

/// Grades are JSON numbers; whole ones are written without a fraction (`100`, not `100.0`),
/// as the activity's server writes them.
pub fn grade_number<S: Serializer>(grade: &f64, s: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer up to here is exact
    if grade.fract() == 0.0 && grade.abs() <= EXACT {
        s.serialize_i64(*grade as i64)
    } else {
        s.serialize_f64(*grade)
    }
}

/// The activity's seed data, in id order: what a new database holds.
pub fn seed() -> Vec<(&'static str, Vec<CourseGrade>)> {
    vec![
        ("avery", vec![CourseGrade::new("DemoClass", 100.0), CourseGrade::new("DemoClass2", 100.0)]),
        ("blake", vec![CourseGrade::new("DemoClass", 80.0)]),
        ("blake", vec![CourseGrade::new("DemoClass", 85.0), CourseGrade::new("DemoClass2", 40.0)]),
        ("casey", vec![CourseGrade::new("DemoClass", 100.0)]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_use_the_activity_field_names() {
        let t = Transcript {
            student: Student { student_id: 3, student_name: "blake".into() },
            grades: vec![CourseGrade::new("DemoClass", 85.0), CourseGrade::new("Intro 101", 92.5)],
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"student":{"studentID":3,"studentName":"blake"},"grades":[{"course":"DemoClass","grade":85},{"course":"Intro 101","grade":92.5}]}"#
        );
        assert_eq!(serde_json::from_str::<Transcript>(&json).unwrap(), t);
    }

    #[test]
    fn new_transcripts_refuse_unknown_fields_and_default_grades() {
        let t: NewTranscript = serde_json::from_str(r#"{"studentName":"dana"}"#).unwrap();
        assert!(t.grades.is_empty());
        assert!(serde_json::from_str::<NewTranscript>(r#"{"studentName":"d","age":3}"#).is_err());
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"studentName":"dana"}"#);
    }

    #[test]
    fn the_seed_has_one_grade_per_course() {
        let seed = seed();
        assert_eq!(seed.len(), 4);
        for (_, grades) in &seed {
            let mut courses: Vec<&str> = grades.iter().map(|g| g.course.as_str()).collect();
            courses.sort_unstable();
            courses.dedup();
            assert_eq!(courses.len(), grades.len());
        }
    }

    #[test]
    fn big_and_fractional_grades_stay_exact() {
        let g = |x: f64| serde_json::to_string(&CourseGrade::new("c", x)).unwrap();
        let big: CourseGrade = serde_json::from_str(&g(1e300)).unwrap();
        assert_eq!(big.grade, 1e300);
        assert_eq!(g(-0.5), r#"{"course":"c","grade":-0.5}"#);
        assert_eq!(g(-3.0), r#"{"course":"c","grade":-3}"#);
    }
}
