//! The app's event log: what this browser recorded, in order, bounded.

use protocol::{Event, EventKind, Stamps};

/// An ordered, bounded list of [`Event`]s with strictly increasing `seq`.
///
/// Holds at most `capacity` events (plus a quarter of slack, so trimming is amortised); older
/// ones are dropped from the front and counted in [`EventLog::earlier`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventLog {
    events: Vec<Event>,
    capacity: usize,
    next_seq: u64,
    next_exchange: u64,
    earlier: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        Self { events: Vec::new(), capacity: capacity.max(1), next_seq: 1, next_exchange: 1, earlier: 0 }
    }

    /// A fresh correlation id for a new exchange or connection.
    pub fn next_exchange(&mut self) -> u64 {
        let id = self.next_exchange;
        self.next_exchange += 1;
        id
    }

    /// Appends an event and returns its `seq`.
    pub fn record(&mut self, client: &str, exchange: u64, at: Stamps, kind: EventKind) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Event { seq, client: client.to_owned(), exchange, at, kind });
        if self.events.len() > self.capacity + self.capacity / 4 {
            let cut = self.events.len() - self.capacity;
            self.events.drain(..cut);
            self.earlier += cut as u64;
        }
        seq
    }

    /// The events held, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many events were recorded before the oldest one still held.
    pub fn earlier(&self) -> u64 {
        self.earlier
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Forgets every event; `seq` and exchange ids keep counting up, so nothing is reused.
    pub fn clear(&mut self) {
        self.earlier = 0;
        self.events.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Failure, Side};

    fn kind() -> EventKind {
        EventKind::Failure(Failure { from: Side::Client, message: "x".into() })
    }

    #[test]
    fn seq_and_exchange_ids_strictly_increase_even_across_clear() {
        let mut log = EventLog::new(10);
        let ex = log.next_exchange();
        let a = log.record("me", ex, Stamps::default(), kind());
        let b = log.record("me", ex, Stamps::default(), kind());
        assert!(b > a);
        log.clear();
        assert!(log.is_empty());
        let ex2 = log.next_exchange();
        let c = log.record("me", ex2, Stamps::default(), kind());
        assert!(c > b && ex2 > ex);
        assert_eq!(log.events()[0].seq, c);
    }

    #[test]
    fn the_log_is_bounded_and_counts_what_it_dropped() {
        let mut log = EventLog::new(100);
        for _ in 0..1000 {
            log.record("me", 1, Stamps::default(), kind());
        }
        assert!(log.len() <= 125, "{}", log.len());
        assert_eq!(log.earlier() + log.len() as u64, 1000);
        let seqs: Vec<u64> = log.events().iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(*seqs.last().unwrap(), 1000);
    }
}
