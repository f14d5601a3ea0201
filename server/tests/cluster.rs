//! A cluster on one machine, all real: PostgreSQL, NATS with JetStream, two replicas of the
//! `wirescope` binary and HAProxy in front, with the configuration the project writes. One
//! start, shared by every step.

mod common;

use std::collections::BTreeSet;

use common::RealServer;

const TOKEN: &str = "cluster-test-token-0123456789";

/// `GET /api/health` through `addr`: the node that answered.
fn node(addr: std::net::SocketAddr) -> String {
    let (status, body) = common::http(addr, "GET", "/api/health", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["node"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_haproxy_share_the_work_and_survive_a_sigkill() {
    let url = common::pg::fresh_database().await;
    let nats = common::nats::Nats::start().await;
    let nats_url = nats.url.clone();
    tokio::task::spawn_blocking(move || {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let args = |node: &str| {
            vec![
                "--postgres".to_owned(),
                url.clone(),
                "--nats".to_owned(),
                nats_url.clone(),
                "--node".to_owned(),
                node.to_owned(),
                "--instructor-token".to_owned(),
                TOKEN.to_owned(),
                "--client-address-header".to_owned(),
                "X-Forwarded-For".to_owned(),
            ]
        };
        let start = |i: usize| {
            let a = args(&format!("replica-{}", i + 1));
            RealServer::start(dirs[i].path(), &a.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let (r1, r2) = (start(0), start(1));
        let lb = common::haproxy::Haproxy::start(&[r1.addr, r2.addr]);

        // Round robin: both replicas answer through the one address.
        let seen: BTreeSet<String> = (0..6).map(|_| node(lb.addr)).collect();
        assert_eq!(seen, BTreeSet::from(["replica-1".to_owned(), "replica-2".to_owned()]));

        // A write through the balancer is read back through it, whichever replica answers,
        // and the change reaches both replicas' feeds.
        let (status, id) = common::http(lb.addr, "POST", "/transcripts", Some(r#"{"studentName":"behind"}"#));
        assert_eq!((status, id.as_str()), (200, "5"));
        for _ in 0..4 {
            assert_eq!(common::http(lb.addr, "GET", "/transcripts/5", None).0, 200);
        }
        for r in [r1.addr, r2.addr] {
            let (_, body) = common::http(r, "GET", "/api/changes?since=0&wait=20", None);
            assert!(body.contains(r#""studentID":5"#), "{body}");
        }

        // The same instructor token on every replica.
        for r in [r1.addr, r2.addr] {
            let auth = format!("Bearer {TOKEN}");
            let status =
                common::http_with(r, "GET", "/api/instructor", &[("Authorization", &auth)], None).unwrap().0;
            assert_eq!(status, 204);
        }

        // Replica 1 is killed: no request through the balancer fails, reads or writes.
        r1.kill();
        for i in 0..20 {
            assert_eq!(common::http(lb.addr, "GET", "/transcripts/1", None).0, 200, "read {i}");
        }
        let (status, id) = common::http(lb.addr, "POST", "/transcripts", Some(r#"{"studentName":"after"}"#));
        assert_eq!((status, id.as_str()), (200, "6"));
        assert_eq!(node(lb.addr), "replica-2");
        drop(lb);
    })
    .await
    .unwrap();
    drop(nats);
}
