//! `soak`: many well-behaved clients and a few misbehaving ones against one server at once,
//! for a while. Well-behaved: WebSocket clients on `/ws/events` (hello, a room of ten, a chat
//! line every 15 s, every tick read) and REST load. Misbehaving, in turns: junk frames,
//! oversize frames, half-open upgrades, bodies sent a byte a second, floods of hello and join.
//! Reports what the well-behaved got, the server's errors, and its memory over time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::{Http, host, rss_mb};

#[derive(Default)]
struct Counts {
    /// Well-behaved WebSocket clients that connected, and those still connected at the end.
    connected: AtomicU64,
    dropped: AtomicU64,
    /// Ticks each well-behaved client received: the fewest, kept as the minimum seen.
    ticks: AtomicU64,
    /// REST answers by class, and requests that got no answer.
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    unanswered: AtomicU64,
    /// Misbehaving attempts made, and how the server answered them (refused or cut).
    rogue_attempts: AtomicU64,
}

/// One well-behaved client: hello, a room of ten, a chat line every 15 s, every message read.
async fn citizen(url: String, n: usize, until: Instant, counts: Arc<Counts>, ticks: Arc<AtomicU64>) {
    let ws_url = format!("ws://{}/ws/events?client=c-soak{n}", host(&url));
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(ws_url).await else { return };
    counts.connected.fetch_add(1, Ordering::Relaxed);
    let hello = format!(r#"{{"type":"hello","data":{{"name":"Soak {n}"}}}}"#);
    let join = format!(r#"{{"type":"join","data":{{"room":"soak {}"}}}}"#, n % 100);
    if ws.send(Message::text(hello)).await.is_err() || ws.send(Message::text(join)).await.is_err() {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut chat = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if t.contains(r#""type":"tick""#) {
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if std::env::var_os("SOAK_DEBUG").is_some() {
                        eprintln!("citizen {n} closed: {frame:?}");
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    if std::env::var_os("SOAK_DEBUG").is_some() {
                        eprintln!("citizen {n} ended: {other:?}");
                    }
                    if Instant::now() < until {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            },
            _ = chat.tick() => {
                if Instant::now() >= until {
                    let _ = ws.close(None).await;
                    return;
                }
                let line = format!(r#"{{"type":"chat","data":{{"room":"soak {}","text":"still here"}}}}"#, n % 100);
                if ws.send(Message::text(line)).await.is_err() {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// REST load on a keep-alive connection: reads and writes of the transcripts, as fast as
/// answers come.
async fn rest(url: String, until: Instant, counts: Arc<Counts>) {
    let h = host(&url);
    while Instant::now() < until {
        let Ok(mut http) = Http::connect(&h).await else {
            counts.unanswered.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while Instant::now() < until {
            match http.get(&h, "/transcripts/1", "c-soak-rest").await {
                Ok(s) if s >= 500 => counts.server_errors.fetch_add(1, Ordering::Relaxed),
                Ok(s) if s >= 400 => counts.client_errors.fetch_add(1, Ordering::Relaxed),
                Ok(_) => counts.ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    counts.unanswered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
        }
    }
}

/// One misbehaving client, doing its kind of harm over and over until `until`.
async fn rogue(url: String, kind: usize, until: Instant, counts: Arc<Counts>) {
    let h = host(&url);
    while Instant::now() < until {
        counts.rogue_attempts.fetch_add(1, Ordering::Relaxed);
        match kind % 5 {
            // Junk frames: text that is no message, as fast as the socket takes them.
            0 => {
                if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{h}/ws/events")).await
                {
                    for _ in 0..200 {
                        if ws.send(Message::text("{not json")).await.is_err() {
                            break;
                        }
                    }
                    let _ = ws.close(None).await;
                }
            }
            // A frame over the limit: the server closes with 1009.
            1 => {
                if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{h}/ws/echo")).await {
                    let _ = ws.send(Message::binary(vec![0u8; 2 << 20])).await;
                    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                }
            }
            // Half-open: an upgrade request that never ends, held for a while.
            2 => {
                if let Ok(mut s) = TcpStream::connect(&h).await {
                    let head = format!("GET /ws/events HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\n");
                    let _ = s.write_all(head.as_bytes()).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            // A body a byte a second: the server cuts it.
            3 => {
                if let Ok(mut s) = TcpStream::connect(&h).await {
                    let head = format!(
                        "POST /transcripts HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    for _ in 0..15 {
                        if s.write_all(b" ").await.is_err() || Instant::now() >= until {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            // Floods of hello and join, new names and new rooms.
            _ => {
                if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{h}/ws/events")).await
                {
                    for i in 0..200 {
                        let m = if i % 2 == 0 {
                            format!(r#"{{"type":"hello","data":{{"name":"flood {i}"}}}}"#)
                        } else {
                            format!(r#"{{"type":"join","data":{{"room":"flood {kind} {i}"}}}}"#)
                        };
                        if ws.send(Message::text(m)).await.is_err() {
                            break;
                        }
                    }
                    let _ = ws.close(None).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn soak(url: String, clients: usize, rogues: usize, seconds: u64, pid: Option<u32>) {
    let counts = Arc::new(Counts::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let per_client: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    // Ramp the well-behaved clients up in waves, then the load and the rogues.
    for wave in per_client.chunks(200).enumerate() {
        for (i, t) in wave.1.iter().enumerate() {
            let n = wave.0 * 200 + i;
            tasks.push(tokio::spawn(citizen(url.clone(), n, until, counts.clone(), t.clone())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..4 {
        tasks.push(tokio::spawn(rest(url.clone(), until, counts.clone())));
    }
    for k in 0..rogues {
        tasks.push(tokio::spawn(rogue(url.clone(), k, until, counts.clone())));
    }
    // Memory once warm (10 s in), then every 10 s to the end.
    let alive = Arc::new(AtomicBool::new(true));
    let mut rss = Vec::new();
    let start = Instant::now();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10).min(until.saturating_duration_since(Instant::now())))
            .await;
        if let Some(p) = pid {
            match rss_mb(p) {
                Some(m) => rss.push((start.elapsed().as_secs(), m)),
                None => alive.store(false, Ordering::Relaxed),
            }
        }
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    let least_ticks = per_client.iter().map(|t| t.load(Ordering::Relaxed)).min().unwrap_or(0);
    counts.ticks.store(least_ticks, Ordering::Relaxed);
    let c = &counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let warm = rss.first().map_or(f64::NAN, |r| r.1);
    let end = rss.last().map_or(f64::NAN, |r| r.1);
    let growth = (end - warm) / warm * 100.0;
    let alive = pid.is_none_or(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        && alive.load(Ordering::Relaxed);
    println!(
        "soak seconds={seconds} clients={clients} rogues={rogues} connected={}/{clients} (goal: all) dropped={} (goal: 0) \
         fewest_ticks={} (goal: >= {}) rest_ok={} rest_4xx={} rest_5xx={} (goal: 0) rest_unanswered={} \
         rogue_attempts={} server_alive={} (goal: yes) rss_warm={warm:.1}MB rss_end={end:.1}MB growth={growth:.1}% (goal: <= 20%) rss_samples={:?}",
        get(&c.connected),
        get(&c.dropped),
        get(&c.ticks),
        seconds / 5 - 2,
        get(&c.ok),
        get(&c.client_errors),
        get(&c.server_errors),
        get(&c.unanswered),
        get(&c.rogue_attempts),
        if alive { "yes" } else { "NO" },
        rss.iter().map(|(s, m)| format!("{s}s:{m:.0}MB")).collect::<Vec<_>>(),
    );
}
