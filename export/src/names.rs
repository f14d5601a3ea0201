//! What each lane is called: a client's nickname, else what it is and where it came from.

use std::collections::HashMap;

use protocol::ClientInfo;

/// Lane key of the server (and of the server's own notes), as `protocol` names it.
pub use protocol::SERVER_LANE;

/// The clients seen, by lane key, as their latest `client` event describes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    clients: HashMap<String, ClientInfo>,
}

impl Names {
    /// Names from `(client, nickname)` pairs (a trace's `names`).
    pub fn from_nicknames<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let clients = pairs
            .into_iter()
            .map(|(c, n)| (c, ClientInfo { nickname: Some(n), ..ClientInfo::default() }))
            .collect();
        Self { clients }
    }

    /// Notes what a `client` event says of `client`.
    pub fn set(&mut self, client: &str, info: ClientInfo) {
        self.clients.insert(client.to_owned(), info);
    }

    pub fn get(&self, client: &str) -> Option<&ClientInfo> {
        self.clients.get(client)
    }

    pub fn nickname(&self, client: &str) -> Option<&str> {
        self.get(client).and_then(|i| i.nickname.as_deref()).filter(|n| !n.is_empty())
    }

    /// Every nickname, by client.
    pub fn nicknames(&self) -> impl Iterator<Item = (&str, &str)> {
        self.clients
            .iter()
            .filter_map(|(c, i)| i.nickname.as_deref().filter(|n| !n.is_empty()).map(|n| (c.as_str(), n)))
    }

    /// A lane's title in an export: the nickname; for the exporting browser without one, "You";
    /// for a program without an id, its kind and pseudonym; else the id, shortened.
    pub fn title(&self, client: &str, me: &str) -> String {
        if client == SERVER_LANE {
            return "Server".to_owned();
        }
        if let Some(n) = self.nickname(client) {
            return n.to_owned();
        }
        if client == me {
            return "You".to_owned();
        }
        if let Some(which) = program(client) {
            return format!("{} · {which}", agent_of(self.get(client)));
        }
        cut(client, 12)
    }
}

/// For the lane of a program without an id, what tells it apart: its pseudonym (`anon:…`), or
/// the address of a trace recorded before pseudonyms (`addr:…`).
pub fn program(client: &str) -> Option<&str> {
    client.strip_prefix("anon:").or_else(|| client.strip_prefix("addr:"))
}

/// What kind of program a client is: as recorded, else from a user agent an older trace kept.
pub fn agent_of(info: Option<&ClientInfo>) -> &str {
    match info {
        Some(ClientInfo { agent: Some(a), .. }) => a,
        Some(ClientInfo { user_agent: Some(ua), .. }) => agent_name(ua),
        _ => "client",
    }
}

/// `s` cut to `max_chars` characters, the last one an ellipsis when anything was cut.
pub fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `curl/8.5.0` → `curl`; browsers by family.
pub fn agent_name(ua: &str) -> &'static str {
    let l = ua.to_ascii_lowercase();
    if l.starts_with("curl") {
        "curl"
    } else if l.contains("python") {
        "python"
    } else if l.contains("postman") {
        "Postman"
    } else if l.contains("wrk") {
        "wrk"
    } else if l.contains("node") || l.contains("undici") {
        "node"
    } else if l.contains("mozilla") {
        "browser"
    } else {
        "client"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_prefer_the_nickname() {
        let mut n = Names::from_nicknames([("c-ana".to_owned(), "Ana".to_owned())]);
        n.set("addr:10.0.0.7", ClientInfo { user_agent: Some("curl/8.5".into()), ..ClientInfo::default() });
        assert_eq!(n.title("c-ana", "me"), "Ana");
        assert_eq!(n.title("me", "me"), "You");
        assert_eq!(n.title("addr:10.0.0.7", "me"), "curl · 10.0.0.7");
        assert_eq!(n.title("c-htv8myu4uzabc", "me"), "c-htv8myu4u…");
        assert_eq!(n.title(SERVER_LANE, "me"), "Server");
        n.set("c-ana", ClientInfo::default());
        assert_eq!(n.nickname("c-ana"), None, "a name taken back is gone");
    }
}
