//! The balancer in front of a cluster's replicas: the project writes HAProxy's
//! configuration (`wirescope balancer-config`), nobody writes it by hand.
//!
//! Round robin over the replicas for HTTP, each checked on `GET /api/health` every 500 ms
//! (marked `X-Wirescope-Probe`, so capture leaves the checks out of every diagram)
//! (out after 2 failures, back after 2 successes); a request whose connection to a replica
//! fails is retried on another (`retries 3`, `option redispatch`, `retry-on conn-failure
//! empty-response`: the request never reached a server, so even a POST is safe to resend);
//! WebSocket upgrades pass through and may stay open for an hour (`timeout tunnel`); the
//! client's address goes to the replicas in `X-Forwarded-For` (start them with
//! `--client-address-header X-Forwarded-For`). The app's files come through it like any other
//! request.

use std::fmt::Write;
use std::net::SocketAddr;

/// HAProxy's configuration for a balancer on `listen` in front of `replicas`.
pub fn haproxy_config(listen: SocketAddr, replicas: &[SocketAddr]) -> String {
    let mut c = String::from(
        "# Written by `wirescope balancer-config`: regenerate it, do not edit it.\n\
         global\n    # maxconn follows the file descriptors the process may open\n\n\
         defaults\n    mode http\n    option http-server-close\n    option forwardfor\n\
         \x20   timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
         \x20   timeout http-request 30s\n    timeout tunnel 1h\n\
         \x20   retries 3\n    option redispatch\n    retry-on conn-failure empty-response\n\n",
    );
    let _ = write!(c, "frontend wirescope\n    bind {listen}\n");
    // When the balancer received the request (the inside view's hand-off); a client's own
    // header of that name is replaced.
    let _ = writeln!(c, "    http-request set-header {} %[date(0,us)]", crate::hops::AT_HEADER);
    c.push_str("    default_backend replicas\n\n");
    c.push_str(
        "backend replicas\n    balance roundrobin\n    option httpchk\n    http-check send meth GET uri /api/health hdr X-Wirescope-Probe 1\n\
         \x20   http-check expect status 200\n    default-server inter 500ms fall 2 rise 2\n",
    );
    // The server chosen, named in the request it is sent (a client's own header replaced).
    let _ = writeln!(c, "    http-send-name-header {}", crate::hops::SERVER_HEADER);
    for (i, r) in replicas.iter().enumerate() {
        let _ = writeln!(c, "    server replica-{} {r} check", i + 1);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replica_is_checked_and_failed_connections_are_retried() {
        let replicas = ["127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap()];
        let c = haproxy_config("127.0.0.1:8080".parse().unwrap(), &replicas);
        for line in [
            "bind 127.0.0.1:8080",
            "balance roundrobin",
            "http-check send meth GET uri /api/health hdr X-Wirescope-Probe 1",
            "server replica-1 127.0.0.1:9001 check",
            "server replica-2 127.0.0.1:9002 check",
            "retry-on conn-failure empty-response",
            "option redispatch",
            "option forwardfor",
            "timeout tunnel 1h",
            "http-request set-header x-wirescope-balancer-at %[date(0,us)]",
            "http-send-name-header x-wirescope-balancer-server",
        ] {
            assert!(c.lines().any(|l| l.trim() == line), "missing {line:?} in\n{c}");
        }
    }
}
