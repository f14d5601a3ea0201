//! One recorded event as the log keeps it: in the ring, on the live broadcast, to the writer.

/// One recorded event: its `seq`, its server time and its JSON (serialized once, shared by
/// every observer and the writer).
#[derive(Debug)]
pub struct Entry {
    pub seq: u64,
    pub server_us: i64,
    pub json: Box<str>,
}
