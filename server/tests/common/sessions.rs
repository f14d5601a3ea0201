//! One contract for recorded sessions, over HTTP, whichever keeps them: one server's event
//! database, or a cluster's board and stream (then `others` are the other replicas, which must
//! list the same sessions).

use std::net::SocketAddr;

use super::{http, http_with, until};

fn as_instructor(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let (status, _, body) = http_with(addr, method, path, &[("Authorization", &auth)], body).unwrap();
    (status, body)
}

/// Every session as the instructor lists it, newest first: (id, name, ended, published).
fn sessions(addr: SocketAddr, token: &str) -> Vec<(u64, String, bool, bool)> {
    let (status, body) = as_instructor(addr, token, "GET", "/api/sessions", None);
    assert_eq!(status, 200, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    list.iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap().to_owned();
            (s["id"].as_u64().unwrap(), name, !s["endedUs"].is_null(), s["published"].as_bool().unwrap())
        })
        .collect()
}

/// Session `id`'s events as the instructor reads them.
fn events(addr: SocketAddr, token: &str, id: u64) -> String {
    let (status, body) = as_instructor(addr, token, "GET", &format!("/api/sessions/{id}/events"), None);
    assert_eq!(status, 200, "{body}");
    body
}

fn lane(client: &str) -> String {
    format!(r#""client":"{client}""#)
}

/// The contract (blocking: call it from a blocking thread). `tag` keeps the lanes of one run
/// apart from another's.
pub fn contract(addr: SocketAddr, others: &[SocketAddr], token: &str, tag: &str) {
    let (one, two) = (format!("c-{tag}-one"), format!("c-{tag}-two"));
    let get_as = |client: &str| {
        let status = http_with(addr, "GET", "/transcripts/1", &[("X-Wirescope-Client", client)], None);
        assert_eq!(status.unwrap().0, 200);
    };
    // A session is being recorded, and what is captured goes into it.
    let first = sessions(addr, token).first().expect("a session is being recorded").0;
    get_as(&one);
    until("the request is in the session", || events(addr, token, first).contains(&lane(&one)));

    // A new session ends that one; what comes next goes into the new one only.
    let (status, body) =
        as_instructor(addr, token, "POST", "/api/instructor/session", Some(r#"{"name":"second"}"#));
    assert_eq!(status, 204, "{body}");
    let list = sessions(addr, token);
    let second = list[0].0;
    assert_eq!((list[0].1.as_str(), list[0].2), ("second", false), "{list:?}");
    assert!(list.iter().any(|s| s.0 == first && s.2), "the first one ended: {list:?}");
    get_as(&two);
    until("the next request is in the new session", || events(addr, token, second).contains(&lane(&two)));
    let earlier = events(addr, token, first);
    assert!(earlier.contains(&lane(&one)) && !earlier.contains(&lane(&two)), "{earlier}");
    for other in others {
        until("another replica lists the same sessions", || sessions(*other, token) == sessions(addr, token));
        assert!(events(*other, token, second).contains(&lane(&two)), "read through another replica");
    }

    // Students see the current session only, until the instructor publishes an earlier one.
    let (_, public) = http(addr, "GET", "/api/sessions", None);
    assert!(!public.contains(&format!(r#""id":{first},"#)), "{public}");
    assert_eq!(http(addr, "GET", &format!("/api/sessions/{first}/events"), None).0, 403);
    let publish = format!("/api/instructor/sessions/{first}/publish");
    assert_eq!(as_instructor(addr, token, "POST", &publish, Some(r#"{"published":true}"#)).0, 204);
    let (status, body) = http(addr, "GET", &format!("/api/sessions/{first}/events"), None);
    assert_eq!(status, 200);
    assert!(body.contains(&lane(&one)), "{body}");

    // Renamed; exported; the one being recorded cannot be deleted, an earlier one can.
    let path = format!("/api/instructor/sessions/{first}");
    assert_eq!(as_instructor(addr, token, "PATCH", &path, Some(r#"{"name":"renamed"}"#)).0, 204);
    assert!(sessions(addr, token).iter().any(|s| s.0 == first && s.1 == "renamed"));
    let (status, trace) = http(addr, "GET", "/api/sessions/current/export?format=trace", None);
    assert_eq!(status, 200);
    assert!(trace.contains(&lane(&two)) && !trace.contains(&lane(&one)), "the current session's");
    let current = format!("/api/instructor/sessions/{second}");
    assert_eq!(as_instructor(addr, token, "DELETE", &current, None).0, 400);
    assert_eq!(as_instructor(addr, token, "DELETE", &path, None).0, 204);
    assert!(!sessions(addr, token).iter().any(|s| s.0 == first), "deleted");
    assert_eq!(as_instructor(addr, token, "GET", &format!("/api/sessions/{first}/events"), None).0, 404);
    assert_eq!(as_instructor(addr, token, "DELETE", "/api/instructor/sessions/999999", None).0, 404);
}
