//! `/ws/echo`: a WebSocket that sends every text and binary message straight back.
//!
//! Pings are answered with pongs and a client's close frame with the same close code (both by
//! the WebSocket implementation itself). A message over 1 MiB closes with 1009, invalid UTF-8
//! with 1007. When the server stops, open echoes are closed with 1001 Going Away.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::limits::MAX_MESSAGE_BYTES;
use crate::shutdown::Shutdown;
use crate::ws::{Message, WebSocket, WebSocketUpgrade};

/// `/ws/echo`.
pub fn routes() -> Router<Shutdown> {
    Router::new().route("/ws/echo", get(upgrade))
}

pub async fn upgrade(ws: WebSocketUpgrade, State(shutdown): State<Shutdown>) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES).on_upgrade(move |socket| echo(socket, shutdown))
}

async fn echo(mut socket: WebSocket, shutdown: Shutdown) {
    loop {
        let msg = tokio::select! {
            msg = socket.recv() => msg,
            () = shutdown.wait() => {
                socket.close(1001, "server shutting down").await;
                return;
            }
        };
        let reply = match msg {
            Some(Ok(Message::Text(text))) => Message::Text(text),
            Some(Ok(Message::Binary(bytes))) => Message::Binary(bytes),
            // Pongs are queued by the implementation; a close frame is answered with the same
            // code on the next read, which then ends the stream.
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                socket.fail(&e).await;
                return;
            }
            None => return,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
