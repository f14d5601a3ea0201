//! An incremental RFC 6455 frame reader for the wire tap: fed the raw bytes of one direction
//! of a WebSocket connection in whatever pieces they arrive, it reports every frame — opcode,
//! FIN, full payload size and the first bytes of its (unmasked) payload.

/// One frame as it crossed the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub opcode: u8,
    pub fin: bool,
    /// Payload size in bytes.
    pub size: u64,
    /// The first bytes of the payload, unmasked; at most the reader's preview limit.
    pub head: Vec<u8>,
}

impl RawFrame {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;

    /// For a close frame: its status code and reason, if it carries one.
    pub fn close_info(&self) -> Option<(u16, String)> {
        (self.opcode == Self::CLOSE && self.head.len() >= 2).then(|| {
            let code = u16::from_be_bytes([self.head[0], self.head[1]]);
            (code, String::from_utf8_lossy(&self.head[2..]).into_owned())
        })
    }
}

#[derive(Debug)]
enum State {
    /// Collecting the header; `need` is its full length once the first two bytes are known.
    Header {
        need: usize,
    },
    Payload {
        remaining: u64,
    },
}

/// Reads frames out of one direction's byte stream.
#[derive(Debug)]
pub struct FrameReader {
    limit: usize,
    state: State,
    header: [u8; 14],
    have: usize,
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    size: u64,
    offset: u64,
    head: Vec<u8>,
}

impl FrameReader {
    /// A reader keeping at most `limit` payload bytes per frame.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            state: State::Header { need: 2 },
            header: [0; 14],
            have: 0,
            fin: false,
            opcode: 0,
            mask: None,
            size: 0,
            offset: 0,
            head: Vec::new(),
        }
    }

    /// Feeds the next bytes; every frame they complete is pushed to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<RawFrame>) {
        while !data.is_empty() {
            match self.state {
                State::Header { need } => {
                    let take = (need - self.have).min(data.len());
                    self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
                    self.have += take;
                    data = &data[take..];
                    if self.have < need {
                        continue;
                    }
                    if need == 2 {
                        let masked = self.header[1] & 0x80 != 0;
                        let extra = match self.header[1] & 0x7f {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        } + if masked { 4 } else { 0 };
                        if extra > 0 {
                            self.state = State::Header { need: 2 + extra };
                            continue;
                        }
                    }
                    self.start_payload(out);
                }
                State::Payload { remaining } => {
                    let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(data.len());
                    let room = self.limit.saturating_sub(self.head.len()).min(take);
                    for &b in &data[..room] {
                        let m = self.mask.map_or(0, |k| k[(self.offset % 4) as usize]);
                        self.head.push(b ^ m);
                        self.offset += 1;
                    }
                    self.offset += (take - room) as u64;
                    data = &data[take..];
                    let remaining = remaining - take as u64;
                    self.state = State::Payload { remaining };
                    if remaining == 0 {
                        self.finish(out);
                    }
                }
            }
        }
    }

    fn start_payload(&mut self, out: &mut Vec<RawFrame>) {
        let h = &self.header;
        self.fin = h[0] & 0x80 != 0;
        self.opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let (size, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]), 10),
            n => (u64::from(n), 2),
        };
        self.mask = masked.then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        self.size = size;
        self.offset = 0;
        self.head = Vec::with_capacity(self.limit.min(usize::try_from(size).unwrap_or(usize::MAX)));
        self.have = 0;
        self.state = State::Payload { remaining: size };
        if size == 0 {
            self.finish(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<RawFrame>) {
        out.push(RawFrame {
            opcode: self.opcode,
            fin: self.fin,
            size: self.size,
            head: std::mem::take(&mut self.head),
        });
        self.state = State::Header { need: 2 };
        self.have = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a frame as a client (masked) or a server (unmasked) would.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut v = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => v.push(m | n as u8),
            n if n <= 0xffff => {
                v.push(m | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(m | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if let Some(k) = mask {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        } else {
            v.extend_from_slice(payload);
        }
        v
    }

    fn read_all(bytes: &[u8], chunk: usize, limit: usize) -> Vec<RawFrame> {
        let mut r = FrameReader::new(limit);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            r.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn frames_are_read_whatever_the_chunking() {
        let mut wire = frame(true, RawFrame::TEXT, b"hello", Some([1, 2, 3, 4]));
        wire.extend(frame(false, RawFrame::BINARY, &[7; 300], None));
        wire.extend(frame(true, RawFrame::CONTINUATION, &[8; 70_000], Some([9, 9, 9, 9])));
        wire.extend(frame(true, RawFrame::PING, b"", None));
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        wire.extend(frame(true, RawFrame::CLOSE, &close, Some([5, 6, 7, 8])));
        for chunk in [1, 2, 3, 7, 64, 1000, wire.len()] {
            let frames = read_all(&wire, chunk, 16);
            let summary: Vec<(u8, bool, u64)> = frames.iter().map(|f| (f.opcode, f.fin, f.size)).collect();
            assert_eq!(
                summary,
                [(1, true, 5), (2, false, 300), (0, true, 70_000), (9, true, 0), (8, true, 5)],
                "chunk {chunk}"
            );
            assert_eq!(frames[0].head, b"hello", "unmasked");
            assert_eq!(frames[1].head, [7; 16], "cut at the limit");
            assert_eq!(frames[2].head, [8; 16]);
            assert_eq!(frames[4].close_info(), Some((1000, "bye".to_owned())));
        }
    }

    #[test]
    fn a_frame_is_reported_only_when_complete() {
        let wire = frame(true, RawFrame::TEXT, b"abcdef", None);
        let mut r = FrameReader::new(64);
        let mut out = Vec::new();
        r.feed(&wire[..wire.len() - 1], &mut out);
        assert!(out.is_empty());
        r.feed(&wire[wire.len() - 1..], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].head, b"abcdef");
    }

    #[test]
    fn a_close_without_a_code_has_no_info() {
        let frames = read_all(&frame(true, RawFrame::CLOSE, b"", None), 5, 8);
        assert_eq!(frames[0].close_info(), None);
    }
}
