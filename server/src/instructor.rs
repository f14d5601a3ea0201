//! The instructor: a token printed at start (`http://HOST:PORT/#token=TOKEN`), required as
//! `Authorization: Bearer TOKEN` by every route under `/api/instructor/` — faults, holding,
//! "server down", reset, new session, highlight, moderation, sessions, the join URL and QR.
//! Without it: 403. The token is registered as a secret, so no capture ever shows it.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use protocol::instructor::{Fault, HoldState, NewFault, Room};
use protocol::{EventKind, Note, NoteKind, Stamps};
use serde::Deserialize;

use crate::extract::{JsonBody, PathText};
use crate::{ApiError, AppState};

/// The file in the data directory that keeps the token across restarts.
pub const TOKEN_FILE: &str = "instructor-token";

/// A new random token: 32 base64url characters (24 random bytes from the operating system).
/// Without the system's random source there is no token (and no start): a guessable one
/// would hand the lecture to anyone.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("the system random source failed: {e}")))?;
    Ok(base64url(&bytes))
}

/// The instructor's token kept in `dir` (readable by its owner only), so the instructor's link
/// stays the same across restarts; a new one when there is none or `rotate` is asked.
pub fn stored_token(dir: &std::path::Path, rotate: bool) -> std::io::Result<String> {
    let path = dir.join(TOKEN_FILE);
    if !rotate && let Ok(text) = std::fs::read_to_string(&path) {
        let t = text.trim();
        if t.len() >= 22 && t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            // A file others could read (copied in, or an old umask) is made private again.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if std::fs::metadata(&path)?.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
            }
            return Ok(t.to_owned());
        }
    }
    let token = new_token()?;
    let tmp = dir.join(format!("{TOKEN_FILE}.new"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Proof that a request carries the instructor's token.
#[derive(Debug, Clone, Copy)]
pub struct Instructor;

impl FromRequestParts<AppState> for Instructor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let token = state.token();
        // Compare every byte, whatever the first difference (no timing hint).
        let same = given.len() == token.len()
            && given.bytes().zip(token.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
        if same { Ok(Instructor) } else { Err(ApiError::Forbidden) }
    }
}

fn note(state: &AppState, what: NoteKind, client: &str, text: String) {
    let at = Stamps { client_us: None, server_us: Some(crate::now_us()) };
    state.log().record(client, 0, None, at, EventKind::Note(Note { what, text }));
}

/// Addresses students can open: the listening address, or every network address when the
/// server listens on all of them.
pub fn join_urls(state: &AppState) -> Vec<String> {
    let Some(addr) = state.local_addr() else { return Vec::new() };
    if !addr.ip().is_unspecified() {
        return vec![format!("http://{addr}/")];
    }
    let mut urls: Vec<String> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback() && i.ip().is_ipv4())
        .map(|i| format!("http://{}:{}/", i.ip(), addr.port()))
        .collect();
    urls.push(format!("http://127.0.0.1:{}/", addr.port()));
    urls
}

/// A QR code of `text` as an SVG document.
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .dark_color(qrcode::render::svg::Color("#16213a"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
        Err(_) => String::new(),
    }
}

fn room(state: &AppState) -> Room {
    let urls = join_urls(state);
    Room {
        qr_svg: urls.first().map(|u| qr_svg(u)).unwrap_or_default(),
        join_urls: urls,
        faults: state.faults().list(),
        hold: state.faults().hold_state(),
        down_for_s: state.faults().down_for_s(),
        muted: state.hub().muted(),
        highlight: state.highlight(),
    }
}

async fn get_room(_: Instructor, State(state): State<AppState>) -> Json<Room> {
    Json(room(&state))
}

async fn add_fault(
    _: Instructor,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Fault>, ApiError> {
    let nf: NewFault = crate::extract::from_object(body)?;
    crate::faults::validate(&nf)?;
    let (fault, hit) = state.faults().add(nf);
    let client = fault.target.client.clone().unwrap_or_else(|| crate::capture::SERVER_LANE.to_owned());
    let what = serde_json::to_value(&fault.fault)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let scope = fault.target.path.clone().unwrap_or_else(|| "all traffic".to_owned());
    let text = if hit > 0 {
        format!("fault: {what} on {hit} open connection(s)")
    } else {
        format!("fault armed: {what} on {scope}")
    };
    note(&state, NoteKind::Fault, &client, text);
    Ok(Json(fault))
}

async fn list_faults(_: Instructor, State(state): State<AppState>) -> Json<Vec<Fault>> {
    Json(state.faults().list())
}

async fn remove_fault(
    _: Instructor,
    State(state): State<AppState>,
    PathText(p): PathText,
) -> Result<StatusCode, ApiError> {
    let id = p[0]
        .parse::<u64>()
        .map_err(|_| ApiError::Validation([("id".to_owned(), "must be an integer".to_owned())].into()))?;
    if state.faults().remove(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no fault {id}")))
    }
}

async fn clear_faults(_: Instructor, State(state): State<AppState>) -> StatusCode {
    state.faults().clear();
    note(&state, NoteKind::Fault, crate::capture::SERVER_LANE, "all faults removed".to_owned());
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Down {
    seconds: u64,
}

fn parse<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
    crate::extract::from_object(body)
}

async fn down(
    _: Instructor,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Room>, ApiError> {
    let d: Down = parse(body)?;
    if !(1..=300).contains(&d.seconds) {
        return Err(ApiError::Validation(
            [("seconds".to_owned(), "must be from 1 to 300".to_owned())].into(),
        ));
    }
    let cut = state.faults().down(d.seconds);
    note(
        &state,
        NoteKind::Down,
        crate::capture::SERVER_LANE,
        format!("server down for {} s ({cut} connections cut)", d.seconds),
    );
    Ok(Json(room(&state)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HoldSet {
    on: bool,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

async fn hold(
    _: Instructor,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<HoldState>, ApiError> {
    let h: HoldSet = parse(body)?;
    state.faults().set_hold(h.on, h.timeout_ms);
    let text =
        if h.on { "holding: each message waits at the server for the instructor" } else { "holding off" };
    note(&state, NoteKind::Held, crate::capture::SERVER_LANE, text.to_owned());
    Ok(Json(state.faults().hold_state()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Release {
    #[serde(default)]
    count: Option<usize>,
}

async fn release(
    _: Instructor,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<HoldState>, ApiError> {
    let r: Release = parse(body)?;
    state.faults().release(r.count);
    Ok(Json(state.faults().hold_state()))
}

async fn reset(_: Instructor, State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    let store = state.transcripts().clone();
    let ids = tokio::task::spawn_blocking(move || store.restore_seed())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)?;
    note(
        &state,
        NoteKind::Session,
        crate::capture::SERVER_LANE,
        format!("transcripts reset to the seed (ids {:?})", ids),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

async fn new_session(
    _: Instructor,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let n: Named = parse(body)?;
    let name = n.name.map(|s| s.trim().chars().take(80).collect::<String>()).filter(|s| !s.is_empty());
    let name = name.unwrap_or_else(|| format!("session at {}", crate::time_of_day(crate::now_us())));
    let log = state.log().clone();
    let nm = name.clone();
    tokio::task::spawn_blocking(move || log.new_session(&nm))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    note(&state, NoteKind::Session, crate::capture::SERVER_LANE, name);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Highlight {
    client: Option<String>,
}

async fn highlight(
    _: Instructor,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let h: Highlight = parse(body)?;
    state.set_highlight(h.client.clone());
    note(&state, NoteKind::Highlight, h.client.as_deref().unwrap_or(""), String::from("highlight"));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Moderate {
    #[serde(default)]
    muted: Option<bool>,
    #[serde(default)]
    nickname: Option<String>,
}

async fn moderate(
    _: Instructor,
    State(state): State<AppState>,
    PathText(p): PathText,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let client = p[0].clone();
    let m: Moderate = parse(body)?;
    if let Some(muted) = m.muted {
        state.hub().set_muted(&client, muted);
    }
    if let Some(nick) = m.nickname {
        state.clients().rename_by_instructor(state.log(), &client, &nick);
        state.hub().rename(&client, &nick);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn kick(_: Instructor, State(state): State<AppState>, PathText(p): PathText) -> StatusCode {
    let ctl = crate::ws::Control::Close(4000, "kicked by the instructor".to_owned());
    let n = state.faults().sockets.control(Some(&p[0]), None, &ctl);
    note(&state, NoteKind::Fault, &p[0], format!("kicked by the instructor ({n} connections closed)"));
    StatusCode::NO_CONTENT
}

async fn rename_session(
    _: Instructor,
    State(state): State<AppState>,
    PathText(p): PathText,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let id = p[0]
        .parse::<u64>()
        .map_err(|_| ApiError::Validation([("id".to_owned(), "must be an integer".to_owned())].into()))?;
    let n: Named = parse(body)?;
    let name = n.name.unwrap_or_default().trim().chars().take(80).collect::<String>();
    if name.is_empty() {
        return Err(ApiError::Validation([("name".to_owned(), "must not be empty".to_owned())].into()));
    }
    let log = state.log().clone();
    let done = tokio::task::spawn_blocking(move || {
        log.command(|reply| crate::log::db::Command::Rename { id, name, reply })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match done {
        Some(Ok(true)) => Ok(StatusCode::NO_CONTENT),
        Some(Ok(false)) | None => Err(ApiError::NotFound(format!("no session {id}"))),
        Some(Err(e)) => Err(ApiError::Internal(e.to_string())),
    }
}

async fn delete_session(
    _: Instructor,
    State(state): State<AppState>,
    PathText(p): PathText,
) -> Result<StatusCode, ApiError> {
    let id = p[0]
        .parse::<u64>()
        .map_err(|_| ApiError::Validation([("id".to_owned(), "must be an integer".to_owned())].into()))?;
    if id == state.log().session() {
        return Err(ApiError::BadRequest(
            "the session being recorded cannot be deleted; start a new one first".to_owned(),
        ));
    }
    let log = state.log().clone();
    let done = tokio::task::spawn_blocking(move || {
        log.command(|reply| crate::log::db::Command::Delete { id, reply })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match done {
        Some(Ok(true)) => Ok(StatusCode::NO_CONTENT),
        Some(Ok(false)) | None => Err(ApiError::NotFound(format!("no session {id}"))),
        Some(Err(e)) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Answers whether the token is right; the instructor's own lane, while it has no name,
/// is named "Instructor" on every screen.
async fn whoami(_: Instructor, State(state): State<AppState>, req: axum::extract::Request) -> StatusCode {
    let key = crate::capture::client_key(&req);
    if !key.starts_with("addr:") {
        state.clients().name_if_unnamed(state.log(), &key, INSTRUCTOR_NAME);
    }
    StatusCode::NO_CONTENT
}

/// The instructor's lane title until the instructor picks another.
pub const INSTRUCTOR_NAME: &str = "Instructor";

/// Every instructor route (all need the token).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/instructor", get(whoami))
        .route("/api/instructor/room", get(get_room))
        .route("/api/instructor/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/api/instructor/faults/{id}", delete(remove_fault))
        .route("/api/instructor/down", post(down))
        .route("/api/instructor/hold", post(hold))
        .route("/api/instructor/release", post(release))
        .route("/api/instructor/reset", post(reset))
        .route("/api/instructor/session", post(new_session))
        .route("/api/instructor/sessions/{id}", axum::routing::patch(rename_session).delete(delete_session))
        .route("/api/instructor/highlight", post(highlight))
        .route("/api/instructor/clients/{client}", axum::routing::patch(moderate))
        .route("/api/instructor/clients/{client}/kick", post(kick))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_base64url() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(a.len() >= 22 && a != b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
        assert_eq!(base64url(b"\xff\xfe\xfd"), "__79");
        assert_eq!(base64url(b"Man"), "TWFu");
    }

    #[test]
    fn the_token_is_kept_owner_only_across_restarts_until_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let first = stored_token(dir.path(), false).unwrap();
        assert_eq!(stored_token(dir.path(), false).unwrap(), first, "the same link after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join(TOKEN_FILE);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(stored_token(dir.path(), false).unwrap(), first);
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "made private again");
        }
        let rotated = stored_token(dir.path(), true).unwrap();
        assert_ne!(rotated, first);
        assert_eq!(stored_token(dir.path(), false).unwrap(), rotated);
        // A damaged file is replaced, not trusted.
        std::fs::write(dir.path().join(TOKEN_FILE), "x").unwrap();
        assert_ne!(stored_token(dir.path(), false).unwrap(), "x");
    }

    #[test]
    fn qr_codes_are_svg() {
        let svg = qr_svg("http://192.168.1.20:8081/");
        assert!(svg.contains("<svg") && svg.contains("#16213a"));
    }
}
