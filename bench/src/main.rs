//! `wirescope-bench`: measures a running `wirescope` server from a separate process.
//!
//! - `fanout URL --observers N`: ramps up N `/ws/observe` connections, then makes 5 requests a
//!   second (10 events/s) and reports how long each event took from the server stamping it to
//!   each observer receiving it (p50/p95/p99 over every delivery); with `--observe URL…` the
//!   observers connect to other servers (a cluster's other replicas).
//! - `observe URL --seconds S`: one observer that reads and discards (for the HTTP benchmark).
//! - `load URL --rate R --seconds S`: R requests per second (keep-alive connections), for the
//!   wire → screen benchmark.
//! - `soak URL --clients N --rogues M --seconds S`: N well-behaved WebSocket clients, REST load
//!   and M misbehaving clients at once; what the well-behaved got, errors, memory over time.
//! - `recovery URL --kill PID`: through a cluster's balancer, one replica killed under
//!   requests and observers: failed requests, time to the first success and to each cut
//!   observer's resumption, `seq`s missed.
//!
//! Times are compared on the machine's own clock: run it on the server's machine.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod cluster;
mod soak;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Benchmarks a running wirescope server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Delivery latency to N observers at 10 events/s.
    Fanout {
        /// http://HOST:PORT of the server.
        url: String,
        #[arg(long)]
        observers: usize,
        /// Seconds of measured traffic once every observer is connected.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Process id of the server, to read its memory use.
        #[arg(long)]
        pid: Option<u32>,
        /// Connect the observers here instead, spread over these servers in turn (a
        /// cluster's other replicas): the events are still made on URL.
        #[arg(long = "observe", value_name = "URL")]
        observe: Vec<String>,
    },
    /// Through a cluster's balancer: kill one replica (SIGKILL) under requests and observers,
    /// and measure what failed and how long recovery took.
    Recovery {
        /// http://HOST:PORT of the balancer.
        url: String,
        /// Process id of the replica to kill.
        #[arg(long)]
        kill: u32,
        #[arg(long, default_value_t = 12)]
        observers: usize,
    },
    /// One observer that reads everything and drops it.
    Observe {
        url: String,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Well-behaved WebSocket clients, REST load and misbehaving clients at once.
    Soak {
        url: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        rogues: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Process id of the server, to read its memory use and see it alive.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// A steady request rate.
    Load {
        url: String,
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Client id the requests carry (one lane).
        #[arg(long, default_value = "c-load")]
        client: String,
    },
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn host(url: &str) -> String {
    url.trim_end_matches('/').trim_start_matches("http://").to_owned()
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Every `"serverUs":N` in a message: the server's stamp of each event in it.
fn server_stamps(text: &str) -> impl Iterator<Item = i64> + '_ {
    text.match_indices("\"serverUs\":").filter_map(move |(i, m)| {
        let rest = &text[i + m.len()..];
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

/// A keep-alive HTTP/1.1 connection making GET requests.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(host: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::with_capacity(8192) })
    }

    async fn get(&mut self, host: &str, path: &str, client: &str) -> std::io::Result<u16> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Wirescope-Client: {client}\r\nUser-Agent: wirescope-bench\r\n\r\n"
        );
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&self.buf);
            if let Some(head_end) = text.find("\r\n\r\n") {
                let head = &text[..head_end];
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if self.buf.len() >= head_end + 4 + len {
                    return Ok(head[9..12].parse().unwrap_or(0));
                }
            }
        }
    }
}

/// One observer: records, while `measuring`, how late each event reached it (µs), into its
/// own list (read by the main task at the end).
async fn observer(
    url: String,
    latencies: Arc<StdMutex<Vec<i64>>>,
    measuring: Arc<AtomicBool>,
    connected: Arc<AtomicU64>,
) {
    let ws_url = format!("ws://{}/ws/observe?since=999999999999", host(&url));
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(ws_url).await else {
        eprintln!("an observer could not connect");
        return;
    };
    connected.fetch_add(1, Ordering::Relaxed);
    while let Some(Ok(msg)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let now = now_us();
            if measuring.load(Ordering::Relaxed) && t.starts_with(r#"{"type":"events""#) {
                let mut l = latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                l.extend(server_stamps(&t).map(|s| now - s));
            }
        }
    }
}

async fn fanout(url: String, observers: usize, seconds: u64, pid: Option<u32>, observe: Vec<String>) {
    let observe = if observe.is_empty() { vec![url.clone()] } else { observe };
    let lists: Vec<Arc<StdMutex<Vec<i64>>>> = (0..observers).map(|_| Arc::default()).collect();
    let measuring = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    let idle = pid.and_then(rss_mb);
    let ramp = Instant::now();
    // Ramp up in waves of 250 connections.
    for wave in 0..observers.div_ceil(250) {
        for i in 0..250.min(observers - wave * 250) {
            let list = lists[wave * 250 + i].clone();
            let at = observe[(wave * 250 + i) % observe.len()].clone();
            tokio::spawn(observer(at, list, measuring.clone(), connected.clone()));
        }
        while connected.load(Ordering::Relaxed) < ((wave + 1) * 250).min(observers) as u64 {
            if ramp.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ramp_s = ramp.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = pid.and_then(rss_mb);
    measuring.store(true, Ordering::Relaxed);
    let h = host(&url);
    let mut http = Http::connect(&h).await.expect("the server answers HTTP");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut requests = 0;
    while Instant::now() < end {
        tick.tick().await;
        http.get(&h, "/transcripts/1", "c-fanout").await.expect("request");
        requests += 1;
    }
    // Let the last deliveries land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut l: Vec<i64> = lists
        .iter()
        .flat_map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
        .collect();
    l.sort_unstable();
    let expected = requests * 2 * connected.load(Ordering::Relaxed) as usize;
    println!(
        "fanout observers={} connected={} ramp={:.1}s events={} deliveries={}/{} p50={:.1}ms p95={:.1}ms p99={:.1}ms rss_idle={} rss_connected={}",
        observers,
        connected.load(Ordering::Relaxed),
        ramp_s,
        requests * 2,
        l.len(),
        expected,
        percentile(&l, 0.50),
        percentile(&l, 0.95),
        percentile(&l, 0.99),
        idle.map_or("?".into(), |m| format!("{m:.1}MB")),
        with.map_or("?".into(), |m| format!("{m:.1}MB")),
    );
    let _ = std::io::stdout().flush();
}

async fn load(url: String, rate: u64, seconds: u64, client: String) {
    let h = host(&url);
    // Enough connections that each sends at most 100 requests a second.
    let conns = rate.div_ceil(100).max(1);
    let per = rate as f64 / conns as f64;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (h, client, sent) = (h.clone(), client.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(&h).await.expect("connect");
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < end {
                tick.tick().await;
                if http.get(&h, "/transcripts/1", &client).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    println!("load rate={rate}/s seconds={seconds} sent={}", sent.load(Ordering::Relaxed));
}

#[tokio::main]
async fn main() {
    match Cli::parse().cmd {
        Cmd::Fanout { url, observers, seconds, pid, observe } => {
            fanout(url, observers, seconds, pid, observe).await
        }
        Cmd::Recovery { url, kill, observers } => cluster::recovery(url, kill, observers).await,
        Cmd::Observe { url, seconds } => {
            let l = Arc::new(StdMutex::new(Vec::new()));
            let c = Arc::new(AtomicU64::new(0));
            let _ = tokio::time::timeout(
                Duration::from_secs(seconds),
                observer(url, l, Arc::new(AtomicBool::new(false)), c),
            )
            .await;
        }
        Cmd::Load { url, rate, seconds, client } => load(url, rate, seconds, client).await,
        Cmd::Soak { url, clients, rogues, seconds, pid } => {
            soak::soak(url, clients, rogues, seconds, pid).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_a_batch() {
        let t = r#"{"type":"events","events":[{"seq":1,"at":{"serverUs":17},"kind":"x"},{"seq":2,"at":{"clientUs":3,"serverUs":25}}]}"#;
        assert_eq!(server_stamps(t).collect::<Vec<_>>(), [17, 25]);
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let v: Vec<i64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
