//! The server's clock, as every event and note reads it.

/// Microseconds since the Unix epoch, by the server's clock.
pub fn now_us() -> protocol::Micros {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Stamps of something the server saw now.
pub fn server_now() -> protocol::Stamps {
    protocol::Stamps { client_us: None, server_us: Some(now_us()) }
}

/// `HH:MM:SS` (UTC) of a time in µs, for names.
pub fn time_of_day(us: protocol::Micros) -> String {
    let s = us.div_euclid(1_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}
