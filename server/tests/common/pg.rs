//! A real PostgreSQL for the tests: one server per test binary, started on a free loopback
//! port from Debian's binaries (as the `postgres` user when the tests run as root), a fresh
//! database per test. It stops, and its files are removed, when the test binary exits: a
//! wrapper shell waits for its standard input (a pipe from this process) to close.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The directory of PostgreSQL's programs (the newest of Debian's), or a clear failure.
fn bin_dir() -> std::path::PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is not installed: run scripts/setup (it installs the postgresql package)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The script the server runs under: initdb, start, wait for the pipe to close, stop, clean.
const WRAPPER: &str = r#"
set -e
dir=$1 port=$2 bin=$3 keep=$4
[ -d "$dir/data" ] || "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
"$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 -c fsync=off \
  -c full_page_writes=off </dev/null >"$dir/log" 2>&1 &
pid=$!
cat >/dev/null || true
kill -INT "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ "$keep" = keep ] || rm -rf "$dir"
"#;

/// Starts PostgreSQL over `dir` (initialised on first use) on `port`; it runs until the
/// returned pipe is closed. With `keep`, its files stay for the next start.
fn spawn(dir: &std::path::Path, port: u16, keep: bool) -> (Child, std::process::ChildStdin) {
    let mut cmd = if is_root() {
        // PostgreSQL refuses to run as root: its directory goes to the postgres user.
        let ok = Command::new("chown").args(["postgres:postgres"]).arg(dir).status().unwrap().success();
        assert!(ok, "chown of {} failed", dir.display());
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", WRAPPER, "sh"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", WRAPPER, "sh"]);
        c
    };
    let mut child = cmd
        .arg(dir)
        .arg(port.to_string())
        .arg(bin_dir())
        .arg(if keep { "keep" } else { "remove" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the PostgreSQL wrapper starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn new_dir() -> std::path::PathBuf {
    tempfile::Builder::new().prefix("wirescope-pg-").tempdir().unwrap().keep()
}

struct Server {
    port: u16,
    _child: Child,
    _stdin: std::process::ChildStdin,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = free_port();
        let (child, stdin) = spawn(&new_dir(), port, false);
        Server { port, _child: child, _stdin: stdin }
    })
}

/// A PostgreSQL of one test's own, to stop and start again (a database that goes away).
pub struct Own {
    dir: std::path::PathBuf,
    pub port: u16,
    running: Option<(Child, std::process::ChildStdin)>,
}

impl Own {
    pub async fn start() -> Own {
        let (dir, port) = (new_dir(), free_port());
        let running = Some(spawn(&dir, port, true));
        admin(port).await;
        Own { dir, port, running }
    }

    /// Stops it (a fast shutdown) and waits until it is gone; its data stays.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same port and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.running = Some(spawn(&self.dir, self.port, true));
        admin(self.port).await;
    }

    /// The URL of a new database on it.
    pub async fn database(&self, name: &str) -> String {
        admin(self.port).await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection to the server's `postgres` database, once it answers (within 60 s).
async fn admin(port: u16) -> tokio_postgres::Client {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let url = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return client;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("PostgreSQL did not start on port {port}: {e}"),
        }
    }
}

/// The URL of a new, empty database on the tests' PostgreSQL.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let port = server().port;
    let client = admin(port).await;
    let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}
