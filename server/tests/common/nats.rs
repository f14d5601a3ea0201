//! A real NATS server with JetStream for the tests (Debian's `nats-server`), on a free
//! loopback port; it stops, and its files are removed, when the test process ends (a wrapper
//! shell waits for its standard input, a pipe from this process, to close) or when dropped.

use std::process::{Child, ChildStdin, Command, Stdio};

const WRAPPER: &str = r#"
dir=$1 port=$2 bin=$3
"$bin" -js -a 127.0.0.1 -p "$port" -sd "$dir" >"$dir.log" 2>&1 </dev/null &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir" "$dir.log"
"#;

pub struct Nats {
    pub url: String,
    running: Option<(Child, ChildStdin)>,
}

fn binary() -> String {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("nats-server is not installed: run scripts/setup (it installs the nats-server package)")
        .to_owned()
}

impl Nats {
    /// Starts it and waits until it accepts connections (within 30 s).
    pub async fn start() -> Nats {
        let dir = tempfile::Builder::new().prefix("wirescope-nats-").tempdir().unwrap().keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("sh")
            .args(["-c", WRAPPER, "sh"])
            .arg(&dir)
            .arg(port.to_string())
            .arg(binary())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the NATS wrapper starts");
        let stdin = child.stdin.take().unwrap();
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while async_nats::connect(&url).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start on {url}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Nats { url, running: Some((child, stdin)) }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}
