//! Where this browser's network modules write what they see, and where the observer stream
//! writes what the server saw: one reactive [`Timeline`] per page.

use leptos::prelude::*;
use protocol::EventKind;

use crate::clock::now_us;
use crate::model::{Filter, Timeline};

/// Largest body preview the browser keeps per message.
pub const PREVIEW_BYTES: usize = 4096;

/// How many rows the page keeps; older ones are counted, not kept.
pub const TIMELINE_CAPACITY: usize = 5_000;

/// The page's shared state: the timeline, the filter, the selected row, who we are. `Copy`,
/// so every closure can hold one.
#[derive(Debug, Clone, Copy)]
pub struct Recorder {
    timeline: RwSignal<Timeline>,
    pub filter: RwSignal<Filter>,
    pub selected: RwSignal<Option<crate::model::ItemKey>>,
    pub nickname: RwSignal<String>,
    /// The nickname as last saved (what the server knows).
    pub saved_nickname: RwSignal<String>,
    client: StoredValue<String>,
    next_exchange: StoredValue<u64>,
}

impl Recorder {
    pub fn new(client: String, nickname: String) -> Self {
        Self {
            timeline: RwSignal::new(Timeline::new(client.clone(), TIMELINE_CAPACITY)),
            filter: RwSignal::new(Filter::default()),
            selected: RwSignal::new(None),
            saved_nickname: RwSignal::new(nickname.clone()),
            nickname: RwSignal::new(nickname),
            client: StoredValue::new(client),
            next_exchange: StoredValue::new(crate::identity::first_exchange_id()),
        }
    }

    /// The recorder provided by [`crate::App`].
    pub fn from_context() -> Self {
        expect_context::<Recorder>()
    }

    pub fn timeline(&self) -> RwSignal<Timeline> {
        self.timeline
    }

    /// This browser's client id.
    pub fn client(&self) -> String {
        self.client.get_value()
    }

    /// A fresh id for an exchange or connection this browser starts (sent to the server so
    /// the two records of it can be joined).
    pub fn exchange(&self) -> u64 {
        let id = self.next_exchange.get_value();
        self.next_exchange.set_value(id + 1);
        id
    }

    /// Records `kind` as seen now by this browser, for its exchange `exchange`.
    pub fn record(&self, exchange: u64, kind: EventKind) {
        let at = now_us();
        self.timeline.update(|t| {
            t.add_local(exchange, kind, at);
        });
    }

    pub fn clear(&self) {
        self.selected.set(None);
        self.timeline.update(Timeline::clear);
    }
}
