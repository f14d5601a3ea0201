//! A cluster's recovery, through its balancer: a replica is killed with SIGKILL while requests
//! and observers go through the balancer. Figures: how many requests failed, how long until
//! requests succeeded again, how long until each cut observer had resumed (its first event
//! after reconnecting with `since`), and whether any `seq` went missing on the way.

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::{Http, host};

/// What one observer saw around the kill.
#[derive(Default)]
struct Seen {
    /// The newest `seq` it had.
    last: u64,
    /// `seq`s that never reached it (a jump in the numbering after it resumed).
    missed: u64,
    /// Whether its connection was cut.
    cut: bool,
    /// When it had its first event on the new connection.
    resumed: Option<Instant>,
}

/// Every `"seq":N` at the start of an event in a message, in order.
fn seqs(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.match_indices("{\"seq\":").filter_map(move |(i, m)| {
        let rest = &text[i + m.len()..];
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

/// An observer through the balancer that reconnects with `since` whenever it is cut.
async fn observer(h: String, seen: Arc<StdMutex<Seen>>, until: Instant) {
    let mut reconnected = false;
    while Instant::now() < until {
        let since = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).last;
        let url = if since == 0 {
            format!("ws://{h}/ws/observe")
        } else {
            format!("ws://{h}/ws/observe?since={since}")
        };
        let Ok(Ok((mut ws, _))) =
            tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(url)).await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until.into(), ws.next()).await {
            let tokio_tungstenite::tungstenite::Message::Text(t) = msg else { continue };
            if !t.starts_with(r#"{"type":"events""#) {
                continue;
            }
            let mut s = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for seq in seqs(&t) {
                if s.last > 0 && seq > s.last + 1 {
                    s.missed += seq - s.last - 1;
                }
                s.last = s.last.max(seq);
            }
            if reconnected && s.resumed.is_none() {
                s.resumed = Some(Instant::now());
            }
        }
        if Instant::now() < until {
            seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).cut = true;
            reconnected = true;
        }
    }
}

pub async fn recovery(url: String, kill: u32, observers: usize) {
    let h = host(&url);
    let start = Instant::now();
    let kill_at = start + Duration::from_secs(3);
    let until = kill_at + Duration::from_secs(8);
    let seen: Vec<Arc<StdMutex<Seen>>> = (0..observers).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = seen.iter().map(|s| tokio::spawn(observer(h.clone(), s.clone(), until))).collect();
    // Requests through the balancer, one at a time on a kept-alive connection (a new one after
    // a failure), at most one every 5 ms.
    let requester = {
        let h = h.clone();
        tokio::spawn(async move {
            let mut results: Vec<(Instant, bool)> = Vec::new();
            let mut http: Option<Http> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while Instant::now() < until {
                tick.tick().await;
                if http.is_none() {
                    http = Http::connect(&h).await.ok();
                }
                let ok = match http.as_mut() {
                    Some(c) => matches!(c.get(&h, "/transcripts/1", "c-recovery").await, Ok(200)),
                    None => false,
                };
                if !ok {
                    http = None;
                }
                results.push((Instant::now(), ok));
            }
            results
        })
    };
    tokio::time::sleep_until(kill_at.into()).await;
    let killed = std::process::Command::new("kill").args(["-KILL", &kill.to_string()]).status();
    let killed_at = Instant::now();
    assert!(killed.is_ok_and(|s| s.success()), "could not kill process {kill}");
    let results = requester.await.unwrap_or_default();
    for t in tasks {
        let _ = t.await;
    }
    let after: Vec<&(Instant, bool)> = results.iter().filter(|(t, _)| *t >= killed_at).collect();
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    let first_ok = after.iter().find(|(_, ok)| *ok).map(|(t, _)| (*t - killed_at).as_secs_f64() * 1000.0);
    let mut longest_gap = Duration::ZERO;
    let mut last_ok = start;
    for (t, ok) in &results {
        if *ok {
            longest_gap = longest_gap.max(*t - last_ok);
            last_ok = *t;
        }
    }
    let seen: Vec<_> = seen
        .iter()
        .map(|s| std::mem::take(&mut *s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
        .collect();
    let cut = seen.iter().filter(|s| s.cut).count();
    let mut resumed: Vec<f64> = seen
        .iter()
        .filter_map(|s| s.resumed)
        .map(|t| (t.saturating_duration_since(killed_at)).as_secs_f64() * 1000.0)
        .collect();
    resumed.sort_by(f64::total_cmp);
    let missed: u64 = seen.iter().map(|s| s.missed).sum();
    let ms = |v: Option<f64>| v.map_or("none".to_owned(), |v| format!("{v:.0}ms"));
    println!(
        "recovery requests={} failed={failed} first_ok_after_kill={} longest_gap_between_successes={:.0}ms observers={observers} cut={cut} resumed={} first_resumed={} last_resumed={} seq_missed={missed}",
        results.len(),
        ms(first_ok),
        longest_gap.as_secs_f64() * 1000.0,
        resumed.len(),
        ms(resumed.first().copied()),
        ms(resumed.last().copied()),
    );
}

#[cfg(test)]
mod tests {
    use super::seqs;

    #[test]
    fn seqs_are_read_from_a_batch() {
        let t = r#"{"type":"events","events":[{"seq":7,"client":"c"},{"seq":8,"at":{}}]}"#;
        assert_eq!(seqs(t).collect::<Vec<_>>(), [7, 8]);
    }
}
