//! A real NATS server with JetStream for the tests (Debian's `nats-server`), on a free
//! loopback port; it stops when dropped or when the test process ends, and its files go when
//! it is dropped. It can be stopped for a while and started again on the same port with the
//! same files.

use super::owned::Owned;

pub struct Nats {
    pub url: String,
    port: String,
    /// JetStream's files: kept across a stop, removed with the last run.
    store: std::path::PathBuf,
    running: Option<Owned>,
}

impl Nats {
    /// Starts it and waits until it accepts connections (within 30 s).
    pub async fn start() -> Nats {
        let store = tempfile::Builder::new().prefix("wirescope-nats-").tempdir().unwrap().keep();
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let url = format!("nats://127.0.0.1:{port}");
        let mut nats = Nats { url, port, store, running: None };
        nats.run();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while async_nats::connect(&nats.url).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start on {}", nats.url);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        nats
    }

    /// The server process. Its wrapper removes an empty directory of its own when it stops,
    /// not the streams' files, which outlive a stop.
    fn run(&mut self) {
        let bin = Owned::find(&["/usr/sbin/nats-server", "/usr/bin/nats-server"], "nats-server");
        let store = self.store.to_string_lossy().into_owned();
        let files = tempfile::tempdir().unwrap().keep();
        self.running =
            Some(Owned::run(&files, bin, &["-js", "-a", "127.0.0.1", "-p", &self.port, "-sd", &store]));
    }

    /// Stops the server (blocking until it has exited), keeping its streams on disk.
    pub fn stop(&mut self) {
        drop(self.running.take());
    }

    /// Starts it again on the same port with the same files, and waits (blocking) until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        self.run();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start again on {}", self.url);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
