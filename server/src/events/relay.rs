//! A hub's joins, leaves and chat lines passed between the replicas of a cluster, over one
//! plain NATS subject: members of one room talk whichever replica the balancer gave them.
//! Only the replicas running now matter (as for a connection), so nothing is kept in a stream;
//! each replica keeps the room history it heard. The queue to NATS is bounded: what does not
//! fit is dropped and counted in the log.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use protocol::channel::ServerMsg;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The subject every replica's hub publishes to and hears.
pub const SUBJECT: &str = "wirescope.hub";
/// Messages waiting to be published, at most.
pub const QUEUE: usize = 1024;

/// What takes in what the other replicas relayed (the hub implements it).
pub trait Hears: Send + Sync + 'static {
    fn hear(&self, msg: ServerMsg);
}

#[derive(Debug, Serialize, Deserialize)]
struct News {
    from: String,
    msg: ServerMsg,
}

/// This replica's end of the relay.
#[derive(Debug)]
pub struct Relay {
    tx: mpsc::Sender<Vec<u8>>,
    node: String,
    dropped: AtomicU64,
}

impl Relay {
    /// Passes `msg` on to the other replicas (dropped, and counted, when the queue is full).
    pub fn send(&self, msg: &ServerMsg) {
        let news = News { from: self.node.clone(), msg: msg.clone() };
        let Ok(json) = serde_json::to_vec(&news) else { return };
        if self.tx.try_send(json).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "hub: the relay to the other replicas is full; messages dropped");
            }
        }
    }

    /// Messages the full queue dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts relaying for the replica `node`: publishing what it sends, handing what the others
/// publish to `hub`.
pub fn start(client: async_nats::Client, node: &str, hub: Weak<dyn Hears>) -> Relay {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some(json) = rx.recv().await {
            if let Err(e) = publisher.publish(SUBJECT, json.into()).await {
                tracing::warn!(error = %e, "hub: a message was not relayed");
            }
        }
    });
    let me = node.to_owned();
    tokio::spawn(async move {
        let mut subscription = loop {
            match client.subscribe(SUBJECT).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "hub: cannot hear the other replicas yet");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        while let Some(message) = subscription.next().await {
            let Some(hub) = hub.upgrade() else { return };
            match serde_json::from_slice::<News>(&message.payload) {
                Ok(news) if news.from != me => hub.hear(news.msg),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "hub: a relayed message that is not one"),
            }
        }
    });
    Relay { tx, node: node.to_owned(), dropped: AtomicU64::new(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let relay = Relay { tx, node: "replica-1".into(), dropped: AtomicU64::new(0) };
        let msg = ServerMsg::Tick { watchers: 1 };
        relay.send(&msg);
        relay.send(&msg);
        relay.send(&msg);
        assert_eq!(relay.dropped(), 2, "one fits, two dropped and counted");
    }
}
