//! The WebSocket half of the wire tap: an IO wrapper that reads the frames going each way as
//! raw bytes, so every frame is recorded exactly as it crossed the wire (opcode, FIN, size,
//! payload preview), including pings, pongs, close frames and connections cut without one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use protocol::{CloseInfo, EventKind, Opcode, Side, WsClose, WsFrame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{FrameReader, RawFrame};
use crate::log::EventLog;

/// Where a tapped connection's frames are recorded. Put into the request's extensions by the
/// capture layer; the WebSocket upgrade takes it from there.
#[derive(Clone)]
pub struct Tap {
    pub(super) log: Arc<EventLog>,
    pub(super) client: Arc<str>,
    pub(super) exchange: u64,
    pub(super) client_ref: Option<u64>,
    pub(super) preview: usize,
    pub(super) secrets: Arc<crate::secrets::Secrets>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("client", &self.client).field("exchange", &self.exchange).finish()
    }
}

impl Tap {
    fn record(&self, kind: EventKind) {
        self.record_caused(None, kind);
    }

    fn record_caused(&self, cause: Option<u64>, kind: EventKind) {
        let at = crate::clock::server_now();
        self.log.record_caused(&self.client, self.exchange, self.client_ref, cause, at, kind);
    }

    fn frame(&self, from: Side, f: RawFrame, cause: Option<u64>) {
        let opcode = match f.opcode {
            RawFrame::TEXT => Opcode::Text,
            RawFrame::BINARY => Opcode::Binary,
            RawFrame::CONTINUATION => Opcode::Continuation,
            RawFrame::PING => Opcode::Ping,
            RawFrame::PONG => Opcode::Pong,
            RawFrame::CLOSE => {
                let close = f.close_info().map(|(code, reason)| CloseInfo {
                    code,
                    reason: self.secrets.scrub(&reason).into_owned(),
                });
                self.record(EventKind::WsClose(WsClose { from, close, clean: true }));
                return;
            }
            _ => Opcode::Binary,
        };
        let payload = self.secrets.preview(&f.head, f.size, self.preview);
        self.record_caused(cause, EventKind::WsFrame(WsFrame { from, opcode, fin: f.fin, payload }));
    }
}

/// An upgraded connection with a tap on both directions (or none: then it only passes bytes).
pub struct TapIo<T> {
    inner: T,
    tap: Option<Tap>,
    from_client: FrameReader,
    from_server: FrameReader,
    frames: Vec<RawFrame>,
    closed: [bool; 2],
    client_eof: bool,
    /// The exchange that caused the frames being written now (see [`TapIo::set_cause`]).
    cause: Option<u64>,
}

impl<T> TapIo<T> {
    pub fn new(inner: T, tap: Option<Tap>) -> Self {
        // Enough of each payload to scrub a secret that straddles the preview's cut.
        let limit = tap.as_ref().map_or(0, |t| t.preview.saturating_add(t.secrets.margin()));
        Self {
            inner,
            tap,
            from_client: FrameReader::new(limit),
            from_server: FrameReader::new(limit),
            frames: Vec::new(),
            closed: [false; 2],
            client_eof: false,
            cause: None,
        }
    }

    /// The server frames written from now on were set off by exchange `cause` (or by nothing).
    pub fn set_cause(&mut self, cause: Option<u64>) {
        self.cause = cause;
    }

    /// Frames are always read (cheaply: without a tap no payload is kept), so the socket
    /// knows when the client's close frame went by even when nothing is recorded.
    fn saw(&mut self, from: Side, bytes: &[u8]) {
        let reader = match from {
            Side::Client => &mut self.from_client,
            Side::Server => &mut self.from_server,
        };
        reader.feed(bytes, &mut self.frames);
        for f in self.frames.drain(..) {
            let close = f.opcode == RawFrame::CLOSE;
            if let Some(tap) = &self.tap {
                let cause = if from == Side::Server { self.cause } else { None };
                tap.frame(from, f, cause);
            }
            if close {
                self.closed[from as usize] = true;
            }
        }
    }

    /// The client's close frame has gone by.
    pub fn client_closed(&self) -> bool {
        self.closed[Side::Client as usize]
    }

    /// The client closed its side of the connection.
    pub fn client_eof(&self) -> bool {
        self.client_eof
    }
}

impl<T> Drop for TapIo<T> {
    fn drop(&mut self) {
        if let Some(tap) = &self.tap
            && !(self.closed[0] && self.closed[1])
        {
            // No complete close handshake: the connection was cut (1006 for both ends).
            let from = if self.client_eof { Side::Client } else { Side::Server };
            tap.record(EventKind::WsClose(WsClose { from, close: None, clean: false }));
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TapIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let filled = buf.filled();
            if filled.len() == before {
                self.client_eof = true;
            } else {
                self.saw(Side::Client, &filled[before..]);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TapIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            let n = *n;
            self.saw(Side::Server, &buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
