//! A hub's joins, leaves and chat lines passed between the replicas of a cluster, over one
//! plain NATS subject: members of one room talk whichever replica the balancer gave them. So
//! are what the rate limits count (chat lines and renames by issued id, ids issued by
//! address), so a client has one allowance in the cluster, not one per replica.
//! Only the replicas running now matter (as for a connection), so nothing is kept in a stream;
//! each replica keeps the room history it heard. The queue to NATS is bounded: what does not
//! fit is dropped and counted in the log.

use std::net::IpAddr;
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
    /// `msg` happened on another replica; `key` is the issued id of the client that sent it
    /// (a chat line), so this replica counts it against that client's rate limit too.
    fn hear(&self, msg: ServerMsg, key: Option<String>);
    /// The client issued `key` renamed itself on another replica (counted here too).
    fn renamed(&self, key: String);
    /// Another replica issued an id to `addr` (it comes out of the same share here).
    fn issued(&self, addr: IpAddr);
}

/// What one replica tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum News {
    /// A join, a leave or a chat line (`key`: the sender's issued id).
    Msg {
        msg: ServerMsg,
        key: Option<String>,
    },
    Renamed {
        key: String,
    },
    Issued {
        addr: IpAddr,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The sending process ([`crate::board::instance`]): a replica skips its own.
    from: u64,
    news: News,
}

/// This replica's end of the relay.
#[derive(Debug)]
pub struct Relay {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: AtomicU64,
}

impl Relay {
    /// Passes `news` on to the other replicas (dropped, and counted, when the queue is full).
    pub fn send(&self, news: News) {
        let envelope = Envelope { from: crate::board::instance(), news };
        let Ok(json) = serde_json::to_vec(&envelope) else { return };
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

/// Starts relaying for this replica: publishing what it sends, handing what the others publish
/// to `hub`.
pub fn start(client: async_nats::Client, hub: Weak<dyn Hears>) -> Relay {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some(json) = rx.recv().await {
            if let Err(e) = publisher.publish(SUBJECT, json.into()).await {
                tracing::warn!(error = %e, "hub: a message was not relayed");
            }
        }
    });
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
            match serde_json::from_slice::<Envelope>(&message.payload) {
                Ok(e) if e.from == crate::board::instance() => {}
                Ok(Envelope { news: News::Msg { msg, key }, .. }) => hub.hear(msg, key),
                Ok(Envelope { news: News::Renamed { key }, .. }) => hub.renamed(key),
                Ok(Envelope { news: News::Issued { addr }, .. }) => hub.issued(addr),
                Err(e) => tracing::warn!(error = %e, "hub: a relayed message that is not one"),
            }
        }
    });
    Relay { tx, dropped: AtomicU64::new(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let relay = Relay { tx, dropped: AtomicU64::new(0) };
        let news = || News::Renamed { key: "k-1".into() };
        relay.send(news());
        relay.send(news());
        relay.send(news());
        assert_eq!(relay.dropped(), 2, "one fits, two dropped and counted");
    }
}
