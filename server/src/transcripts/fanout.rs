//! The change feed across replicas, over NATS JetStream (`--nats URL`, with `--postgres`).
//!
//! Each write's change is committed to the `changes` outbox in PostgreSQL with the write;
//! from there a publisher on every replica publishes what is not yet in the stream
//! `WIRESCOPE_CHANGES`, in `seq` order, each message waiting for its acknowledgement and
//! carrying `seq` as its `Nats-Msg-Id` (the stream drops a second copy). The writing replica
//! is nudged at once; the others look every second, so a change whose replica died between
//! commit and publish is published by another. Every replica follows the stream from its
//! start with an ordered consumer and announces each change it has not announced yet on its
//! own feed: every client of every replica sees every change once, in `seq` order.
//!
//! While NATS is out of reach, REST keeps working; changes wait in the outbox (nothing is
//! lost) and are published in order when it returns.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use deadpool_postgres::Pool;
use protocol::channel::{Change, ChangeKind};
use tokio::sync::Notify;

use crate::changes::ChangeFeed;

/// The stream, and the one subject in it.
pub const STREAM: &str = "WIRESCOPE_CHANGES";
pub const SUBJECT: &str = "wirescope.changes";
/// Messages the stream keeps (as many as the outbox keeps rows).
const KEEP: i64 = 10_000;
/// How often a replica looks for changes other replicas have not published.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Rows published per look.
const BATCH: i64 = 500;

/// A replica's part in the fan-out: nudge it after a commit.
#[derive(Debug, Clone)]
pub struct Fanout {
    nudge: Arc<Notify>,
}

impl Fanout {
    /// Publish now (a change was just committed here).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }
}

/// Connects to NATS at `url` and starts publishing the outbox of `pool` and following the
/// stream into `feed`. Fails only on a malformed URL: an unreachable NATS is retried.
pub async fn start(url: &str, pool: Pool, feed: Arc<ChangeFeed>) -> Result<Fanout, String> {
    let crate::log::stream::Link { js, reconnected, .. } = crate::log::stream::jetstream_at(url).await?;
    let nudge = Arc::new(Notify::new());
    tokio::spawn(publish(js.clone(), pool, nudge.clone()));
    tokio::spawn(follow(js, reconnected, feed));
    Ok(Fanout { nudge })
}

async fn stream_of(js: &jetstream::Context) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        max_messages: KEEP,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

/// The newest change `seq` already in the stream.
async fn published_up_to(stream: &stream::Stream) -> Result<u64, String> {
    match stream.get_last_raw_message_by_subject(SUBJECT).await {
        Ok(m) => serde_json::from_slice::<Change>(&m.payload).map(|c| c.seq).map_err(|e| e.to_string()),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}

/// Publishes the outbox in `seq` order, from where the stream ends, forever.
async fn publish(js: jetstream::Context, pool: Pool, nudge: Arc<Notify>) {
    let mut cursor: Option<u64> = None;
    loop {
        if let Err(e) = publish_some(&js, &pool, &mut cursor).await {
            tracing::warn!(error = %e, "changes: not published yet (retrying)");
            cursor = None;
        }
        let _ = tokio::time::timeout(LOOK_EVERY, nudge.notified()).await;
    }
}

async fn publish_some(js: &jetstream::Context, pool: &Pool, cursor: &mut Option<u64>) -> Result<(), String> {
    let from = match *cursor {
        Some(c) => c,
        None => published_up_to(&stream_of(js).await?).await?,
    };
    *cursor = Some(from);
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT seq, kind, student_id, course, at_us, cause FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(from as i64), &BATCH],
        )
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    for row in rows {
        let seq: i64 = row.get(0);
        let Some(change) = change_from_row(&row) else {
            *cursor = Some(seq as u64);
            continue;
        };
        let payload = serde_json::to_vec(&change).map_err(|e| e.to_string())?;
        let message =
            jetstream::context::Publish::build().message_id(seq.to_string()).payload(payload.into());
        js.send_publish(SUBJECT, message)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        *cursor = Some(seq as u64);
    }
    Ok(())
}

/// A row of the outbox (`seq, kind, student_id, course, at_us, cause`) as a change; none
/// when its kind is one this version does not know (written by a newer one).
pub fn change_from_row(row: &tokio_postgres::Row) -> Option<Change> {
    let kind = serde_json::from_value::<ChangeKind>(serde_json::Value::String(row.get(1))).ok()?;
    let (seq, cause): (i64, Option<i64>) = (row.get(0), row.get(5));
    Some(Change {
        seq: seq as u64,
        kind,
        student_id: row.get(2),
        course: row.get(3),
        at_us: row.get(4),
        cause: cause.map(|c| c as u64),
    })
}

/// Follows the stream from its start and announces each change not announced yet.
async fn follow(js: jetstream::Context, reconnected: Arc<Notify>, feed: Arc<ChangeFeed>) {
    loop {
        if let Err(e) = follow_once(&js, &reconnected, &feed).await {
            tracing::warn!(error = %e, "changes: not following the stream (retrying)");
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

async fn follow_once(js: &jetstream::Context, reconnected: &Notify, feed: &ChangeFeed) -> Result<(), String> {
    let stream = stream_of(js).await?;
    let mut messages = crate::log::stream::ordered(&stream, consumer::DeliverPolicy::All).await?;
    while let Some(message) = crate::log::stream::next_message(&mut messages, reconnected).await {
        let message = message?;
        match serde_json::from_slice::<Change>(&message.payload) {
            Ok(change) => feed.announce(change),
            Err(e) => tracing::warn!(error = %e, "changes: a message that is not a change"),
        }
    }
    Ok(())
}
