//! Ids the server issues, which a client cannot mint for itself: what rate limits and mutes
//! key on. A client's own id (`?client=`, `X-Wirescope-Client`) names its lane and may be
//! anything; renaming it must not shake off a limit or a mute. So on first contact with
//! `/ws/events` the server issues a signed id in a cookie (`HttpOnly`, `SameSite=Strict`),
//! and the browser brings it back on every later connection, whatever the lane is called.
//!
//! The same id owns the lanes it names ([`crate::identity::Clients`]): no other client can
//! rename them.
//!
//! An id is `k-` and 16 random hex digits, a `.`, and its signature (HMAC-SHA256 keyed by the
//! instructor token, so every replica sharing the token accepts it, and it survives a
//! restart). A program that keeps no cookie gets a new id each time; the remote address
//! only limits how many ids it may be issued ([`Issuer::issue`]): a bucket of
//! `per_address` ids that refills one every [`REFILL`], generous enough for a lecture hall
//! behind one NAT address. An IPv6 address counts by its /64 (one host may hold a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;
use crate::identity::RemoteIp;

/// The cookie that carries the issued id.
pub const COOKIE: &str = "wirescope_id";
/// How long a browser keeps its id (a day: a lecture, and the lab after it).
pub const COOKIE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Ids one address may be issued at once (the default of `--ids-per-address`).
pub const PER_ADDRESS: u32 = 500;
/// One more id for an address whose bucket is not full, every this long.
pub const REFILL: Duration = Duration::from_secs(2);
/// Addresses whose issuing is tracked; past it, full buckets are forgotten first, and an
/// address that finds no room is refused (never silently unlimited).
pub const MAX_ADDRESSES: usize = 65_536;

/// Why no id was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// This address was issued its share; the next id is due in this long.
    TooMany(Duration),
    /// The system's random source failed: no id is better than a guessable one.
    NoRandom,
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::TooMany(wait) => ApiError::Throttled(wait.as_secs().max(1), refused.to_string()),
            Refused::NoRandom => ApiError::Internal(refused.to_string()),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooMany(wait) => write!(
                f,
                "too many new connections from this address without the id the server issued (a browser keeps it as a cookie); try again in {} s",
                wait.as_secs().max(1)
            ),
            Refused::NoRandom => f.write_str("the server's random source failed; no id could be issued"),
        }
    }
}

/// How many ids an address may still be issued.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: u32,
    /// When `left` was last brought up to date.
    at: Instant,
}

/// Issues and checks signed ids.
pub struct Issuer {
    key: Hmac<Sha256>,
    per_address: u32,
    /// Most addresses counted ([`MAX_ADDRESSES`]; smaller in tests).
    max_addresses: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// Told of every id issued here (a cluster's replicas tell each other, so an address has
    /// one share in the whole cluster).
    on_issue: std::sync::OnceLock<Box<dyn Fn(IpAddr) + Send + Sync>>,
}

/// Who a request is, by the id the server issued it. An extractor: the id its cookie
/// carries, or a new one for its address (429 when the address had its share).
#[derive(Debug, Clone)]
pub struct Identified {
    /// The issued id.
    pub key: String,
    /// The `Set-Cookie` to send when the id is new.
    pub set_cookie: Option<axum::http::HeaderValue>,
}

impl Identified {
    /// Hands a new id to the browser with the response (a 101 too).
    pub fn hand_over(self, mut res: axum::response::Response) -> axum::response::Response {
        if let Some(cookie) = self.set_cookie {
            res.headers_mut().append(axum::http::header::SET_COOKIE, cookie);
        }
        res
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identified
where
    std::sync::Arc<Issuer>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Ok(RemoteIp(ip)) = RemoteIp::from_request_parts(parts, state).await;
        Ok(std::sync::Arc::<Issuer>::from_ref(state).identify(&parts.headers, ip)?)
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("per_address", &self.per_address).finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer signing with `secret` (the instructor token), issuing at most `per_address`
    /// ids at once to one address.
    pub fn new(secret: &str, per_address: u32) -> Self {
        let mut key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        key.update(b"wirescope issued client id\0");
        Self {
            key,
            per_address: per_address.max(1),
            max_addresses: MAX_ADDRESSES,
            buckets: Mutex::default(),
            on_issue: std::sync::OnceLock::new(),
        }
    }

    /// The same, counting at most `max` addresses (to test the cap).
    pub fn with_max_addresses(mut self, max: usize) -> Self {
        self.max_addresses = max.max(1);
        self
    }

    /// The id a request's cookie carries, or a new one for its address (with the cookie
    /// that hands it over).
    pub fn identify(
        &self,
        headers: &axum::http::HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<Identified, Refused> {
        if let Some(key) = self.from_headers(headers) {
            return Ok(Identified { key: key.to_owned(), set_cookie: None });
        }
        let value = self.issue(addr, Instant::now())?;
        let key = value.split_once('.').map_or(value.as_str(), |(id, _)| id).to_owned();
        let set_cookie = axum::http::HeaderValue::from_str(&Self::set_cookie(&value)).ok();
        Ok(Identified { key, set_cookie })
    }

    fn signature(&self, id: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    /// A new id for a client at `addr` (none when the address is unknown: nothing to count),
    /// as the cookie value `id.signature`; refused when the address had its share.
    pub fn issue(&self, addr: Option<IpAddr>, now: Instant) -> Result<String, Refused> {
        if let Some(addr) = addr {
            self.take(counted(addr), now)?;
            if let Some(tell) = self.on_issue.get() {
                tell(counted(addr));
            }
        }
        let mut bytes = [0u8; 8];
        // The id need not be secret, only unique (the signature is what a client cannot make);
        // without the random source two could be the same, so none is issued.
        getrandom::fill(&mut bytes).map_err(|_| Refused::NoRandom)?;
        let id = format!("k-{}", hex(&bytes));
        let signature = self.signature(&id);
        Ok(format!("{id}.{signature}"))
    }

    /// The id in a cookie value, if the server issued it.
    pub fn verify<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (id, signature) = value.split_once('.')?;
        if !(id.len() == 18 && id.starts_with("k-") && id[2..].bytes().all(|b| b.is_ascii_hexdigit())) {
            return None;
        }
        let expected = self.signature(id);
        // Compare every byte, whatever the first difference.
        let same = expected.len() == signature.len()
            && expected.bytes().zip(signature.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
        same.then_some(id)
    }

    /// The id a request's cookies carry, if the server issued it.
    pub fn from_headers<'a>(&self, headers: &'a axum::http::HeaderMap) -> Option<&'a str> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == COOKIE)
            .find_map(|(_, v)| self.verify(v))
    }

    /// The `Set-Cookie` value that hands `value` (from [`Issuer::issue`]) to a browser.
    pub fn set_cookie(value: &str) -> String {
        format!("{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict", COOKIE_MAX_AGE.as_secs())
    }

    fn take(&self, addr: IpAddr, now: Instant) -> Result<(), Refused> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&addr) && buckets.len() >= self.max_addresses {
            self.forget_full(&mut buckets, now);
            if buckets.len() >= self.max_addresses {
                return Err(Refused::TooMany(REFILL));
            }
        }
        let per_address = self.per_address;
        let bucket = buckets.entry(addr).or_insert(Bucket { left: per_address, at: now });
        refill(bucket, per_address, now);
        if bucket.left == 0 {
            let wait = REFILL.saturating_sub(now.saturating_duration_since(bucket.at));
            return Err(Refused::TooMany(wait));
        }
        bucket.left -= 1;
        Ok(())
    }

    /// Calls `tell` with the (counted) address of every id issued here from now on.
    pub fn on_issue(&self, tell: impl Fn(IpAddr) + Send + Sync + 'static) {
        let _ = self.on_issue.set(Box::new(tell));
    }

    /// Another replica of the cluster issued an id to `addr`: it comes out of the same share
    /// (if the address has any left; never below none).
    pub fn issued_elsewhere(&self, addr: IpAddr, now: Instant) {
        let _ = self.take(addr, now);
    }

    fn forget_full(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let per_address = self.per_address;
        buckets.retain(|_, b| {
            refill(b, per_address, now);
            b.left < per_address
        });
    }

    /// Forgets addresses whose bucket refilled (they are as if never seen). Run on every tick.
    pub fn sweep(&self, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.forget_full(&mut buckets, now);
    }

    /// Addresses tracked (for tests and the bench).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// What an address counts as: itself, or for IPv6 its /64.
fn counted(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Brings a bucket up to `now`: one id back per [`REFILL`] elapsed, up to `per_address`.
fn refill(bucket: &mut Bucket, per_address: u32, now: Instant) {
    let gained = now.saturating_duration_since(bucket.at).as_millis() / REFILL.as_millis();
    if gained > 0 {
        bucket.left = u32::try_from(u128::from(bucket.left) + gained).unwrap_or(u32::MAX).min(per_address);
        bucket.at += REFILL * u32::try_from(gained).unwrap_or(u32::MAX);
        if bucket.left == per_address {
            bucket.at = now;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_issued_on_other_replicas_come_out_of_the_same_share() {
        let issuer = Issuer::new("a-token-of-sixteen-or-more", 3);
        let told = std::sync::Arc::new(Mutex::new(Vec::new()));
        let heard = told.clone();
        issuer.on_issue(move |a| heard.lock().unwrap().push(a));
        let addr: IpAddr = "10.0.0.7".parse().unwrap();
        let now = Instant::now();
        issuer.issued_elsewhere(addr, now);
        issuer.issued_elsewhere(addr, now);
        assert!(issuer.issue(Some(addr), now).is_ok(), "one of three left");
        assert!(matches!(issuer.issue(Some(addr), now), Err(Refused::TooMany(_))));
        assert_eq!(*told.lock().unwrap(), [addr], "the one issued here is told, once");
    }

    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_issued_id_verifies_and_nothing_else_does() {
        let issuer = Issuer::new("token-a", 10);
        let value = issuer.issue(ip("10.0.0.1"), Instant::now()).unwrap();
        let id = issuer.verify(&value).expect("its own id");
        assert!(value.starts_with(id) && id.starts_with("k-") && id.len() == 18, "{value}");
        assert_ne!(issuer.issue(ip("10.0.0.1"), Instant::now()).unwrap(), value, "every id is new");
        // Another token (another lecture) does not accept it; replicas sharing the token do.
        assert_eq!(Issuer::new("token-b", 10).verify(&value), None);
        assert_eq!(Issuer::new("token-a", 10).verify(&value), Some(id));
        // A client that makes up its own id, or changes one digit, gets nothing.
        let (_, signature) = value.split_once('.').unwrap();
        for forged in [
            format!("k-0000000000000000.{signature}"),
            format!("{id}.{}", "0".repeat(32)),
            format!("{id}.{}", &signature[..31]),
            id.to_owned(),
            format!("c-ana.{signature}"),
            String::new(),
        ] {
            assert_eq!(issuer.verify(&forged), None, "{forged}");
        }
    }

    #[test]
    fn the_id_is_read_from_its_cookie_among_others() {
        let issuer = Issuer::new("t", 10);
        let value = issuer.issue(None, Instant::now()).unwrap();
        let mut headers = axum::http::HeaderMap::new();
        headers.append("cookie", "theme=dark; wirescope_id=k-00.bad".parse().unwrap());
        assert_eq!(issuer.from_headers(&headers), None, "a bad one is no id");
        headers.append("cookie", format!("a=b; {COOKIE}={value}").parse().unwrap());
        assert_eq!(issuer.from_headers(&headers), issuer.verify(&value));
        let cookie = Issuer::set_cookie(&value);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    }

    #[test]
    fn one_address_gets_its_share_then_waits_and_others_are_unaffected() {
        let issuer = Issuer::new("t", 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            issuer.issue(ip("10.0.0.1"), t0).unwrap();
        }
        let Err(Refused::TooMany(wait)) = issuer.issue(ip("10.0.0.1"), t0) else { panic!("a fourth id") };
        assert!(wait <= REFILL && !wait.is_zero());
        issuer.issue(ip("10.0.0.2"), t0).expect("another address has its own share");
        // One comes back per REFILL, never more than the share.
        issuer.issue(ip("10.0.0.1"), t0 + REFILL).expect("refilled one");
        assert!(issuer.issue(ip("10.0.0.1"), t0 + REFILL).is_err());
        let later = t0 + REFILL * 100;
        for _ in 0..3 {
            issuer.issue(ip("10.0.0.1"), later).unwrap();
        }
        assert!(issuer.issue(ip("10.0.0.1"), later).is_err(), "the share is a cap, not a sum");
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_the_table_of_addresses_is_capped() {
        let issuer = Issuer::new("t", 1).with_max_addresses(2);
        let t0 = Instant::now();
        issuer.issue(ip("2001:db8:1:2::1"), t0).unwrap();
        assert!(issuer.issue(ip("2001:db8:1:2:ffff::9"), t0).is_err(), "the same /64");
        issuer.issue(ip("10.0.0.1"), t0).unwrap();
        // Two addresses counted, neither refilled: a third is refused, not let through uncounted.
        assert_eq!(issuer.issue(ip("10.0.0.2"), t0), Err(Refused::TooMany(REFILL)));
        assert_eq!(issuer.tracked(), 2);
        // Once one has refilled, it is forgotten to make room.
        issuer.issue(ip("10.0.0.2"), t0 + REFILL).expect("room after a refill");
    }

    #[test]
    fn refilled_addresses_are_forgotten() {
        let issuer = Issuer::new("t", 2);
        let t0 = Instant::now();
        issuer.issue(ip("10.0.0.1"), t0).unwrap();
        issuer.issue(ip("10.0.0.2"), t0).unwrap();
        issuer.issue(ip("10.0.0.2"), t0).unwrap();
        issuer.sweep(t0);
        assert_eq!(issuer.tracked(), 2);
        issuer.sweep(t0 + REFILL);
        assert_eq!(issuer.tracked(), 1, "10.0.0.1 is full again, 10.0.0.2 is not");
        issuer.sweep(t0 + REFILL * 2);
        assert_eq!(issuer.tracked(), 0);
    }
}
