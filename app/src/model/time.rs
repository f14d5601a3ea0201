//! Formatting of wirescope's microsecond timestamps.

use protocol::Micros;

/// A duration in µs as a short human label: `0 ms`, `3.1 ms`, `48 ms`, `1.204 s`, `2 min 5 s`.
pub fn duration(us: Micros) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    let body = if us < 10_000 {
        let ms = us as f64 / 1000.0;
        if us == 0 { "0 ms".to_owned() } else { format!("{ms:.1} ms") }
    } else if us < 1_000_000 {
        format!("{} ms", (us + 500) / 1000)
    } else if us < 60_000_000 {
        format!("{:.3} s", us as f64 / 1e6)
    } else {
        let s = us / 1_000_000;
        format!("{} min {} s", s / 60, s % 60)
    };
    format!("{sign}{body}")
}

/// Offset from a start time: `+0 ms`, `+3.1 ms`, …
pub fn offset(us: Micros, start: Micros) -> String {
    let d = us - start;
    if d < 0 { duration(d) } else { format!("+{}", duration(d)) }
}

/// Wall-clock time of day `HH:MM:SS.mmm`, shifted by `utc_offset_min` minutes (east positive).
pub fn clock(us: Micros, utc_offset_min: i32) -> String {
    let local = us + i64::from(utc_offset_min) * 60_000_000;
    let ms_of_day = (local.div_euclid(1000)).rem_euclid(86_400_000);
    let (h, m, s, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

pub use export::time::{iso, parse_iso};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(3_140), "3.1 ms");
        assert_eq!(duration(48_400), "48 ms");
        assert_eq!(duration(1_204_000), "1.204 s");
        assert_eq!(duration(125_000_000), "2 min 5 s");
        assert_eq!(duration(-2_000), "-2.0 ms");
    }

    #[test]
    fn offsets_are_signed() {
        assert_eq!(offset(1_000_500, 1_000_000), "+0.5 ms");
        assert_eq!(offset(1_000_000, 1_000_000), "+0 ms");
        assert_eq!(offset(999_000, 1_000_000), "-1.0 ms");
    }

    #[test]
    fn clock_shows_local_time_of_day() {
        // 2026-11-23T22:31:04.123456Z
        let t = 1_795_473_064_123_456;
        assert_eq!(clock(t, 0), "22:31:04.123");
        assert_eq!(clock(t, 60), "23:31:04.123");
        assert_eq!(clock(t, 120), "00:31:04.123");
        assert_eq!(clock(t, -600), "12:31:04.123");
    }
}
