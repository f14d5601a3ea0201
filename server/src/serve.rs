//! Serving the router on a listener: one HTTP/1.1 connection task per client (with upgrades
//! for WebSocket), the client's address attached to every request, graceful shutdown.
//!
//! Our own accept loop instead of `axum::serve`, so an upgraded connection is a plain
//! `TcpStream` again (see [`crate::ws`]): thousands of observers then cost no HTTP buffers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::shutdown::Shutdown;

/// Where the server listens, once it is bound (join URLs, the rehearsal's students, exports'
/// origin). Cheap to clone; set once.
#[derive(Debug, Clone, Default)]
pub struct Listening(Arc<std::sync::OnceLock<std::net::SocketAddr>>);

impl Listening {
    pub fn set(&self, addr: std::net::SocketAddr) {
        let _ = self.0.set(addr);
    }

    pub fn get(&self) -> Option<std::net::SocketAddr> {
        self.0.get().copied()
    }
}

/// Put on a response to make the server close the connection instead of answering (a
/// fault). The capture layer records it as a cut connection.
#[derive(Debug, Clone)]
pub struct DropConnection(pub String);

/// A response that is never sent: [`serve`] closes the connection instead.
pub fn drop_connection(why: impl Into<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut res = axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    res.extensions_mut().insert(DropConnection(why.into()));
    res
}

/// The upgraded connections (WebSockets) still open. They outlive the HTTP connection they
/// came from, so [`serve`] counts them apart to wait for them at shutdown. Every request
/// carries it as an extension; [`crate::ws::WebSocketUpgrade`] holds an [`UpgradeGuard`]
/// while its socket runs.
#[derive(Clone, Default)]
pub struct Upgrades(Arc<UpgradesInner>);

#[derive(Default)]
struct UpgradesInner {
    open: AtomicUsize,
    idle: Notify,
}

impl std::fmt::Debug for Upgrades {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Upgrades").field(&self.open()).finish()
    }
}

/// One open upgraded connection; dropping it counts it closed.
pub struct UpgradeGuard(Arc<UpgradesInner>);

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Upgrades {
    pub fn guard(&self) -> UpgradeGuard {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        UpgradeGuard(self.0.clone())
    }

    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Resolves once no upgraded connection is open.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires; then stops accepting, lets open requests
/// finish (connections close once idle), and returns once they and every WebSocket (each told
/// to close with 1001 by the same signal) have ended.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    let upgrades = Upgrades::default();
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
        let upgrades = upgrades.clone();
        conns.spawn(async move {
            let lane = crate::identity::ConnectionLane::default();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(upgrades.clone());
                req.extensions_mut().insert(lane.clone());
                let app = app.clone();
                async move {
                    let Ok(res) = app.oneshot(req).await;
                    // A fault asked for no answer at all: failing the service closes the
                    // connection without a response.
                    if res.extensions().get::<DropConnection>().is_some() {
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
    if upgrades.open() > 0 {
        tracing::info!(open = upgrades.open(), "waiting for WebSockets to close");
    }
    upgrades.idle().await;
    Ok(())
}
