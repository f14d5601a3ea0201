//! Serving the router on a listener: one HTTP/1.1 connection task per client (with upgrades
//! for WebSocket), the client's address attached to every request, graceful shutdown.
//!
//! Our own accept loop instead of `axum::serve`, so an upgraded connection is a plain
//! `TcpStream` again (see [`crate::ws`]): thousands of observers then cost no HTTP buffers.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::Shutdown;

/// Serves `app` on `listener` until `shutdown` fires; then stops accepting, lets open requests
/// finish (connections close once idle) and returns when they have.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let Ok(res) = app.oneshot(req).await;
                    // A fault asked for no answer at all: failing the service closes the
                    // connection without a response.
                    if res.extensions().get::<crate::faults::DropConnection>().is_some() {
                        return Err(std::io::Error::other("connection dropped on purpose (fault)"));
                    }
                    Ok::<_, std::io::Error>(res)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                () = shutdown.wait() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connection tasks as we go.
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}
