//! Words for events: arrow labels, tones, status meanings (shared with the server's exports).

pub use export::describe::*;
