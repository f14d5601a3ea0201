//! wirescope's own trace: the events exactly as recorded, one per line, with the lane names.
//!
//! ```text
//! {"format":"wirescope-trace","version":2,"me":"c-…","events":[
//! {"seq":1,…},
//! {"seq":2,…}
//! ],"names":{"c-ana":"Ana"}}
//! ```
//! The names come last, so a trace is written as its events are read: a session of any size
//! streams out with one event in memory. Reading a trace and writing it again gives the same
//! bytes.

use std::collections::BTreeMap;

use protocol::{Event, EventKind};
use serde::{Deserialize, Serialize};

use crate::Writer;
use crate::names::Names;

pub const TRACE_FORMAT: &str = "wirescope-trace";
/// 2: events may be `hop`s (the inside view); a version-1 reader refuses such a trace by its
/// version, not by an unknown event.
pub const TRACE_VERSION: u32 = 2;

/// A trace, read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub format: String,
    pub version: u32,
    /// The client id of the browser that exported it (its lane is "This browser").
    pub me: String,
    pub events: Vec<Event>,
    /// Lane names: client id → nickname.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
}

impl Trace {
    /// Reads a trace; says what is wrong with one that is not.
    pub fn read(text: &str) -> Result<Trace, String> {
        let trace: Trace = serde_json::from_str(text).map_err(|e| format!("not a wirescope trace: {e}"))?;
        if trace.format != TRACE_FORMAT || trace.version > TRACE_VERSION {
            return Err(format!("unknown trace format {} v{}", trace.format, trace.version));
        }
        Ok(trace)
    }
}

/// Writes a trace event by event.
#[derive(Debug)]
pub struct TraceWriter {
    me: String,
    names: Names,
    /// The lanes the trace holds events of: only their names are written.
    lanes: std::collections::BTreeSet<String>,
    first: bool,
}

impl TraceWriter {
    /// `names`: the lanes' names before the first event (later `client` events update them).
    pub fn new(me: &str, names: Names) -> Self {
        Self { me: me.to_owned(), names, lanes: std::collections::BTreeSet::new(), first: true }
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

impl Writer for TraceWriter {
    fn begin(&mut self, out: &mut String) {
        out.push_str(&format!(
            "{{\"format\":\"{TRACE_FORMAT}\",\"version\":{TRACE_VERSION},\"me\":{},\"events\":[",
            json_str(&self.me)
        ));
    }

    fn event(&mut self, e: &Event, out: &mut String) {
        if let EventKind::Client(info) = &e.kind {
            self.names.set(&e.client, info.clone());
        }
        if !self.lanes.contains(&e.client) {
            self.lanes.insert(e.client.clone());
        }
        let Ok(json) = serde_json::to_string(e) else { return };
        out.push_str(if self.first { "\n" } else { ",\n" });
        self.first = false;
        out.push_str(&json);
    }

    fn end(&mut self, out: &mut String) {
        // Names of the lanes in this trace only: nobody else's nickname is exported with it.
        let names: BTreeMap<&str, &str> =
            self.names.nicknames().filter(|(c, _)| self.lanes.contains(*c)).collect();
        let names = serde_json::to_string(&names).unwrap_or_else(|_| "{}".to_owned());
        out.push_str(&format!("\n],\"names\":{names}}}\n"));
    }
}
