//! The pattern lab's arithmetic: N subscribers following one change feed by short polling,
//! long polling, Server-Sent Events and WebSocket, and what each pattern costs. Plain code
//! with explicit time, driven by the lab's task in real time.
//!
//! Bytes are counted from the sizes of the real messages each pattern sends: a browser's
//! request headers, this server's response headers, SSE's `id:`/`event:`/`data:` lines and
//! chunk framing, WebSocket frame headers and the `/ws/events` envelope.

use protocol::Micros;
use protocol::channel::Change;
use protocol::lab::Counts;

/// Request headers a browser sends with a `fetch` (measured from Chromium).
pub const REQUEST_HEADERS: u64 = 520;
/// Headers this server answers a JSON request with.
pub const RESPONSE_HEADERS: u64 = 160;
/// The WebSocket handshake, both ways.
pub const WS_HANDSHAKE: u64 = 620;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    ShortPoll,
    LongPoll,
    Sse,
    WebSocket,
}

impl Pattern {
    pub const ALL: [Pattern; 4] = [Pattern::ShortPoll, Pattern::LongPoll, Pattern::Sse, Pattern::WebSocket];

    /// Its name in the lab report.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::ShortPoll => "shortPoll",
            Pattern::LongPoll => "longPoll",
            Pattern::Sse => "sse",
            Pattern::WebSocket => "webSocket",
        }
    }
}

/// Most staleness samples kept per pattern (the newest).
const SAMPLES: usize = 4096;

/// What one pattern cost so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// What is reported.
    pub counts: Counts,
    /// Of `overhead_bytes`, what delivering changes cost (handshakes and idle polls excluded).
    pub change_overhead: u64,
    staleness: Vec<Micros>,
    next_sample: usize,
}

impl Counters {
    fn stale(&mut self, us: Micros) {
        if self.staleness.len() < SAMPLES {
            self.staleness.push(us);
        } else {
            self.staleness[self.next_sample] = us;
            self.next_sample = (self.next_sample + 1) % SAMPLES;
        }
    }

    /// Staleness percentile `p` (0..=1) in ms, over the newest samples.
    pub fn staleness_ms(&self, p: f64) -> Option<f64> {
        if self.staleness.is_empty() {
            return None;
        }
        let mut s = self.staleness.clone();
        s.sort_unstable();
        let i = ((s.len() - 1) as f64 * p).round() as usize;
        Some(s[i] as f64 / 1000.0)
    }
}

/// The size of one change as JSON.
pub fn change_bytes(c: &Change) -> u64 {
    serde_json::to_string(c).map_or(0, |s| s.len() as u64)
}

fn ws_frame_header(payload: u64) -> u64 {
    match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// `{"changes":[…],"latest":N}` around the changes, and the same in the `/ws/events` envelope
/// (`{"type":"labChanged","data":…,"seq":N,"atUs":N}`).
const POLL_WRAPPER: u64 = 26;
const WS_ENVELOPE: u64 = 55;

/// `id: N\nevent: labChanged\ndata: …\n\n` plus the chunk's size line.
fn sse_framing(c: &Change) -> u64 {
    let id = c.seq.to_string().len() as u64;
    4 + id + 1 + 18 + 6 + 2 + 8
}

/// N subscribers of each pattern, following one feed.
#[derive(Debug, Clone)]
pub struct Lab {
    pub subscribers: u32,
    /// Short polling period.
    pub poll_us: Micros,
    /// Changes so far (the newest ones; older ones every poller has seen are dropped).
    changes: Vec<Change>,
    /// Short pollers: next poll time and cursor (seq seen).
    pollers: Vec<(Micros, u64)>,
    /// Long-poll timeout, after which an idle long poll is answered empty and made again.
    pub long_wait_us: Micros,
    long_idle_since: Micros,
    pub counters: [Counters; 4],
}

impl Lab {
    /// Starts at `now`: pollers spread evenly over one period; long polls, SSE streams and
    /// WebSockets opened (their handshakes counted).
    pub fn new(subscribers: u32, poll_us: Micros, now: Micros) -> Self {
        let n = subscribers.max(1);
        let poll_us = poll_us.max(1);
        let pollers = (0..n).map(|i| (now + poll_us * i64::from(i) / i64::from(n), 0)).collect();
        let mut counters: [Counters; 4] = Default::default();
        let each = u64::from(n);
        // Long polling: one request outstanding per subscriber.
        counters[1].counts.requests = each;
        counters[1].counts.overhead_bytes = each * REQUEST_HEADERS;
        counters[1].counts.open = n;
        // SSE: one request, one response head, then a stream.
        counters[2].counts.requests = each;
        counters[2].counts.overhead_bytes = each * (REQUEST_HEADERS + RESPONSE_HEADERS);
        counters[2].counts.open = n;
        // WebSocket: one handshake each.
        counters[3].counts.requests = each;
        counters[3].counts.overhead_bytes = each * WS_HANDSHAKE;
        counters[3].counts.open = n;
        Self {
            subscribers: n,
            poll_us,
            changes: Vec::new(),
            pollers,
            long_wait_us: 25_000_000,
            long_idle_since: now,
            counters,
        }
    }

    /// A change happened at `change.at_us`; push patterns deliver it at `now`.
    pub fn change(&mut self, change: Change, now: Micros) {
        let n = u64::from(self.subscribers);
        let size = change_bytes(&change);
        let stale = (now - change.at_us).max(0);
        // Long polling: every outstanding request is answered, and made again.
        let lp = &mut self.counters[1];
        lp.counts.server_messages += n;
        lp.counts.deliveries += n;
        lp.counts.payload_bytes += n * size;
        lp.counts.overhead_bytes += n * (RESPONSE_HEADERS + POLL_WRAPPER + REQUEST_HEADERS);
        lp.change_overhead += n * (RESPONSE_HEADERS + POLL_WRAPPER + REQUEST_HEADERS);
        lp.counts.requests += n;
        lp.stale(stale);
        self.long_idle_since = now;
        // SSE: one event on each open stream.
        let sse = &mut self.counters[2];
        sse.counts.server_messages += n;
        sse.counts.deliveries += n;
        sse.counts.payload_bytes += n * size;
        sse.counts.overhead_bytes += n * sse_framing(&change);
        sse.change_overhead += n * sse_framing(&change);
        sse.stale(stale);
        // WebSocket: one frame on each open connection.
        let ws = &mut self.counters[3];
        ws.counts.server_messages += n;
        ws.counts.deliveries += n;
        ws.counts.payload_bytes += n * size;
        ws.counts.overhead_bytes += n * (ws_frame_header(size + WS_ENVELOPE) + WS_ENVELOPE);
        ws.change_overhead += n * (ws_frame_header(size + WS_ENVELOPE) + WS_ENVELOPE);
        ws.stale(stale);
        self.changes.push(change);
    }

    /// When the next short poll is due.
    pub fn next_poll(&self) -> Micros {
        self.pollers.iter().map(|p| p.0).min().unwrap_or(Micros::MAX)
    }

    /// Runs everything due by `now`: short polls, and long polls that timed out.
    pub fn advance(&mut self, now: Micros) {
        for i in 0..self.pollers.len() {
            while self.pollers[i].0 <= now {
                let (at, cursor) = self.pollers[i];
                let fresh: Vec<&Change> =
                    self.changes.iter().filter(|c| c.seq > cursor && c.at_us <= at).collect();
                let sp = &mut self.counters[0];
                sp.counts.requests += 1;
                sp.counts.server_messages += 1;
                sp.counts.overhead_bytes += REQUEST_HEADERS + RESPONSE_HEADERS + POLL_WRAPPER;
                for c in &fresh {
                    sp.counts.payload_bytes += change_bytes(c);
                    sp.counts.deliveries += 1;
                    sp.stale((at - c.at_us).max(0));
                }
                let newest = fresh.last().map_or(cursor, |c| c.seq);
                self.pollers[i] = (at + self.poll_us, newest);
            }
        }
        // Forget changes every poller has seen.
        let oldest = self.pollers.iter().map(|p| p.1).min().unwrap_or(0);
        self.changes.retain(|c| c.seq > oldest);
        // Long polls with nothing to say time out and are made again.
        while now - self.long_idle_since >= self.long_wait_us {
            self.long_idle_since += self.long_wait_us;
            let n = u64::from(self.subscribers);
            let lp = &mut self.counters[1];
            lp.counts.requests += n;
            lp.counts.server_messages += n;
            lp.counts.overhead_bytes += n * (RESPONSE_HEADERS + POLL_WRAPPER + REQUEST_HEADERS);
        }
    }
}

/// One sentence about what a pattern's numbers show, short enough to project.
pub fn verdict(pattern: Pattern, c: &Counters, _changes: u64, seconds: f64) -> String {
    // Overhead of one delivery (one change to one subscriber), setup excluded.
    let each =
        if c.counts.deliveries == 0 { 0.0 } else { c.change_overhead as f64 / c.counts.deliveries as f64 };
    let stale = c.staleness_ms(0.5).map_or("–".to_owned(), |ms| format!("{ms:.0} ms"));
    let rps = if seconds > 0.0 { c.counts.requests as f64 / seconds } else { 0.0 };
    match pattern {
        Pattern::ShortPoll => format!(
            "{rps:.0} requests/s whether anything changed or not; news waits {stale} (half a period) on average."
        ),
        Pattern::LongPoll => {
            format!(
                "Answers at once ({stale}), but each change costs every subscriber a new request and response ({each:.0} B)."
            )
        }
        Pattern::Sse => format!(
            "One open stream per subscriber; a change costs {each:.0} B of framing each; server to client only."
        ),
        Pattern::WebSocket => {
            format!(
                "One open connection per subscriber, both ways; a change costs {each:.0} B of framing each."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::channel::ChangeKind;

    fn change(seq: u64, at_us: Micros) -> Change {
        Change {
            seq,
            kind: ChangeKind::GradeAdded,
            student_id: 1,
            course: Some("C".into()),
            at_us,
            cause: None,
        }
    }

    #[test]
    fn short_polls_cost_requests_even_when_nothing_changes() {
        let mut lab = Lab::new(10, 1_000_000, 0);
        lab.advance(9_999_999);
        let sp = &lab.counters[0];
        assert_eq!(sp.counts.requests, 100, "10 subscribers × 10 polls");
        assert_eq!(sp.counts.deliveries, 0);
        assert_eq!(sp.counts.payload_bytes, 0);
        assert_eq!(sp.counts.overhead_bytes, 100 * (REQUEST_HEADERS + RESPONSE_HEADERS + POLL_WRAPPER));
        assert_eq!(lab.counters[3].counts.requests, 10, "WebSocket: only the handshakes");
    }

    #[test]
    fn staleness_is_the_wait_until_the_next_poll_for_pollers_and_nearly_nothing_for_push() {
        let mut lab = Lab::new(1, 1_000_000, 0);
        lab.advance(0); // first poll at 0
        lab.change(change(1, 100_000), 100_200);
        lab.advance(999_999);
        assert_eq!(lab.counters[0].counts.deliveries, 0, "not polled yet");
        lab.advance(1_000_000);
        assert_eq!(lab.counters[0].counts.deliveries, 1);
        assert_eq!(lab.counters[0].staleness_ms(0.5), Some(900.0));
        for p in 1..4 {
            assert_eq!(lab.counters[p].staleness_ms(0.5), Some(0.2), "{p}");
            assert_eq!(lab.counters[p].counts.deliveries, 1);
        }
    }

    #[test]
    fn push_wins_when_changes_are_frequent_and_polling_when_they_are_rare() {
        // 50 subscribers, polled once a second, for a minute.
        let run = |changes_per_s: f64| {
            let mut lab = Lab::new(50, 1_000_000, 0);
            let every = (1e6 / changes_per_s) as i64;
            let mut t = 0;
            let mut seq = 1;
            while t < 60_000_000 {
                t += every;
                lab.advance(t);
                lab.change(change(seq, t), t);
                seq += 1;
            }
            lab.advance(60_000_000);
            lab.counters.map(|c| c.counts.overhead_bytes + c.counts.payload_bytes)
        };
        let rare = run(0.05);
        assert!(rare[0] > rare[3], "even rare changes: WebSocket sends less than short polling");
        assert!(rare[1] < rare[0], "rare changes: long polling beats short polling on bytes");
        let frequent = run(20.0);
        assert!(frequent[3] < frequent[1] / 5, "frequent changes: WebSocket far below long polling");
        assert!(frequent[2] < frequent[1] / 5, "SSE far below long polling");
    }

    #[test]
    fn idle_long_polls_time_out_and_are_made_again() {
        let mut lab = Lab::new(4, 1_000_000, 0);
        lab.advance(60_000_000);
        assert_eq!(lab.counters[1].counts.requests, 4 + 2 * 4, "opened, then renewed twice in 60 s");
    }

    #[test]
    fn verdicts_are_short_sentences() {
        let mut lab = Lab::new(10, 500_000, 0);
        lab.change(change(1, 0), 1000);
        lab.advance(2_000_000);
        for (i, p) in Pattern::ALL.into_iter().enumerate() {
            let v = verdict(p, &lab.counters[i], 1, 2.0);
            assert!(v.len() < 140 && v.ends_with('.'), "{v}");
        }
    }
}
