//! Where things are on the wire: the API prefixes, the observer stream's path, and the
//! headers by which a client names itself and its exchanges.

/// Path prefixes that belong to the server's APIs; the app is never served under them.
pub const API_PREFIXES: [&str; 4] = ["/api", "/ws", "/transcripts", "/studentids"];
/// The observer stream (never captured itself), the events socket, and the headers by which
/// a client names itself and its exchanges: shared with the app.
pub use protocol::{CLIENT_HEADER, EVENTS_PATH, EXCHANGE_HEADER, OBSERVE_PATH};
/// Where the instructor's routes live (all of them need the token).
pub const INSTRUCTOR_PREFIX: &str = "/api/instructor";
/// The pattern lab's controls.
pub const LAB_PATH: &str = "/api/lab";

/// True when `path` is `prefix` itself or lies below it (`/api`, `/api/…`), not `/apixyz`.
pub fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a path belongs to the APIs (and is captured), not to the app's files.
pub fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|p| under(path, p))
}

/// The health check.
pub const HEALTH_PATH: &str = "/api/health";
/// Marks a balancer's health check (`wirescope balancer-config` sends it): not captured.
pub const PROBE_HEADER: &str = "x-wirescope-probe";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_prefixes_match_whole_segments() {
        assert!(is_api_path("/api"));
        assert!(is_api_path("/api/health"));
        assert!(is_api_path("/ws/echo"));
        assert!(is_api_path("/transcripts/1/x"));
        assert!(is_api_path("/studentids"));
        assert!(!is_api_path("/apis"));
        assert!(!is_api_path("/docs"));
        assert!(!is_api_path("/"));
    }
}
