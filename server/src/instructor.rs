//! The instructor: a token printed at start (`http://HOST:PORT/#token=TOKEN`), required as
//! `Authorization: Bearer TOKEN` by every route under `/api/instructor/` — faults, holding,
//! "server down", reset, new session, highlight, moderation, sessions, the join URL and QR.
//! Without it: 403. The token is registered as a secret, so no capture ever shows it.

use axum::Json;
use axum::Router;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use protocol::instructor::{Fault, HoldState, NewFault, Room};
use protocol::{EventKind, Note, NoteKind};
use serde::Deserialize;

use crate::access::{Instructor, InstructorToken};
use crate::board::Boards;
use crate::error::ApiError;
use crate::events::Hub;
use crate::extract::{JsonBody, PathText};
use crate::faults::Faults;
use crate::identity::{Clients, client_id};
use crate::log::EventLog;
use crate::serve::Listening;
use crate::sessions::Change;
use crate::transcripts::Transcripts;

/// What the instructor's routes reach: nearly everything the room shares.
#[derive(Clone)]
pub struct Ctx {
    pub token: InstructorToken,
    pub log: Arc<EventLog>,
    pub faults: Arc<Faults>,
    pub clients: Arc<Clients>,
    pub hub: Arc<Hub>,
    pub transcripts: Arc<dyn Transcripts>,
    /// The room's board: the highlighted lane, and what faults and the hub keep there.
    pub board: Arc<Boards>,
    pub listening: Listening,
    /// Where students join when it is not this server's own address (`--public-url`).
    pub public_url: Option<String>,
    /// Checks the id the instructor's browser was issued (its lane becomes the instructor's).
    pub issuer: Arc<crate::ids::Issuer>,
}

impl FromRef<Ctx> for InstructorToken {
    fn from_ref(ctx: &Ctx) -> Self {
        ctx.token.clone()
    }
}

fn note(state: &Ctx, what: NoteKind, client: &str, text: String) {
    state.log.record(client, 0, None, crate::clock::server_now(), EventKind::Note(Note { what, text }));
}

/// Addresses students can open: the public URL when one was given (`--public-url`: a
/// cluster's balancer), else the listening address, or every network address when the server
/// listens on all of them.
pub fn join_urls(listening: Option<std::net::SocketAddr>, public: Option<&str>) -> Vec<String> {
    if let Some(url) = public {
        return vec![url.to_owned()];
    }
    let Some(addr) = listening else { return Vec::new() };
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

fn room(state: &Ctx) -> Room {
    let urls = join_urls(state.listening.get(), state.public_url.as_deref());
    Room {
        qr_svg: urls.first().map(|u| qr_svg(u)).unwrap_or_default(),
        join_urls: urls,
        faults: state.faults.list(),
        hold: state.faults.hold_state(),
        down_for_s: state.faults.down_for_s(),
        muted: state.hub.muted(),
        highlight: state.board.now().highlight.clone(),
    }
}

async fn get_room(_: Instructor, State(state): State<Ctx>) -> Json<Room> {
    Json(room(&state))
}

async fn add_fault(
    _: Instructor,
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<Json<Fault>, ApiError> {
    let nf: NewFault = crate::extract::from_object(body)?;
    crate::faults::validate(&nf)?;
    let (fault, hit) = state.faults.add(nf).await?;
    let client = fault.target.client.clone().unwrap_or_else(|| protocol::SERVER_LANE.to_owned());
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

async fn list_faults(_: Instructor, State(state): State<Ctx>) -> Json<Vec<Fault>> {
    Json(state.faults.list())
}

async fn remove_fault(
    _: Instructor,
    State(state): State<Ctx>,
    PathText(p): PathText,
) -> Result<StatusCode, ApiError> {
    let id = crate::sessions::session_id(&p[0])?;
    if state.faults.remove(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no fault {id}")))
    }
}

async fn clear_faults(_: Instructor, State(state): State<Ctx>) -> Result<StatusCode, ApiError> {
    state.faults.clear().await?;
    note(&state, NoteKind::Fault, protocol::SERVER_LANE, "all faults removed".to_owned());
    Ok(StatusCode::NO_CONTENT)
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
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<Json<Room>, ApiError> {
    let d: Down = parse(body)?;
    if !(1..=300).contains(&d.seconds) {
        return Err(ApiError::Validation(
            [("seconds".to_owned(), "must be from 1 to 300".to_owned())].into(),
        ));
    }
    let cut = state.faults.down(d.seconds).await?;
    note(
        &state,
        NoteKind::Down,
        protocol::SERVER_LANE,
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
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<Json<HoldState>, ApiError> {
    let h: HoldSet = parse(body)?;
    state.faults.set_hold(h.on, h.timeout_ms).await?;
    let text =
        if h.on { "holding: each message waits at the server for the instructor" } else { "holding off" };
    note(&state, NoteKind::Held, protocol::SERVER_LANE, text.to_owned());
    Ok(Json(state.faults.hold_state()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Release {
    #[serde(default)]
    count: Option<usize>,
}

async fn release(
    _: Instructor,
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<Json<HoldState>, ApiError> {
    let r: Release = parse(body)?;
    state.faults.release(r.count).await?;
    Ok(Json(state.faults.hold_state()))
}

async fn reset(_: Instructor, State(state): State<Ctx>) -> Result<StatusCode, ApiError> {
    let ids = state.transcripts.restore_seed().await?;
    note(
        &state,
        NoteKind::Session,
        protocol::SERVER_LANE,
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
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let n: Named = parse(body)?;
    let name = n.name.map(|s| s.trim().chars().take(80).collect::<String>()).filter(|s| !s.is_empty());
    let name =
        name.unwrap_or_else(|| format!("session at {}", crate::clock::time_of_day(crate::clock::now_us())));
    crate::sessions::recorded(&state.log, &state.board)?.start(name.clone()).await?;
    note(&state, NoteKind::Session, protocol::SERVER_LANE, name);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HighlightBody {
    client: Option<String>,
}

async fn highlight(
    _: Instructor,
    State(state): State<Ctx>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let h: HighlightBody = parse(body)?;
    let client = h.client.clone();
    state.board.update(move |b| b.highlight = client.clone()).await?;
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
    State(state): State<Ctx>,
    PathText(p): PathText,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let client = p[0].clone();
    let m: Moderate = parse(body)?;
    if let Some(muted) = m.muted {
        state.hub.set_muted(&client, muted).await?;
    }
    if let Some(nick) = m.nickname {
        state.clients.rename_by_instructor(&state.log, &client, &nick);
        state.hub.rename(&client, &nick);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn kick(_: Instructor, State(state): State<Ctx>, PathText(p): PathText) -> StatusCode {
    let kicked = "kicked by the instructor";
    let n = state.faults.close_everywhere(Some(&p[0]), None, Some((4000, kicked)), kicked);
    note(&state, NoteKind::Fault, &p[0], format!("kicked by the instructor ({n} connections closed)"));
    StatusCode::NO_CONTENT
}

async fn rename_session(
    _: Instructor,
    State(state): State<Ctx>,
    PathText(p): PathText,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let id = crate::sessions::session_id(&p[0])?;
    let n: Named = parse(body)?;
    let name = n.name.unwrap_or_default().trim().chars().take(80).collect::<String>();
    if name.is_empty() {
        return Err(ApiError::Validation([("name".to_owned(), "must not be empty".to_owned())].into()));
    }
    session_change(&state, id, Change::Rename(name)).await
}

/// Changes a recorded session: 204 when done, 404 when no such session.
async fn session_change(state: &Ctx, id: u64, change: Change) -> Result<StatusCode, ApiError> {
    if crate::sessions::recorded(&state.log, &state.board)?.change(id, change).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no session {id}")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Publish {
    published: bool,
}

/// Publishes an earlier session for everyone to replay (`{"published": true}`), or takes it
/// back (`false`).
async fn publish_session(
    _: Instructor,
    State(state): State<Ctx>,
    PathText(p): PathText,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let id = crate::sessions::session_id(&p[0])?;
    let Publish { published } = parse(body)?;
    session_change(&state, id, Change::Publish(published)).await
}

async fn delete_session(
    _: Instructor,
    State(state): State<Ctx>,
    PathText(p): PathText,
) -> Result<StatusCode, ApiError> {
    let id = crate::sessions::session_id(&p[0])?;
    if id == crate::sessions::recorded(&state.log, &state.board)?.current() {
        return Err(ApiError::BadRequest(
            "the session being recorded cannot be deleted; start a new one first".to_owned(),
        ));
    }
    session_change(&state, id, Change::Delete).await
}

/// Answers whether the token is right; the instructor's own lane, while it has no name,
/// is named "Instructor" on every screen.
async fn whoami(_: Instructor, State(state): State<Ctx>, req: axum::extract::Request) -> StatusCode {
    // Only a browser with an id: a program's lane is shared by everything at its address.
    if let Some(id) = client_id(&req) {
        // The lane is the instructor's from now on: no student may rename it.
        let owner = state.issuer.from_headers(req.headers()).unwrap_or(crate::identity::INSTRUCTOR_OWNER);
        state.clients.claim_for_instructor(&state.log, id, owner, INSTRUCTOR_NAME);
    }
    StatusCode::NO_CONTENT
}

/// Every client with what only the instructor sees: its address and user agent (a lane
/// `anon:…` is the pseudonym of an address; screens never learn which).
async fn list_clients(_: Instructor, State(state): State<Ctx>) -> Json<Vec<protocol::ClientEntry>> {
    Json(state.clients.private_roster())
}

/// The instructor's lane title until the instructor picks another.
pub const INSTRUCTOR_NAME: &str = "Instructor";

/// Every instructor route (all need the token).
pub fn routes() -> Router<Ctx> {
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
        .route("/api/instructor/sessions/{id}/publish", post(publish_session))
        .route("/api/instructor/highlight", post(highlight))
        .route("/api/instructor/clients", get(list_clients))
        .route("/api/instructor/clients/{client}", axum::routing::patch(moderate))
        .route("/api/instructor/clients/{client}/kick", post(kick))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn students_join_at_the_public_url_when_one_is_given() {
        let addr: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert_eq!(join_urls(Some(addr), None), ["http://127.0.0.1:8081/"]);
        assert_eq!(join_urls(Some(addr), Some("http://lecture.test/")), ["http://lecture.test/"]);
    }

    #[test]
    fn qr_codes_are_svg() {
        let svg = qr_svg("http://192.168.1.20:8081/");
        assert!(svg.contains("<svg") && svg.contains("#16213a"));
    }
}
