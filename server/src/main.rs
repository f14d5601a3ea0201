//! The `wirescope` binary: parse the command line, bind, serve, shut down gracefully.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use server::{AppState, Config, app};
use tokio::net::TcpListener;

// The capture path allocates many small, short-lived strings; mimalloc serves them faster and
// returns memory better than the system allocator (measured: see README, "Measured").
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `scripts/bench` builds with `--features dhat-heap` to count allocations per request: every
/// allocation then goes through dhat, and SIGUSR1 prints the totals so far to stderr.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

#[cfg(feature = "dhat-heap")]
fn count_allocations() -> dhat::Profiler {
    let profiler = dhat::Profiler::builder().testing().trim_backtraces(Some(1)).build();
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else { return };
        while usr1.recv().await.is_some() {
            let stats = dhat::HeapStats::get();
            eprintln!("allocations: blocks={} bytes={}", stats.total_blocks, stats.total_bytes);
        }
    });
    profiler
}

/// wirescope: watch REST and WebSocket traffic live, as a sequence diagram.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on, HOST:PORT. Port 0 picks a free port. Default 127.0.0.1:8081,
    /// or 127.0.0.1:$PORT when PORT is set.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,

    /// Directory for the server's data; created if missing, may hold other files.
    #[arg(long, value_name = "DIR", env = "WIRESCOPE_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,

    /// Replace the transcripts database with a new one holding the seed data (ids start at 1).
    #[arg(long)]
    reset: bool,

    /// Record nothing (no event, no event database, no writer thread; session routes answer
    /// 409); for measuring what capture costs.
    #[arg(long)]
    no_capture: bool,

    /// Largest body preview kept per captured message, in bytes (full sizes are always kept).
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    preview_bytes: usize,

    /// Events kept in memory for observers that (re)connect.
    #[arg(long, value_name = "EVENTS", default_value_t = 10_000)]
    ring: usize,

    /// Disk cap of the event log; the oldest sessions are pruned past it.
    #[arg(long, value_name = "MB", default_value_t = 256)]
    log_disk_cap_mb: u64,

    /// Replace the instructor token kept in the data directory with a new one (the old
    /// instructor link stops working). Without it, the link stays the same across restarts.
    #[arg(long)]
    rotate_token: bool,

    /// Also let browser pages on this origin (e.g. `https://course.example.edu`) open
    /// WebSockets and change things; the server's own origin and `trunk serve`'s are always
    /// allowed. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,

    /// Ids one address may be issued at once; one more every 2 s. Rate limits and mutes on
    /// `/ws/events` key on these ids (a browser keeps its id as a cookie), so a client cannot
    /// shake a limit off by renaming itself; a lecture hall behind one NAT address needs one
    /// per phone.
    #[arg(long, value_name = "N", default_value_t = server::ids::PER_ADDRESS)]
    ids_per_address: u32,

    /// Behind a balancer: trust this header (e.g. `X-Forwarded-For`) for the client's
    /// address, taking its last entry. Never set it when clients reach the server directly.
    #[arg(long, value_name = "HEADER")]
    client_address_header: Option<axum::http::HeaderName>,

    /// Keep the transcripts (and their change feed) in this PostgreSQL database instead of
    /// SQLite in the data directory: `postgres://USER[:PASSWORD]@HOST:PORT/DB`. Replicas of a
    /// cluster share it. Best given in the environment (the password stays out of `ps`).
    #[arg(long, value_name = "URL", env = "WIRESCOPE_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,

    /// The address students open, when it is not this server's own: a cluster's balancer
    /// (`http://HOST[:PORT]/`). The instructor's page shows it and its QR code.
    #[arg(long, value_name = "URL", env = "WIRESCOPE_PUBLIC_URL", value_parser = public_url)]
    public_url: Option<String>,

    /// This server's name, recorded in every event it captures (the inspector shows it); the
    /// replicas of a cluster each have their own. Default: the machine's host name.
    #[arg(long, value_name = "NAME", env = "WIRESCOPE_NODE")]
    node: Option<String>,

    /// With `--postgres`: join the other replicas through NATS JetStream at this URL
    /// (`nats://HOST:PORT`). The event log is then one stream for the cluster (every observer
    /// on every replica sees every replica's traffic, numbered in one order) and every
    /// replica's clients get every transcript change.
    #[arg(long, value_name = "URL", env = "WIRESCOPE_NATS", requires = "postgres")]
    nats: Option<String>,

    /// The instructor's token, the same on every replica of a cluster (instead of the one
    /// kept in the data directory). Give it in the environment, never on a command line.
    #[arg(
        long = "instructor-token",
        value_name = "TOKEN",
        env = "WIRESCOPE_INSTRUCTOR_TOKEN",
        hide_env_values = true
    )]
    instructor_token: Option<String>,

    /// The trunk-built app to serve.
    #[arg(long, value_name = "DIR", default_value = "dist")]
    assets: PathBuf,

    /// Stop when standard input reaches end of file (for test harnesses: the server then
    /// stops with the process that started it).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

/// What else the binary does besides serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print HAProxy's configuration for a balancer on LISTEN in front of the replicas.
    BalancerConfig {
        /// Where the balancer listens, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        listen: std::net::SocketAddr,
        /// A replica, HOST:PORT (repeat for each).
        #[arg(long = "replica", value_name = "HOST:PORT", required = true)]
        replicas: Vec<std::net::SocketAddr>,
    },
}

/// `--public-url`: an http(s) URL, with a `/` at the end.
fn public_url(text: &str) -> Result<String, String> {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') && !text.contains(char::is_whitespace) => {
            Ok(if text.ends_with('/') { text.to_owned() } else { format!("{text}/") })
        }
        _ => Err("must be an http:// or https:// URL with a host, e.g. http://192.168.1.10/".to_owned()),
    }
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    base.map_or_else(|| PathBuf::from("wirescope-data"), |b| b.join("wirescope"))
}

fn listen_addr(cli: Option<String>, port_env: Option<String>) -> String {
    cli.unwrap_or_else(|| match port_env {
        Some(port) if !port.is_empty() => format!("127.0.0.1:{port}"),
        _ => "127.0.0.1:8081".to_owned(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    #[cfg(feature = "dhat-heap")]
    let _profiler = count_allocations();
    let cli = Cli::parse();
    if let Some(Command::BalancerConfig { listen, replicas }) = &cli.command {
        print!("{}", server::balancer::haproxy_config(*listen, replicas));
        return Ok(());
    }
    let addr = listen_addr(cli.addr, std::env::var("PORT").ok());

    let mut config = Config::new(&cli.assets, &cli.data_dir);
    config.reset = cli.reset;
    config.rotate_token = cli.rotate_token;
    if let Some(token) = cli.instructor_token.filter(|t| !t.is_empty()) {
        if token.len() < 16 {
            return Err("the instructor token must be at least 16 characters".into());
        }
        config.token = Some(token);
    }
    config.allowed_origins = cli.allow_origins;
    config.ids_per_address = cli.ids_per_address;
    config.client_address_header = cli.client_address_header;
    if let Some(node) = cli.node {
        config.node = node;
    }
    config.public_url = cli.public_url.clone();
    config.capture = !cli.no_capture;
    config.preview_bytes = cli.preview_bytes;
    config.log.ring = cli.ring.max(1);
    config.log.disk_cap = cli.log_disk_cap_mb << 20;
    let state = match &cli.postgres {
        None => AppState::new(config)?,
        Some(url) => {
            let mut store = server::transcripts::postgres::Postgres::connect(url, cli.reset)
                .await
                .map_err(|e| format!("cannot use the PostgreSQL database: {e}"))?;
            let mut replica = 0;
            if let Some(nats) = &cli.nats {
                store = store.with_nats(nats).await.map_err(|e| format!("cannot use NATS: {e}"))?;
                replica =
                    store.replica_number().await.map_err(|e| format!("cannot number this replica: {e}"))?;
                config.log_in_stream = true;
            }
            // Idempotency keys in the same database: a retry may reach another replica.
            let keys = std::sync::Arc::new(store.keys(Duration::from_secs(10)));
            let state = AppState::with_backends(config, std::sync::Arc::new(store), keys)?;
            if let Some(nats) = &cli.nats {
                state
                    .join_cluster(nats)
                    .await
                    .map_err(|e| format!("cannot share the room over NATS: {e}"))?;
            }
            if let Some(nats) = cli.nats.as_deref().filter(|_| state.log().is_recording()) {
                state
                    .log()
                    .join_stream(nats, replica)
                    .await
                    .map_err(|e| format!("cannot follow the event stream: {e}"))?;
            }
            // Its password is a secret like the token: scrubbed wherever it might appear.
            if let Some(password) =
                url.parse::<tokio_postgres::Config>().ok().and_then(|c| c.get_password().map(<[u8]>::to_vec))
            {
                state.secrets().add(String::from_utf8_lossy(&password).into_owned());
            }
            state
        }
    };
    let listener = TcpListener::bind(&addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let db = state.transcripts().describe();
    tracing::info!(data_dir = %cli.data_dir.display(), transcripts = %db, reset = cli.reset, assets = %cli.assets.display(), "starting");
    if !cli.assets.join("index.html").is_file() {
        tracing::warn!(assets = %cli.assets.display(), "no built app there: the API runs, `/` explains how to build it");
    }
    state.set_local_addr(local);
    say(&format!("listening on http://{local}"));
    let host = if local.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], local.port()))
    } else {
        local
    };
    // The instructor's link goes to standard error, so standard output keeps its one line.
    eprintln!("instructor: http://{host}/#token={}", state.token());
    for url in server::instructor::join_urls(state.local_addr(), cli.public_url.as_deref()) {
        tracing::info!(%url, "students can join at");
    }

    let shutdown = state.shutdown().clone();
    let log = state.log().clone();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            stop_requested(cli.exit_on_stdin_eof).await;
            tracing::info!("shutting down");
            shutdown.trigger();
        }
    };
    tokio::spawn(signal);
    let serve = server::serve::serve(listener, app(state), shutdown.clone());
    // Connections (WebSockets closing with 1001 included) get a few seconds to finish after
    // the signal; then the process ends anyway.
    let deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        res = serve => res?,
        () = deadline => tracing::warn!("connections still open after 5 s; stopping anyway"),
    }
    // Everything recorded reaches the disk, and the next start numbers on without a gap.
    let _ = tokio::task::spawn_blocking(move || log.seal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// A line on standard output; a closed stdout (the reader went away) is not fatal.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resolves on Ctrl-C, SIGTERM, or (when asked) the end of standard input.
async fn stop_requested(watch_stdin: bool) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let stdin_eof = async {
        if !watch_stdin {
            return std::future::pending().await;
        }
        let _ =
            tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()))
                .await;
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
        () = stdin_eof => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_flag_beats_port_env_which_beats_the_default() {
        assert_eq!(listen_addr(Some("0.0.0.0:9".into()), Some("7".into())), "0.0.0.0:9");
        assert_eq!(listen_addr(None, Some("7000".into())), "127.0.0.1:7000");
        assert_eq!(listen_addr(None, None), "127.0.0.1:8081");
        assert_eq!(listen_addr(None, Some(String::new())), "127.0.0.1:8081");
    }

    #[test]
    fn a_public_url_is_an_http_url_with_a_host() {
        assert_eq!(public_url("http://10.0.0.5:8080").unwrap(), "http://10.0.0.5:8080/");
        assert_eq!(public_url("https://lecture.test/").unwrap(), "https://lecture.test/");
        for bad in ["10.0.0.5", "ftp://x/", "http://", "http:///x", "http://a b/"] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }
}
