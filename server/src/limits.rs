//! Sizes and rates the server holds every client to, in one place.

use std::time::Duration;

/// Largest request body accepted: 1 MiB.
pub const BODY_LIMIT: usize = 1 << 20;
/// Largest WebSocket message (and frame) accepted by default; bigger ones close with 1009.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Chat lines a client may send in [`CHAT_WINDOW`] (the default of `--chat-limit`).
pub const CHAT_LIMIT: usize = 5;
pub const CHAT_WINDOW: Duration = Duration::from_secs(10);
/// Nickname changes a client may make in [`NAME_WINDOW`].
pub const NAME_LIMIT: usize = 3;
pub const NAME_WINDOW: Duration = Duration::from_secs(60);
/// Longest nickname kept, in characters.
pub const NICKNAME_CHARS: usize = 40;
/// Clients described by the registry; later ones are still captured, but not described.
pub const MAX_CLIENTS: usize = 50_000;
/// A request body may take this long (`Config::body_grace`) before it must keep up
/// [`MIN_BODY_RATE`] on average; one that trickles in slower is cut with 408, and nobody else
/// waits for it.
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// Bytes a second a request body must average once its grace is over (a phone on a weak
/// signal sends far more; a client sending a byte a second is cut).
pub const MIN_BODY_RATE: f64 = 1024.0;

/// When the next bytes of a body begun at `start`, of which `received` arrived, are due.
pub fn body_due(start: tokio::time::Instant, grace: Duration, received: usize) -> tokio::time::Instant {
    start + grace + Duration::from_secs_f64(received as f64 / MIN_BODY_RATE)
}
