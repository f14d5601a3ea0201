//! Who is on the wire: the client registry (every client seen, described once, and its
//! nickname), the lane key of a request, and what a valid client id is.
//!
//! The registry records a `client` event when a client is first seen or renamed; it does so
//! through [`Recorder`], so it needs no event log of its own kind.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::Request;
use protocol::ClientInfo;

use crate::limits::{MAX_CLIENTS, NAME_LIMIT, NAME_WINDOW, NICKNAME_CHARS};
use crate::paths::CLIENT_HEADER;
use crate::secrets::Secrets;

/// Where the registry records what it learns about a client (the event log).
pub trait Recorder {
    /// A client was first seen, or what it is called changed: record a `client` event.
    fn describe(&self, client: &str, info: ClientInfo);
}

impl<T: Recorder + ?Sized> Recorder for Arc<T> {
    fn describe(&self, client: &str, info: ClientInfo) {
        (**self).describe(client, info);
    }
}

/// A client id as the app makes them: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_client_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The clients seen so far and what they call themselves.
#[derive(Debug, Default)]
pub struct Clients {
    known: RwLock<HashMap<String, ClientInfo>>,
    /// Per lane: the name changes it asked for itself, whether the instructor set its name,
    /// and who owns it.
    renames: Mutex<HashMap<String, Naming>>,
    /// Scrubbed out of every name (a nickname may be made of the token).
    secrets: Arc<Secrets>,
}

/// How a lane's name may change.
#[derive(Debug, Default)]
struct Naming {
    /// Recent changes the client asked for.
    times: VecDeque<Instant>,
    /// The instructor set the name: the client cannot change it.
    pinned: bool,
    /// The issued id ([`crate::ids`]) that first named the lane, or [`INSTRUCTOR_OWNER`]:
    /// only it may rename the lane.
    owner: Option<String>,
}

/// The owner of a lane the instructor's page claimed before its browser had an issued id.
pub const INSTRUCTOR_OWNER: &str = "instructor";

/// Why a client's own nickname change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenameRefused {
    TooMany,
    SetByInstructor,
    NotYours,
}

impl std::fmt::Display for RenameRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RenameRefused::TooMany => "too many name changes; wait a minute",
            RenameRefused::SetByInstructor => "the instructor set this name",
            RenameRefused::NotYours => "this lane was named by another client",
        })
    }
}

/// Most clients sent to a screen that joins ([`Clients::roster`]); later ones are named by
/// their `client` events as they act.
pub const ROSTER_LIMIT: usize = 5_000;

impl Clients {
    /// Notes a client; records a `client` event the first time it is seen.
    pub fn seen(
        &self,
        log: &(impl Recorder + ?Sized),
        key: &str,
        addr: Option<&str>,
        user_agent: Option<&str>,
    ) {
        if self.known.read().unwrap_or_else(PoisonError::into_inner).contains_key(key) {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if known.contains_key(key) || known.len() >= MAX_CLIENTS {
            return;
        }
        let info = ClientInfo {
            nickname: None,
            agent: Some(export::names::agent_name(user_agent.unwrap_or("")).to_owned()),
            addr: addr.map(str::to_owned),
            user_agent: user_agent.map(str::to_owned),
        };
        let public = info.public();
        known.insert(key.to_owned(), info);
        drop(known);
        log.describe(key, public);
    }

    /// A nickname the client with issued id `owner` asked for itself: at most
    /// [`NAME_LIMIT`] changes a minute, never over a name the instructor set, and only for a
    /// lane it named first (another client that sends the same lane id cannot rename it).
    pub fn rename_by_client(
        &self,
        log: &(impl Recorder + ?Sized),
        key: &str,
        nickname: &str,
        owner: &str,
    ) -> Result<(), RenameRefused> {
        let nickname = self.clean(nickname);
        if self.nickname(key).unwrap_or_default() == nickname {
            return Ok(());
        }
        // Held until the name is set, so an instructor's name cannot slip in between.
        let mut renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        {
            if renames.len() >= MAX_CLIENTS && !renames.contains_key(key) {
                return Err(RenameRefused::TooMany);
            }
            let naming = renames.entry(key.to_owned()).or_default();
            if naming.owner.as_deref().is_some_and(|o| o != owner) {
                return Err(RenameRefused::NotYours);
            }
            naming.owner = Some(owner.to_owned());
            let (times, pinned) = (&mut naming.times, naming.pinned);
            if pinned {
                return Err(RenameRefused::SetByInstructor);
            }
            let now = Instant::now();
            while times.front().is_some_and(|t| now.duration_since(*t) > NAME_WINDOW) {
                times.pop_front();
            }
            if times.len() >= NAME_LIMIT {
                return Err(RenameRefused::TooMany);
            }
            times.push_back(now);
        }
        self.rename(log, key, nickname);
        drop(renames);
        Ok(())
    }

    /// The instructor names a client: the name stays until the instructor changes it.
    pub fn rename_by_instructor(&self, log: &(impl Recorder + ?Sized), key: &str, nickname: &str) {
        let nickname = self.clean(nickname);
        let mut renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        renames.entry(key.to_owned()).or_default().pinned = !nickname.is_empty();
        self.rename(log, key, nickname);
    }

    /// The instructor's page takes its own lane: from now on only `owner` (the id its
    /// browser was issued, else [`INSTRUCTOR_OWNER`]) may rename it, and it is named
    /// `nickname` if it has no name yet, or had one from another client.
    pub fn claim_for_instructor(
        &self,
        log: &(impl Recorder + ?Sized),
        key: &str,
        owner: &str,
        nickname: &str,
    ) {
        let mut renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken_from_another = false;
        if renames.len() < MAX_CLIENTS || renames.contains_key(key) {
            let naming = renames.entry(key.to_owned()).or_default();
            taken_from_another = naming.owner.as_deref().is_some_and(|o| o != owner);
            naming.owner = Some(owner.to_owned());
        }
        // A name another client gave the lane first is not the instructor's.
        if taken_from_another || self.nickname(key).is_none() {
            self.rename(log, key, self.clean(nickname));
        }
        drop(renames);
    }

    /// Names a client that has no name yet, without fixing it: the client (a simulated
    /// student) may rename itself later.
    pub fn name_if_unnamed(&self, log: &(impl Recorder + ?Sized), key: &str, nickname: &str) {
        let renames = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        if self.nickname(key).is_none() {
            self.rename(log, key, self.clean(nickname));
        }
        drop(renames);
    }

    /// Sets a client's nickname (already normalized); records a `client` event when it changed.
    /// Callers hold the `renames` lock.
    fn rename(&self, log: &(impl Recorder + ?Sized), key: &str, nickname: String) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        let info = known.entry(key.to_owned()).or_default();
        let new = (!nickname.is_empty()).then_some(nickname);
        if info.nickname == new {
            return;
        }
        info.nickname = new;
        let public = info.public();
        drop(known);
        log.describe(key, public);
    }

    /// A registry whose names are scrubbed of `secrets`.
    pub fn new(secrets: Arc<Secrets>) -> Self {
        Self { secrets, ..Self::default() }
    }

    /// A nickname as stored: scrubbed, trimmed and cut.
    fn clean(&self, nickname: &str) -> String {
        normalize(&self.secrets.scrub(nickname))
    }

    /// Whether the client was seen before.
    pub fn knows(&self, key: &str) -> bool {
        self.known.read().unwrap_or_else(PoisonError::into_inner).contains_key(key)
    }

    /// Every known client and what it is called now (for a screen that joins late), at most
    /// [`ROSTER_LIMIT`]: named clients first, then the rest, each group by key. What every
    /// screen may know: no address, no user agent.
    pub fn roster(&self) -> Vec<protocol::ClientEntry> {
        self.entries(ClientInfo::public)
    }

    /// The same with each client's address and user agent: the instructor's alone.
    pub fn private_roster(&self) -> Vec<protocol::ClientEntry> {
        self.entries(ClientInfo::clone)
    }

    fn entries(&self, show: impl Fn(&ClientInfo) -> ClientInfo) -> Vec<protocol::ClientEntry> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<protocol::ClientEntry> = known
            .iter()
            .map(|(k, info)| protocol::ClientEntry { client: k.clone(), info: show(info) })
            .collect();
        drop(known);
        all.sort_by(|a, b| {
            (a.info.nickname.is_none(), &a.client).cmp(&(b.info.nickname.is_none(), &b.client))
        });
        all.truncate(ROSTER_LIMIT);
        all
    }

    pub fn nickname(&self, key: &str) -> Option<String> {
        self.known.read().unwrap_or_else(PoisonError::into_inner).get(key).and_then(|i| i.nickname.clone())
    }
}

/// A nickname as stored: trimmed, at most [`NICKNAME_CHARS`] characters.
pub fn normalize(nickname: &str) -> String {
    nickname.trim().chars().take(NICKNAME_CHARS).collect()
}

/// The lane key of a request's client: its `X-Wirescope-Client` id (or `client=` on a
/// WebSocket URL), else the pseudonym of its address ([`pseudonym`]).
pub fn client_key<B>(req: &Request<B>) -> String {
    match client_id(req) {
        Some(id) => id.to_owned(),
        None => pseudonym(remote_ip(req).as_deref()),
    }
}

/// The client id a request names, if it names a valid one.
pub fn client_id<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_param(req.uri().query(), "client"))
        .filter(|id| valid_client_id(id))
}

pub fn remote_ip<B>(req: &Request<B>) -> Option<String> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

/// The address a request came from (the client's, as [`crate::serve`] or a trusted balancer's
/// header put it), if known. An extractor that never rejects.
#[derive(Debug, Clone, Copy)]
pub struct RemoteIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RemoteIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RemoteIp(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// The lane of a connection's anonymous client, worked out once per TCP connection instead of
/// once per request: [`crate::serve`] puts one on every request of a connection, and the
/// capture layer asks it for the pseudonym of the request's address. Keyed by that address,
/// since a trusted balancer's header ([`crate::proxy`]) may name another client on the same
/// connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionLane(Arc<Mutex<Option<LastLane>>>);

/// The address a connection's last request came from, as text, and its pseudonym.
type LastLane = (std::net::IpAddr, Arc<str>, Arc<str>);

impl ConnectionLane {
    /// The request's address (as text) and its pseudonym; computed only when the address is
    /// not the one this connection's last request came from.
    pub fn of<B>(&self, req: &Request<B>) -> (Option<Arc<str>>, Arc<str>) {
        let Some(ip) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
            return (None, pseudonym(None).into());
        };
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, addr, lane)) = last.as_ref().filter(|(seen, ..)| *seen == ip) {
            debug_assert_eq!(*seen, ip);
            return (Some(addr.clone()), lane.clone());
        }
        let addr: Arc<str> = ip.to_string().into();
        let lane: Arc<str> = pseudonym(Some(&addr)).into();
        *last = Some((ip, addr.clone(), lane.clone()));
        (Some(addr), lane)
    }
}

/// The secret pseudonyms are keyed with ([`key_pseudonyms`]).
static PSEUDONYM_SECRET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Keys every pseudonym with `secret` — the instructor's token, which the replicas of a
/// cluster share, so they all name an address alike. Set once, at start; a later call changes
/// nothing.
pub fn key_pseudonyms(secret: &str) {
    let _ = PSEUDONYM_SECRET.set(secret.as_bytes().to_vec());
}

/// The lane key of a client without an id: `anon:` and a keyed hash of its address (HMAC-SHA256
/// with the token), the same on every replica and for as long as the token stays, so no screen
/// learns the address from it. The instructor maps it back (`GET /api/instructor/clients`).
/// Before [`key_pseudonyms`] (in tests that build no server), the key is random.
pub fn pseudonym(ip: Option<&str>) -> String {
    use hmac::Mac;
    static RANDOM: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let Some(ip) = ip else { return "anon:unknown".to_owned() };
    match PSEUDONYM_SECRET.get() {
        Some(secret) => {
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(b"pseudonym:");
            mac.update(ip.as_bytes());
            let bytes = mac.finalize().into_bytes();
            format!("anon:{:02x}{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2], bytes[3])
        }
        None => {
            let hash = std::hash::BuildHasher::hash_one(RANDOM.get_or_init(Default::default), ip);
            format!("anon:{:08x}", hash >> 32)
        }
    }
}

/// The value of `name` in a query string, as written.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connections_lane_follows_the_address_of_each_request() {
        let request = |ip: &str| {
            let mut req = Request::new(());
            let addr: SocketAddr = format!("{ip}:5000").parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
            req
        };
        let lane = super::ConnectionLane::default();
        let (addr, first) = lane.of(&request("203.0.113.7"));
        assert_eq!(addr.as_deref(), Some("203.0.113.7"));
        assert_eq!(&*first, super::pseudonym(Some("203.0.113.7")));
        let (_, again) = lane.of(&request("203.0.113.7"));
        assert!(Arc::ptr_eq(&first, &again), "worked out once for the connection");
        // Behind a trusted balancer one connection carries many clients: each gets its own.
        let (addr, other) = lane.of(&request("198.51.100.2"));
        assert_eq!(addr.as_deref(), Some("198.51.100.2"));
        assert_eq!(&*other, super::pseudonym(Some("198.51.100.2")));
        assert_ne!(first, other);
        assert_eq!(lane.of(&Request::new(())).1.as_ref(), "anon:unknown");
    }

    use super::*;

    /// The `client` events the registry records, in order.
    #[derive(Default)]
    struct Notes(Mutex<Vec<(String, ClientInfo)>>);

    impl Recorder for Notes {
        fn describe(&self, client: &str, info: ClientInfo) {
            self.0.lock().unwrap().push((client.to_owned(), info));
        }
    }

    #[test]
    fn client_ids_are_short_and_plain() {
        assert!(valid_client_id("c-9f3a_x"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"x".repeat(65)));
    }

    #[test]
    fn repeating_a_long_name_is_no_change_and_costs_nothing() {
        let log = Notes::default();
        let clients = Clients::default();
        let long = "A name far longer than the forty characters that are kept";
        for _ in 0..10 {
            assert_eq!(clients.rename_by_client(&log, "c-1", &format!("  {long} "), "k-1"), Ok(()));
        }
        assert_eq!(clients.nickname("c-1").map(|n| n.chars().count()), Some(40));
        assert_eq!(clients.rename_by_client(&log, "c-1", "Ana", "k-1"), Ok(()), "one real change of three");
        clients.rename_by_instructor(&log, "c-1", "Student 7");
        assert_eq!(clients.rename_by_client(&log, "c-1", "Bob", "k-1"), Err(RenameRefused::SetByInstructor));
        assert_eq!(
            clients.rename_by_client(&log, "c-1", "Student 7 ", "k-1"),
            Ok(()),
            "the same name is no change"
        );
        let names: Vec<Option<String>> =
            log.0.lock().unwrap().iter().map(|(_, i)| i.nickname.clone()).collect();
        assert_eq!(names.len(), 3, "one `client` event per real change: {names:?}");
    }

    #[test]
    fn only_the_client_that_named_a_lane_may_rename_it() {
        let log = Notes::default();
        let clients = Clients::default();
        assert_eq!(clients.rename_by_client(&log, "c-ana", "Ana", "k-ana"), Ok(()));
        assert_eq!(
            clients.rename_by_client(&log, "c-ana", "Not Ana", "k-mallory"),
            Err(RenameRefused::NotYours)
        );
        assert_eq!(clients.nickname("c-ana").as_deref(), Some("Ana"));
        assert_eq!(clients.rename_by_client(&log, "c-ana", "Ana B", "k-ana"), Ok(()));
        // The instructor's lane: claimed by its page, named once, no student renames it.
        clients.claim_for_instructor(&log, "c-prof", INSTRUCTOR_OWNER, "Instructor");
        assert_eq!(
            clients.rename_by_client(&log, "c-prof", "Prof. Fake", "k-mallory"),
            Err(RenameRefused::NotYours)
        );
        assert_eq!(clients.nickname("c-prof").as_deref(), Some("Instructor"));
        // Even a lane a student named first: the instructor's page takes it.
        assert_eq!(clients.rename_by_client(&log, "c-taken", "Me", "k-mallory"), Ok(()));
        clients.claim_for_instructor(&log, "c-taken", "k-prof", "Instructor");
        assert_eq!(
            clients.nickname("c-taken").as_deref(),
            Some("Instructor"),
            "not the name a student gave it"
        );
        assert_eq!(
            clients.rename_by_client(&log, "c-taken", "Me again", "k-mallory"),
            Err(RenameRefused::NotYours)
        );
        assert_eq!(clients.rename_by_client(&log, "c-taken", "Prof. Real", "k-prof"), Ok(()));
    }

    #[test]
    fn query_parameters_are_found_by_exact_name() {
        assert_eq!(query_param(Some("client=a&ref=3"), "ref"), Some("3"));
        assert_eq!(query_param(Some("xclient=a"), "client"), None);
        assert_eq!(query_param(None, "client"), None);
    }
}
