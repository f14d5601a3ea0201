//! Values that must never be stored or shown (the instructor's token), and the one way text
//! and previews are scrubbed of them.

use std::borrow::Cow;
use std::sync::{PoisonError, RwLock};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values that must never appear in captured data (e.g. the instructor token).
#[derive(Debug, Default)]
pub struct Secrets(RwLock<Vec<String>>);

impl Secrets {
    pub fn add(&self, secret: impl Into<String>) {
        let s = secret.into();
        if !s.is_empty() {
            self.0.write().unwrap_or_else(PoisonError::into_inner).push(s);
        }
    }

    /// The longest secret, in bytes: a preview is scrubbed over this many bytes beyond its
    /// cut, so a secret that straddles the cut is still caught whole.
    pub fn margin(&self) -> usize {
        longest(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The preview of a message of `size` bytes whose first bytes are `head`: every secret
    /// replaced (in text and binary alike) before the preview is cut to `limit` bytes.
    pub fn preview(&self, head: &[u8], size: u64, limit: usize) -> protocol::Body {
        let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let window = &head[..head.len().min(limit.saturating_add(longest(&secrets)))];
        let mut body = if secrets.iter().any(|s| contains(window, s.as_bytes())) {
            let mut scrubbed = window.to_vec();
            for s in secrets.iter() {
                scrubbed = replace_bytes(&scrubbed, s.as_bytes(), REDACTED.as_bytes());
            }
            protocol::Body::capture(&scrubbed, limit)
        } else {
            protocol::Body::capture(window, limit)
        };
        body.truncated = body.truncated || (head.len().min(limit) as u64) < size;
        body.size = size;
        body
    }

    /// `text` itself when it holds no secret (no copy), else with every secret replaced.
    pub fn scrub_owned(&self, text: String) -> String {
        let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if !secrets.iter().any(|s| text.contains(s.as_str())) {
            return text;
        }
        let mut out = text;
        for s in secrets.iter() {
            out = out.replace(s.as_str(), REDACTED);
        }
        out
    }

    /// `text` with every secret replaced by `[redacted]`; `text` itself (no copy) when it
    /// holds none.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Cow::Borrowed(text);
        for s in secrets.iter().filter(|s| text.contains(s.as_str())) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
        out
    }
}

fn longest(secrets: &[String]) -> usize {
    secrets.iter().map(String::len).max().unwrap_or(0)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if !needle.is_empty() && hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_wherever_they_appear() {
        let s = Secrets::default();
        s.add("tok123");
        assert_eq!(s.scrub("Bearer tok123 and tok123"), "Bearer [redacted] and [redacted]");
        assert_eq!(s.scrub("nothing here"), "nothing here");
    }

    #[test]
    fn a_secret_straddling_the_preview_cut_leaves_no_part_behind() {
        let s = Secrets::default();
        s.add("ABCDEFGHIJKLMNOP");
        // The secret starts 3 bytes before the 10-byte cut.
        let msg = b"1234567ABCDEFGHIJKLMNOP tail";
        let p = s.preview(msg, msg.len() as u64, 10);
        assert_eq!((p.text.as_deref(), p.size, p.truncated), (Some("1234567[re"), msg.len() as u64, true));
        // Binary payloads are scrubbed before they are shown as hex.
        let bin = [&[0xff, 0x00][..], b"ABCDEFGHIJKLMNOP"].concat();
        let p = s.preview(&bin, bin.len() as u64, 64);
        let hex = p.hex.unwrap();
        assert!(!hex.contains(&"ABCDEFGH".bytes().map(|b| format!("{b:02x}")).collect::<String>()), "{hex}");
        // Without secrets, or without one in the message, the preview is the plain cut.
        let p = s.preview(b"plain text", 10, 5);
        assert_eq!((p.text.as_deref(), p.truncated), (Some("plain"), true));
        let p = Secrets::default().preview(b"plain text", 10, 64);
        assert_eq!((p.text.as_deref(), p.truncated), (Some("plain text"), false));
    }
}
