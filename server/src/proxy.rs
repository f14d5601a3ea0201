//! Behind a balancer every connection comes from the balancer's address, so per-address
//! limits ([`crate::ids`]) and the instructor's address column would see one client. With
//! `--client-address-header NAME` (e.g. `X-Forwarded-For`), the server trusts that header
//! for the client's address: the last address in it, the one the balancer itself appended.
//! Without the option the header is never trusted (any client could write it), and neither
//! are the balancer's hand-off headers ([`crate::hops::Handoff`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;

/// The header a trusted balancer writes the client's address into, if any.
#[derive(Debug, Clone, Default)]
pub struct ClientAddressHeader(pub Option<HeaderName>);

/// The last address in a comma-separated header value (`client, proxy1, proxy2` → `proxy2`'s
/// entry is the one the nearest, trusted hop wrote). Accepts `IP`, `IP:port` and `[v6]:port`.
pub fn last_address(value: &str) -> Option<IpAddr> {
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>().ok().or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Puts the address from the trusted header in place of the connection's, for every layer
/// inside (capture, pseudonyms, issuing ids, the instructor's roster).
pub async fn middleware(State(header): State<ClientAddressHeader>, mut req: Request, next: Next) -> Response {
    if let Some(name) = &header.0 {
        let ip = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .next_back()
            .and_then(last_address);
        if let Some(ip) = ip {
            req.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, 0)));
        }
        // The same balancer's hand-off (which server it chose, when it received the request),
        // for the inside view; believed only from a balancer trusted with the address.
        if let Some(handoff) = crate::hops::Handoff::from_headers(req.headers()) {
            req.extensions_mut().insert(handoff);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_hop_is_believed() {
        assert_eq!(last_address("203.0.113.9"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_address("1.2.3.4, 203.0.113.9"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_address("1.2.3.4,203.0.113.9:5512"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(last_address("[2001:db8::1]:80"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(last_address("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(last_address("1.2.3.4, unknown"), None);
        assert_eq!(last_address(""), None);
    }
}
