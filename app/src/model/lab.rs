//! The lab page's arithmetic: per-second figures from a run's report, bar geometry for the
//! plots, slider scales, and this browser's own measurements as a subscriber.

use protocol::Micros;
use protocol::lab::{LabReport, PatternReport};

/// Display names, in report order.
pub fn pattern_name(key: &str) -> &'static str {
    match key {
        "shortPoll" => "Short polling",
        "longPoll" => "Long polling",
        "sse" => "Server-Sent Events",
        "webSocket" => "WebSocket",
        _ => "?",
    }
}

/// One pattern, per second of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub name: &'static str,
    pub requests_per_s: f64,
    pub overhead_per_s: f64,
    pub payload_per_s: f64,
    pub messages_per_s: f64,
    pub stale_p50: Option<f64>,
    pub stale_p95: Option<f64>,
    pub open: u32,
    pub summary: String,
}

pub fn rows(r: &LabReport) -> Vec<Row> {
    let s = r.seconds.max(0.001);
    r.patterns
        .iter()
        .map(|p: &PatternReport| Row {
            key: p.pattern.clone(),
            name: pattern_name(&p.pattern),
            requests_per_s: p.counts.requests as f64 / s,
            overhead_per_s: p.counts.overhead_bytes as f64 / s,
            payload_per_s: p.counts.payload_bytes as f64 / s,
            messages_per_s: p.counts.server_messages as f64 / s,
            stale_p50: p.staleness_p50_ms,
            stale_p95: p.staleness_p95_ms,
            open: p.counts.open,
            summary: p.summary.clone(),
        })
        .collect()
}

/// A bar of a horizontal bar chart: its parts as fractions of the chart's width.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: &'static str,
    /// Widths (0..=1) of the stacked parts.
    pub parts: Vec<f64>,
    pub text: String,
}

/// Bars for `values` (each a stack of parts), scaled to the largest total.
pub fn bars(values: &[(&'static str, Vec<f64>)], format: impl Fn(f64) -> String) -> Vec<Bar> {
    let max = values.iter().map(|(_, v)| v.iter().sum::<f64>()).fold(0.0, f64::max);
    values
        .iter()
        .map(|(label, parts)| {
            let total: f64 = parts.iter().sum();
            Bar {
                label,
                parts: parts.iter().map(|p| if max > 0.0 { p / max } else { 0.0 }).collect(),
                text: format(total),
            }
        })
        .collect()
}

/// `1.2 kB/s`-style byte rates.
pub fn bytes(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.1} MB", x / 1e6),
        x if x >= 1e3 => format!("{:.1} kB", x / 1e3),
        x => format!("{x:.0} B"),
    }
}

/// Slider position 0..=100 ↔ a value on a logarithmic scale from `lo` to `hi`.
pub fn log_scale(pos: f64, lo: f64, hi: f64) -> f64 {
    lo * (hi / lo).powf(pos.clamp(0.0, 100.0) / 100.0)
}

pub fn log_position(value: f64, lo: f64, hi: f64) -> f64 {
    ((value / lo).ln() / (hi / lo).ln() * 100.0).clamp(0.0, 100.0)
}

/// What this browser measured as a real subscriber of one pattern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub requests: u64,
    pub changes: u64,
    pub payload_bytes: u64,
    staleness: Vec<Micros>,
}

impl Measured {
    /// Changes received at `now` (server clock), in a message of `bytes` bytes.
    pub fn received(&mut self, at_us: &[Micros], now: Micros, bytes: usize) {
        self.payload_bytes += bytes as u64;
        for at in at_us {
            self.changes += 1;
            self.staleness.push((now - at).max(0));
            if self.staleness.len() > 2000 {
                self.staleness.remove(0);
            }
        }
    }

    pub fn p50_ms(&self) -> Option<f64> {
        let mut s = self.staleness.clone();
        s.sort_unstable();
        s.get(s.len() / 2).map(|us| *us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::lab::Counts;

    #[test]
    fn rows_are_per_second() {
        let r = LabReport {
            running: true,
            config: None,
            seconds: 2.0,
            changes: 4,
            failed: 0,
            problem: None,
            patterns: vec![PatternReport {
                pattern: "shortPoll".into(),
                counts: Counts {
                    requests: 40,
                    overhead_bytes: 2000,
                    payload_bytes: 600,
                    server_messages: 40,
                    deliveries: 8,
                    open: 0,
                },
                staleness_p50_ms: Some(500.0),
                staleness_p95_ms: Some(950.0),
                summary: "s.".into(),
            }],
        };
        let row = &rows(&r)[0];
        assert_eq!(
            (row.name, row.requests_per_s, row.overhead_per_s, row.payload_per_s),
            ("Short polling", 20.0, 1000.0, 300.0)
        );
    }

    #[test]
    fn bars_scale_to_the_largest_total() {
        let b = bars(&[("a", vec![30.0, 10.0]), ("b", vec![20.0]), ("c", vec![0.0])], |x| format!("{x}"));
        assert_eq!(b[0].parts, [0.75, 0.25]);
        assert_eq!(b[1].parts, [0.5]);
        assert_eq!(b[2].parts, [0.0]);
        assert_eq!(b[0].text, "40");
        assert!(bars(&[("z", vec![0.0])], |x| format!("{x}"))[0].parts[0] == 0.0);
    }

    #[test]
    fn log_sliders_round_trip() {
        assert!((log_scale(0.0, 0.05, 20.0) - 0.05).abs() < 1e-9);
        assert!((log_scale(100.0, 0.05, 20.0) - 20.0).abs() < 1e-9);
        let p = log_position(1.0, 0.05, 20.0);
        assert!((log_scale(p, 0.05, 20.0) - 1.0).abs() < 1e-9);
        assert_eq!(bytes(950.0), "950 B");
        assert_eq!(bytes(12_345.0), "12.3 kB");
    }

    #[test]
    fn measured_staleness() {
        let mut m = Measured::default();
        m.received(&[1000, 2000], 3000, 100);
        m.received(&[2500], 3000, 50);
        assert_eq!((m.changes, m.payload_bytes), (3, 150));
        assert_eq!(m.p50_ms(), Some(1.0));
    }
}
