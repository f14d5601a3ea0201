//! Where the network modules write what they see: one reactive [`EventLog`] per browser tab.

use leptos::prelude::*;
use protocol::{EventKind, Stamps};

use crate::clock::now_us;
use crate::model::EventLog;

/// How many events the page keeps; older ones are counted, not kept.
pub const LOG_CAPACITY: usize = 2_000;

/// Lane key of this browser in its own log.
pub const SELF_CLIENT: &str = "self";

/// Stamps events with this browser's clock and appends them to the log. `Copy`, so every
/// closure can hold one.
#[derive(Debug, Clone, Copy)]
pub struct Recorder {
    log: RwSignal<EventLog>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self { log: RwSignal::new(EventLog::new(LOG_CAPACITY)) }
    }

    /// The recorder provided by [`crate::App`].
    pub fn from_context() -> Self {
        expect_context::<Recorder>()
    }

    pub fn log(&self) -> RwSignal<EventLog> {
        self.log
    }

    /// A fresh correlation id for an exchange or connection this browser starts.
    pub fn exchange(&self) -> u64 {
        self.log.try_update(|l| l.next_exchange()).unwrap_or_default()
    }

    /// Records `kind` as happening now, by this browser's clock.
    pub fn record(&self, exchange: u64, kind: EventKind) {
        let at = Stamps { client_us: Some(now_us()), server_us: None };
        self.log.update(|l| {
            l.record(SELF_CLIENT, exchange, at, kind);
        });
    }

    pub fn clear(&self) {
        self.log.update(EventLog::clear);
    }
}
