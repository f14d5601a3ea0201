//! A server-wide "we are stopping" signal that long-lived connections can wait on.

use tokio::sync::watch;

/// Cloneable; [`Shutdown::trigger`] wakes every [`Shutdown::wait`]er, now and later.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self { tx: std::sync::Arc::new(watch::channel(false).0) }
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] has been called (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}
