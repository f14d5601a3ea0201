//! A real NATS server with JetStream for the tests (Debian's `nats-server`), on a free
//! loopback port; it stops, and its files go, when dropped or when the test process ends.

use super::owned::Owned;

pub struct Nats {
    pub url: String,
    _running: Owned,
}

impl Nats {
    /// Starts it and waits until it accepts connections (within 30 s).
    pub async fn start() -> Nats {
        let dir = tempfile::Builder::new().prefix("wirescope-nats-").tempdir().unwrap().keep();
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let bin = Owned::find(&["/usr/sbin/nats-server", "/usr/bin/nats-server"], "nats-server");
        let store = dir.to_string_lossy().into_owned();
        let running = Owned::run(&dir, bin, &["-js", "-a", "127.0.0.1", "-p", &port, "-sd", &store]);
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while async_nats::connect(&url).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start on {url}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Nats { url, _running: running }
    }
}
