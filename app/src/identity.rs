//! Who this browser is: a client id and a nickname, kept in local storage so a reload keeps
//! them. The id goes with every request (`X-Wirescope-Client`) and WebSocket (`client=`).

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

const ID_KEY: &str = "wirescope.client";
const NICK_KEY: &str = "wirescope.nickname";

/// A fresh id: `c-` and ten base-36 characters.
fn fresh_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::from("c-");
    for _ in 0..10 {
        let i = (js_sys::Math::random() * DIGITS.len() as f64) as usize % DIGITS.len();
        id.push(DIGITS[i] as char);
    }
    id
}

/// This browser's client id (created on first use).
pub fn client_id() -> String {
    let store = storage();
    if let Some(id) = store.as_ref().and_then(|s| s.get_item(ID_KEY).ok().flatten())
        && id.len() <= 64
        && !id.is_empty()
    {
        return id;
    }
    let id = fresh_id();
    if let Some(s) = store {
        let _ = s.set_item(ID_KEY, &id);
    }
    id
}

pub fn nickname() -> String {
    storage().and_then(|s| s.get_item(NICK_KEY).ok().flatten()).unwrap_or_default()
}

pub fn set_nickname(nick: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(NICK_KEY, nick);
    }
}

/// The first exchange id of this page: unique across reloads (the server's log still holds
/// the previous page's exchanges under the same client id).
pub fn first_exchange_id() -> u64 {
    (js_sys::Date::now() as u64).saturating_mul(1000) % (1 << 52)
}
