//! A real HAProxy (Debian's) in front of replicas, with the configuration the project writes
//! (`wirescope balancer-config`), on a free loopback port; it stops when dropped or when the
//! test process ends.

use std::net::SocketAddr;

use super::owned::Owned;

pub struct Haproxy {
    pub addr: SocketAddr,
    _running: Owned,
}

impl Haproxy {
    /// Starts a balancer in front of `replicas`; answers once it accepts connections.
    pub fn start(replicas: &[SocketAddr]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut write_config = std::process::Command::new(env!("CARGO_BIN_EXE_wirescope"));
        write_config.args(["balancer-config", "--listen", &addr.to_string()]);
        for r in replicas {
            write_config.args(["--replica", &r.to_string()]);
        }
        let out = write_config.output().expect("wirescope balancer-config runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cfg = tempfile::Builder::new().prefix("wirescope-haproxy-").suffix(".cfg").tempfile().unwrap();
        std::fs::write(cfg.path(), &out.stdout).unwrap();
        let (_, cfg) = cfg.keep().unwrap();
        let bin = Owned::find(&["/usr/sbin/haproxy", "/usr/bin/haproxy"], "haproxy");
        let running = Owned::run(&cfg, bin, &["-db", "-f", &cfg.to_string_lossy()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "HAProxy did not start on {addr}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Haproxy { addr, _running: running }
    }
}
