//! The event log of a cluster (`--nats`): one JetStream stream, `WIRESCOPE_EVENTS`, that every
//! replica publishes its captured events to and follows.
//!
//! A replica does not number what it captures: the log's `record` hands the event, serialized once, to a bounded local outbox, and a publisher task sends it
//! to the stream (each message with an id of its own, `replica-n`, so a retried publish is kept
//! once). The stream's sequence number becomes the event's `seq`: strictly increasing, never
//! reused, one order for the whole cluster. Every replica follows the stream with an ordered
//! consumer and admits each event into its ring, from where its observers are served exactly
//! as in the embedded mode; an observer resuming further back than the ring reads the stream.
//!
//! While NATS is out of reach, requests are answered as usual and captured events wait in the
//! outbox (at most `writer_queue`; what does not fit is dropped and counted as unpersisted).
//! When NATS returns they are published, late, and a note on the diagram says for how long the
//! replica could not publish, how many events came late and how many were dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};

/// What the stream's tasks need of the log they serve (the log implements it).
pub trait Follower: Send + Sync + 'static {
    /// Takes in the event the stream numbered `seq` (`json` begins with it).
    fn admit(&self, seq: u64, json: String);
    /// The newest `seq` taken in (0: none yet).
    fn latest_seq(&self) -> u64;
    /// How many events the log keeps in memory (how far back to start following).
    fn ring_size(&self) -> u64;
    /// Records that publishing was delayed for `seconds`: `late` events came late, `dropped`
    /// never came.
    fn delayed(&self, seconds: f64, late: usize, dropped: u64);
}

/// The stream, and the one subject in it.
pub const STREAM: &str = "WIRESCOPE_EVENTS";
pub const SUBJECT: &str = "wirescope.events";
/// How long a publish waits for the stream's acknowledgement before it is tried again.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// How often a failed publish or a lost subscription is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Events published in one go (their acknowledgements awaited together).
const BATCH: usize = 256;
/// How long a read of older events waits for the next message before it ends.
const READ_WAIT: Duration = Duration::from_secs(2);

/// A replica's link to the stream, kept by its log.
#[derive(Debug)]
pub struct Shared {
    outbox: mpsc::Sender<Box<str>>,
    js: jetstream::Context,
    status: Arc<Status>,
}

/// How the publisher is doing, shared with it.
#[derive(Debug, Default)]
struct Status {
    /// Events the full outbox could not take since the last report.
    dropped: AtomicU64,
    /// Whether the last publish failed.
    unreachable: AtomicBool,
    /// Events taken from the outbox and not yet acknowledged by the stream.
    in_hand: AtomicU64,
}

impl Shared {
    /// Queues an event (its JSON after `{"seq":0,`) for the stream; false when the outbox is
    /// full (the event is dropped, and counted).
    pub(super) fn push(&self, rest: String) -> bool {
        let ok = self.outbox.try_send(rest.into_boxed_str()).is_ok();
        if !ok {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// How the link is: reachable, events waiting, events dropped.
    pub(super) fn state(&self) -> protocol::EventStream {
        protocol::EventStream {
            reachable: !self.status.unreachable.load(Ordering::Relaxed),
            waiting: (self.outbox.max_capacity() - self.outbox.capacity()) as u64
                + self.status.in_hand.load(Ordering::Relaxed),
            dropped: self.status.dropped.load(Ordering::Relaxed),
        }
    }

    /// The events after `after` and before `before` (at most `limit`), from the stream.
    pub(super) async fn read(
        &self,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, String> {
        let stream = stream_of(&self.js, 0).await?;
        let mut messages =
            ordered(&stream, consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 }).await?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Ok(Some(message)) = tokio::time::timeout(READ_WAIT, messages.next()).await else { break };
            let message = message.map_err(|e| e.to_string())?;
            let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
            if seq >= before {
                break;
            }
            if let Some(json) = numbered(seq, &message.payload) {
                out.push((seq, json));
            }
            // The last one asked for: nothing to wait for after it.
            if seq + 1 >= before {
                break;
            }
        }
        Ok(out)
    }

    /// The oldest `seq` the stream still holds (older ones went to its size cap).
    pub(super) async fn oldest(&self) -> Result<u64, String> {
        let mut stream = stream_of(&self.js, 0).await?;
        Ok(stream.info().await.map_err(|e| e.to_string())?.state.first_sequence)
    }

    /// Deletes the events from `first` to `last` from the stream, one by one, in the
    /// background (those gone already are skipped); logs how many went.
    pub(super) fn forget(&self, first: u64, last: u64) {
        let js = self.js.clone();
        tokio::spawn(async move {
            let Ok(stream) = stream_of(&js, 0).await else { return };
            let mut deleted = 0u64;
            for seq in first..=last {
                if stream.delete_message(seq).await.is_ok() {
                    deleted += 1;
                }
            }
            tracing::info!(first, last, deleted, "events: a deleted session's events left the stream");
        });
    }
}

/// A connection to JetStream, and word of each (re)connection.
#[derive(Debug, Clone)]
pub struct Link {
    pub js: jetstream::Context,
    /// The plain NATS connection under it (for subjects outside JetStream).
    pub client: async_nats::Client,
    /// Woken whenever the connection is made again: a consumer made before may never be
    /// told that it lost its place, so followers start over from where they were.
    pub reconnected: Arc<Notify>,
}

/// JetStream at NATS `url`, connecting in the background (and again whenever the connection
/// is lost: soon, since NATS is near — every 250 ms more, at most every 2 s). Fails only on a
/// malformed URL.
pub async fn jetstream_at(url: &str) -> Result<Link, String> {
    let reconnected = Arc::new(Notify::new());
    let told = reconnected.clone();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 250).min(2000)))
        .event_callback(move |event| {
            if matches!(event, async_nats::Event::Connected) {
                told.notify_waiters();
            }
            std::future::ready(())
        })
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| format!("NATS {url}: {e}"))?;
    Ok(Link { js: jetstream::new(client.clone()), client, reconnected })
}

/// The next message of an ordered consumer; none when the messages end or the connection was
/// made again (then follow anew from where you were).
pub async fn next_message(
    messages: &mut consumer::pull::Ordered,
    reconnected: &Notify,
) -> Option<Result<jetstream::Message, String>> {
    tokio::select! {
        m = messages.next() => m.map(|m| m.map_err(|e| e.to_string())),
        () = reconnected.notified() => None,
    }
}

/// The messages of `stream` from where `policy` says, in order, through an ordered consumer
/// (ephemeral: it goes when it is dropped or its connection is lost).
pub async fn ordered(
    stream: &stream::Stream,
    policy: consumer::DeliverPolicy,
) -> Result<consumer::pull::Ordered, String> {
    let config = consumer::pull::OrderedConfig { deliver_policy: policy, ..Default::default() };
    let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// `{"seq":N,` in front of a message's payload; none when it is not UTF-8 (not ours).
fn numbered(seq: u64, payload: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(payload).ok()?;
    let mut json = String::with_capacity(rest.len() + 24);
    json.push_str("{\"seq\":");
    json.push_str(&seq.to_string());
    json.push(',');
    json.push_str(rest);
    Some(json)
}

async fn stream_of(js: &jetstream::Context, max_bytes: u64) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        // Created by the first replica with its disk cap; the others find it as it is.
        max_bytes: if max_bytes == 0 { -1 } else { max_bytes as i64 },
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

/// Connects to the cluster's event stream at NATS `url` for a log (`follower`) and starts
/// publishing its outbox (at most `outbox` events) and following the stream into it. `cap` is
/// the stream's size in bytes, if this replica creates it. `replica` is this start's number in
/// the cluster (unique among the replicas that share the stream): it names what this replica
/// publishes. Fails only on a malformed URL: an unreachable NATS is retried.
pub async fn connect(
    url: &str,
    outbox: usize,
    cap: u64,
    replica: u64,
    follower: Weak<dyn Follower>,
) -> Result<Shared, String> {
    let Link { mut js, reconnected, .. } = jetstream_at(url).await?;
    js.set_timeout(ACK_WAIT);
    let (tx, rx) = mpsc::channel(outbox.max(1));
    let status = Arc::new(Status::default());
    tokio::spawn(publish(js.clone(), rx, status.clone(), follower.clone(), replica, cap));
    tokio::spawn(follow(js.clone(), reconnected, follower, cap));
    Ok(Shared { outbox: tx, js, status })
}

/// Publishes the outbox, in order, forever; reports what an outage delayed or dropped.
async fn publish(
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Box<str>>,
    status: Arc<Status>,
    log: Weak<dyn Follower>,
    replica: u64,
    cap: u64,
) {
    let mut batch: Vec<Box<str>> = Vec::with_capacity(BATCH);
    let mut sent: u64 = 0;
    // Since when publishing has failed.
    let mut down: Option<Instant> = None;
    // Whether the stream is known to exist (asked again after a failure).
    let mut ensured = false;
    loop {
        if batch.is_empty() {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            status.in_hand.store(batch.len() as u64, Ordering::Relaxed);
        }
        if !ensured {
            ensured = stream_of(&js, cap).await.is_ok();
        }
        let result =
            if ensured { send(&js, &batch, replica, sent).await } else { Err("no stream yet".into()) };
        match result {
            Ok(()) => {
                sent += batch.len() as u64;
                let late = batch.len() + rx.len();
                batch.clear();
                status.in_hand.store(0, Ordering::Relaxed);
                if let Some(since) = down.take() {
                    status.unreachable.store(false, Ordering::Relaxed);
                    let dropped = status.dropped.swap(0, Ordering::Relaxed);
                    let Some(log) = log.upgrade() else { return };
                    log.delayed(since.elapsed().as_secs_f64(), late, dropped);
                }
            }
            Err(e) => {
                ensured = false;
                if down.is_none() {
                    tracing::warn!(error = %e, "events: the stream is out of reach; keeping them in the outbox");
                    down = Some(Instant::now());
                    status.unreachable.store(true, Ordering::Relaxed);
                }
                // Published ones are sent again with the same ids: the stream keeps each once.
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }
}

/// Publishes `batch` (message ids `replica-n` from `first`) and waits for every acknowledgement.
async fn send(js: &jetstream::Context, batch: &[Box<str>], replica: u64, first: u64) -> Result<(), String> {
    let mut acks = Vec::with_capacity(batch.len());
    for (i, rest) in batch.iter().enumerate() {
        let message = jetstream::context::Publish::build()
            .message_id(format!("{replica}-{}", first + i as u64))
            .payload(rest.as_bytes().to_vec().into());
        acks.push(js.send_publish(SUBJECT, message).await.map_err(|e| e.to_string())?);
    }
    for ack in acks {
        ack.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Follows the stream into the log's ring, from where it left off (at first, from as far back
/// as the ring holds), forever.
async fn follow(js: jetstream::Context, reconnected: Arc<Notify>, log: Weak<dyn Follower>, cap: u64) {
    loop {
        if let Err(e) = follow_once(&js, &reconnected, &log, cap).await {
            tracing::warn!(error = %e, "events: not following the stream (retrying)");
        }
        if log.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn follow_once(
    js: &jetstream::Context,
    reconnected: &Notify,
    log: &Weak<dyn Follower>,
    cap: u64,
) -> Result<(), String> {
    let mut stream = stream_of(js, cap).await?;
    let (start, ring) = {
        let Some(log) = log.upgrade() else { return Ok(()) };
        (log.latest_seq() + 1, log.ring_size())
    };
    let start = if start > 1 {
        start
    } else {
        let last = stream.info().await.map_err(|e| e.to_string())?.state.last_sequence;
        (last + 1).saturating_sub(ring).max(1)
    };
    let mut messages =
        ordered(&stream, consumer::DeliverPolicy::ByStartSequence { start_sequence: start }).await?;
    while let Some(message) = next_message(&mut messages, reconnected).await {
        let message = message?;
        let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let Some(log) = log.upgrade() else { return Ok(()) };
        match numbered(seq, &message.payload) {
            Some(json) => log.admit(seq, json),
            None => tracing::warn!(seq, "events: a message that is not an event"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_outbox_drops_and_counts_and_health_says_so() {
        // Nothing listens on this port: NATS is out of reach from the start.
        let Link { js, .. } = jetstream_at("nats://127.0.0.1:1").await.unwrap();
        let (outbox, _rx) = mpsc::channel(2);
        let shared = Shared { outbox, js, status: Arc::default() };
        assert!(shared.push("a".into()) && shared.push("b".into()));
        assert!(!shared.push("c".into()), "the third does not fit");
        let state = shared.state();
        assert_eq!((state.reachable, state.waiting, state.dropped), (true, 2, 1));
    }

    #[test]
    fn the_stream_sequence_goes_in_front_of_the_payload() {
        let json = numbered(42, br#""client":"c","exchange":1}"#).unwrap();
        assert_eq!(json, r#"{"seq":42,"client":"c","exchange":1}"#);
        assert_eq!(numbered(1, &[0xff, 0xfe]), None, "not UTF-8: not an event");
    }
}
