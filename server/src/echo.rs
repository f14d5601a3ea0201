//! `/ws/echo`: a WebSocket that sends every text and binary message straight back.
//!
//! Pings are answered with pongs and a client's close frame with the same close code (both by
//! the WebSocket implementation itself). When the server stops, open echoes are closed with
//! 1001 Going Away.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;

use crate::{AppState, Shutdown};

/// Largest message the echo accepts; bigger ones close the socket with 1009 Message Too Big.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let shutdown = state.shutdown().clone();
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| echo(socket, shutdown))
}

async fn echo(mut socket: WebSocket, shutdown: Shutdown) {
    loop {
        let msg = tokio::select! {
            msg = socket.recv() => msg,
            () = shutdown.wait() => {
                going_away(socket).await;
                return;
            }
        };
        let reply = match msg {
            Some(Ok(Message::Text(text))) => Message::Text(text),
            Some(Ok(Message::Binary(bytes))) => Message::Binary(bytes),
            // Pongs are queued by the implementation; a close frame is answered with the same
            // code on the next read, which then ends the stream.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => continue,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "echo socket ended with an error");
                return;
            }
            None => return,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

/// Closes with 1001 and waits briefly for the client's answering close frame.
async fn going_away(mut socket: WebSocket) {
    let frame = CloseFrame { code: 1001, reason: "server shutting down".into() };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        let drain = async { while let Some(Ok(_)) = socket.recv().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}
