//! Mermaid `sequenceDiagram` text: numbered messages, lost ones ending in `x`, fault and
//! outage notes as notes, and what a status or close code means the first time it appears.
//!
//! Written in two passes over the same events: [`Cast`] finds the participants (so the server
//! is the rightmost one and every part of a long session declares them all), then
//! [`MermaidWriter`] writes. A session longer than Mermaid's default `maxTextSize` is split into
//! complete diagrams, one after the other in the same file, separated by [`SEPARATOR`].
//! WebSocket pings and pongs are left out.

use std::collections::HashSet;

use protocol::event::close_code_meaning;
use protocol::{Event, EventKind, NoteKind, Side};

use crate::Writer;
use crate::describe::{label, status_meaning};
use crate::names::{Names, SERVER_LANE};

/// Mermaid's default `maxTextSize`.
pub const MERMAID_LIMIT: usize = 50_000;
/// Between two diagrams of one long session.
pub const SEPARATOR: &str = "\n%% ---- the session continues in the next diagram ----\n\n";

/// Text that Mermaid shows as written: its own syntax characters, markup and directive
/// openers become entity codes, line breaks become spaces.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ';' => out.push_str("#59;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#60;"),
            '>' => out.push_str("#62;"),
            '"' => out.push_str("#34;"),
            '%' => out.push_str("#37;"),
            '{' => out.push_str("#123;"),
            '}' => out.push_str("#125;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Whether an event is drawn in Mermaid at all.
fn drawn(e: &Event) -> bool {
    match &e.kind {
        EventKind::WsFrame(f) => !f.opcode.is_control(),
        EventKind::Note(n) => n.what != NoteKind::Highlight,
        // The sequence diagram is the client's view: steps inside the system are left out.
        EventKind::Hop(_) => false,
        k => k.is_message(),
    }
}

/// The participants of a session (first pass): client lanes in order of appearance, and
/// what each is called.
#[derive(Debug, Clone, Default)]
pub struct Cast {
    order: Vec<String>,
    seen: HashSet<String>,
    names: Names,
}

impl Cast {
    /// `names`: what the lanes were called before the first event.
    pub fn new(names: Names) -> Self {
        Self { names, ..Self::default() }
    }

    pub fn see(&mut self, e: &Event) {
        if let EventKind::Client(info) = &e.kind {
            self.names.set(&e.client, info.clone());
        }
        if drawn(e) && e.client != SERVER_LANE && !e.client.is_empty() && self.seen.insert(e.client.clone()) {
            self.order.push(e.client.clone());
        }
    }
}

/// Writes Mermaid text event by event (after a [`Cast`] has seen the same events).
#[derive(Debug)]
pub struct MermaidWriter {
    header: String,
    aliases: std::collections::HashMap<String, String>,
    part_len: usize,
    part_has_lines: bool,
    explained: HashSet<(bool, u16)>,
}

impl MermaidWriter {
    /// `me`: the exporting browser's client id (titled by its nickname, else "You").
    pub fn new(me: &str, cast: &Cast) -> Self {
        let mut header = String::from("sequenceDiagram\n    autonumber\n");
        let mut aliases = std::collections::HashMap::new();
        for (n, client) in cast.order.iter().enumerate() {
            let alias = format!("C{n}");
            header.push_str(&format!("    participant {alias} as {}\n", text(&cast.names.title(client, me))));
            aliases.insert(client.clone(), alias);
        }
        header.push_str("    participant S as Server\n");
        Self { header, aliases, part_len: 0, part_has_lines: false, explained: HashSet::new() }
    }

    fn alias(&self, client: &str) -> &str {
        self.aliases.get(client).map_or("S", String::as_str)
    }

    fn line(&mut self, line: String, out: &mut String) {
        if self.part_has_lines && self.part_len + line.len() >= MERMAID_LIMIT {
            out.push_str(SEPARATOR);
            out.push_str(&self.header);
            self.part_len = self.header.len();
            self.part_has_lines = false;
            self.explained.clear();
        }
        self.part_len += line.len();
        self.part_has_lines = true;
        out.push_str(&line);
    }

    /// "What it means", once per status (or close code) per diagram.
    fn explain(&mut self, close: bool, code: u16, c: &str, meaning: &str, out: &mut String) {
        if self.explained.insert((close, code)) {
            let over = if c == "S" { "S".to_owned() } else { format!("{c},S") };
            self.line(format!("    Note over {over}: {}\n", text(meaning)), out);
        }
    }
}

impl Writer for MermaidWriter {
    fn begin(&mut self, out: &mut String) {
        out.push_str(&self.header);
        self.part_len = self.header.len();
    }

    fn event(&mut self, e: &Event, out: &mut String) {
        if !drawn(e) {
            return;
        }
        let c = self.alias(&e.client).to_owned();
        let (words, _) = label(&e.kind);
        if let EventKind::Note(_) = e.kind {
            let over = if c == "S" { "S".to_owned() } else { format!("{c},S") };
            self.line(format!("    Note over {over}: {}\n", text(&words)), out);
            return;
        }
        let lost =
            matches!(e.kind, EventKind::Failure(_)) || matches!(&e.kind, EventKind::WsClose(w) if !w.clean);
        let from_client = e.kind.from() == Side::Client;
        let (from, to) = if from_client { (c.as_str(), "S") } else { ("S", c.as_str()) };
        let arrow = match (lost, from_client) {
            (true, _) => "-x",
            (false, true) => "->>",
            (false, false) => "-->>",
        };
        self.line(format!("    {from}{arrow}{to}: {}\n", text(&words)), out);
        match &e.kind {
            EventKind::HttpResponse(r) => self.explain(false, r.status, &c, status_meaning(r.status), out),
            EventKind::WsClose(w) => {
                if let Some(info) = &w.close {
                    let meaning = format!("{} {}", info.code, close_code_meaning(info.code));
                    self.explain(true, info.code, &c, &meaning, out);
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, _out: &mut String) {}
}
