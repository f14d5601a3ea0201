//! Idempotency keys in a cluster's PostgreSQL ([`PgKeys`]): a retried POST is answered the
//! same by whichever replica the balancer sends it to.
//!
//! A key is claimed by inserting its row (the primary key decides who runs the request); the
//! answer is written to the row when the request is answered; a retry finds it and replays it.
//! A retry that finds the row still unanswered waits for it (looking every 50 ms) and, past
//! `wait`, is told the first is still running (409). If the replica that claimed a key dies
//! before answering, the key stays unanswered until it expires: its retries get 409, never a
//! second effect. A failure worth retrying for real (5xx) gives the key up.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use deadpool_postgres::Pool;

use crate::idempotency::{Answer, Claim, KEEP, Keys, Pending, Stored};

/// How often a retry looks whether the first request was answered.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Idempotency keys in PostgreSQL (table `idempotency_keys`, made with the schema).
#[derive(Clone)]
pub struct PgKeys {
    pool: Pool,
    /// How long a retry waits for a running first request before 409.
    wait: Duration,
}

impl std::fmt::Debug for PgKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeys").field("wait", &self.wait).finish_non_exhaustive()
    }
}

impl PgKeys {
    pub fn new(pool: Pool, wait: Duration) -> Self {
        Self { pool, wait }
    }

    async fn claim_key(&self, key: String) -> Result<Claim, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        let now = crate::clock::now_us();
        let expired = now - KEEP.as_micros() as i64;
        client
            .execute("DELETE FROM idempotency_keys WHERE at_us < $1", &[&expired])
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + self.wait;
        loop {
            let claimed = client
                .execute(
                    "INSERT INTO idempotency_keys (key, at_us) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &now],
                )
                .await
                .map_err(|e| e.to_string())?;
            if claimed == 1 {
                return Ok(Claim::Run(Box::new(Claimed { pool: self.pool.clone(), key })));
            }
            let row = client
                .query_opt("SELECT status, headers, body FROM idempotency_keys WHERE key = $1", &[&key])
                .await
                .map_err(|e| e.to_string())?;
            if let Some(row) = row
                && let Some(status) = row.get::<_, Option<i32>>(0)
            {
                let headers: Option<String> = row.get(1);
                let body: Option<Vec<u8>> = row.get(2);
                return stored(status, headers.as_deref().unwrap_or("[]"), body.unwrap_or_default())
                    .map(Claim::Replay);
            }
            // Still running elsewhere (or given up just now: claim it again).
            if Instant::now() >= deadline {
                return Ok(Claim::Busy);
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}

impl Keys for PgKeys {
    fn claim(&self, key: String) -> Answer<'_, Result<Claim, String>> {
        Box::pin(self.claim_key(key))
    }
}

/// A kept answer from its row.
fn stored(status: i32, headers: &str, body: Vec<u8>) -> Result<Stored, String> {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("a kept answer with status {status}"))?;
    let pairs: Vec<(String, String)> = serde_json::from_str(headers).map_err(|e| e.to_string())?;
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            map.append(n, v);
        }
    }
    Ok(Stored { status, headers: map, body: body.into() })
}

/// A key this replica claimed.
struct Claimed {
    pool: Pool,
    key: String,
}

impl Pending for Claimed {
    fn finish(self: Box<Self>, answer: Option<Stored>) -> Answer<'static, ()> {
        Box::pin(async move {
            let Claimed { pool, key } = *self;
            let done = async {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                match answer {
                    Some(s) => {
                        let headers: Vec<(&str, &str)> = s
                            .headers
                            .iter()
                            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
                            .collect();
                        let headers = serde_json::to_string(&headers).map_err(|e| e.to_string())?;
                        client
                            .execute(
                                "UPDATE idempotency_keys SET status = $2, headers = $3, body = $4 WHERE key = $1",
                                &[&key, &i32::from(s.status.as_u16()), &headers, &s.body.as_ref()],
                            )
                            .await
                    }
                    None => client.execute("DELETE FROM idempotency_keys WHERE key = $1", &[&key]).await,
                }
                .map(drop)
                .map_err(|e| e.to_string())
            };
            if let Err(e) = done.await {
                // Its retries then wait and get 409 until the key expires: never a second effect.
                tracing::warn!(error = %e, "idempotency: the answer could not be kept");
            }
        })
    }
}
