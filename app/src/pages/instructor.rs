//! The instructor's page: who can join (URL and QR), the fault console, holding messages,
//! "server down", sessions (new, reset, rename, delete, replay), highlighting a lane, and
//! moderation. Everything here needs the instructor's token; without it the page says so.

use gloo_net::http::Method;
use leptos::prelude::*;
use protocol::instructor::{FaultKind, NewFault, Room, Target};
use protocol::{ClientEntry, Event};

use crate::api::instructor::call;
use crate::api::{Answer, ApiFailure};
use crate::lecture::Lecture;
use crate::model::Timeline;
use crate::model::layout::client_title;
use crate::recorder::Recorder;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionRow {
    id: u64,
    name: String,
    events: u64,
    /// Published for students to replay; else the instructor's alone.
    #[serde(default)]
    published: bool,
}

#[component]
pub fn Instructor() -> impl IntoView {
    let rec = Recorder::from_context();
    let lecture = Lecture::from_context();
    let room = RwSignal::new(None::<Room>);
    let sessions = RwSignal::new(Vec::<SessionRow>::new());
    // Where each client connects from and what it says it is: the instructor's alone.
    let whereabouts = RwSignal::new(std::collections::HashMap::<String, (String, String)>::new());
    let (result, set_result) = signal(String::new());

    let refresh = move || {
        let Some(token) = lecture.token.get_untracked() else { return };
        leptos::task::spawn_local(async move {
            if let Ok(a) = call(&rec, &token, Method::GET, "/api/instructor/room", None).await
                && let Ok(r) = a.json::<Room>()
            {
                room.set(Some(r));
            }
            if let Ok(a) = call(&rec, &token, Method::GET, "/api/instructor/clients", None).await
                && let Ok(list) = a.json::<Vec<ClientEntry>>()
            {
                let info = |c: ClientEntry| {
                    (c.client, (c.info.addr.unwrap_or_default(), c.info.user_agent.unwrap_or_default()))
                };
                whereabouts.set(list.into_iter().map(info).collect());
            }
            if let Ok(a) = call(&rec, &token, Method::GET, "/api/sessions", None).await
                && let Ok(s) = a.json::<Vec<SessionRow>>()
            {
                sessions.set(s);
            }
        });
    };
    let send = move |method: Method, path: String, body: Option<String>, what: &'static str| {
        let Some(token) = lecture.token.get_untracked() else { return };
        leptos::task::spawn_local(async move {
            let out: Result<Answer, ApiFailure> = call(&rec, &token, method, &path, body).await;
            set_result.set(match out {
                Ok(a) if a.status < 300 => format!("{what}: done"),
                Ok(a) => format!("{what}: {} {}", a.status, a.text.chars().take(160).collect::<String>()),
                Err(e) => format!("{what}: {e}"),
            });
            // What the action changed, shown as soon as it is done.
            refresh();
        });
    };
    Effect::new(move |_| {
        if lecture.token.with(Option::is_some) {
            refresh();
        }
    });

    // The fault form.
    let kind = RwSignal::new("latency".to_owned());
    let path = RwSignal::new("/transcripts".to_owned());
    let client = RwSignal::new(String::new());
    let fixed = RwSignal::new("800".to_owned());
    let jitter = RwSignal::new("200".to_owned());
    let status = RwSignal::new("503".to_owned());
    let retry = RwSignal::new("2".to_owned());
    let code = RwSignal::new("1011".to_owned());
    let times = RwSignal::new(String::new());
    let add_fault = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = |s: RwSignal<String>| s.get_untracked().trim().parse::<u64>().unwrap_or(0);
        let fault = match kind.get_untracked().as_str() {
            "latency" => FaultKind::Latency { fixed_ms: n(fixed), jitter_ms: n(jitter) },
            "dropRequest" => FaultKind::DropRequest,
            "dropResponse" => FaultKind::DropResponse,
            "duplicate" => FaultKind::Duplicate,
            "status" => FaultKind::Status { status: n(status) as u16, retry_after_s: n(retry) },
            "reorderFrames" => FaultKind::ReorderFrames,
            "close" => FaultKind::Close { code: n(code) as u16 },
            _ => FaultKind::Cut,
        };
        let opt = |s: RwSignal<String>| Some(s.get_untracked().trim().to_owned()).filter(|v| !v.is_empty());
        let times = opt(times).and_then(|t| t.parse().ok());
        let nf = NewFault { target: Target { path: opt(path), client: opt(client) }, fault, times };
        send(Method::POST, "/api/instructor/faults".into(), serde_json::to_string(&nf).ok(), "add fault");
    };
    let hold_timeout = RwSignal::new("30000".to_owned());
    let down_s = RwSignal::new("5".to_owned());
    // "Server down": when it comes back (ms, this browser's clock), for the countdown.
    let back_at = RwSignal::new(None::<f64>);
    let now = RwSignal::new(js_sys::Date::now());
    let ticker = set_interval_with_handle(
        move || {
            if back_at.get_untracked().is_some() {
                now.set(js_sys::Date::now());
            }
        },
        std::time::Duration::from_millis(250),
    );
    on_cleanup(move || {
        if let Ok(h) = ticker {
            h.clear();
        }
    });
    let countdown = move || {
        let left = back_at.get().map(|t| ((t - now.get()) / 1000.0).ceil());
        match left {
            Some(s) if s > 0.0 => format!("down: back in {s:.0} s"),
            Some(_) => "back up".to_owned(),
            None => String::new(),
        }
    };
    let qr_full = RwSignal::new(false);
    // Rehearsal: simulated students acting the script's student steps.
    let rehearsal_students = RwSignal::new("6".to_owned());
    let rehearsal = RwSignal::new(String::new());
    let rehearse = move |method: Method, body: Option<String>| {
        let Some(token) = lecture.token.get_untracked() else { return };
        leptos::task::spawn_local(async move {
            let path = "/api/instructor/rehearsal";
            if method != Method::GET
                && let Err(e) = call(&rec, &token, method, path, body).await.and_then(|a| {
                    if a.status < 300 { Ok(()) } else { a.json::<serde_json::Value>().map(drop) }
                })
            {
                rehearsal.set(e.to_string());
                return;
            }
            if let Ok(a) = call(&rec, &token, Method::GET, path, None).await
                && let Ok(v) = a.json::<serde_json::Value>()
            {
                let n = v["students"].as_u64().unwrap_or(0);
                rehearsal.set(if n == 0 {
                    "no rehearsal running".to_owned()
                } else {
                    format!("{n} simulated students acting · {} steps · {} failed", v["steps"], v["failed"])
                });
            }
        });
    };
    let session_name = RwSignal::new(String::new());

    let replay = move |id: u64, name: String| {
        let Some(token) = lecture.token.get_untracked() else { return };
        leptos::task::spawn_local(async move {
            match call(&rec, &token, Method::GET, &format!("/api/sessions/{id}/events"), None)
                .await
                .and_then(|a| a.json::<Vec<Event>>())
            {
                Ok(events) => {
                    let me = rec.client();
                    lecture.replay.set(Some((name, Timeline::replay(me, Vec::new(), events))));
                    lecture.playback.update(|p| p.replay(0.0));
                }
                Err(e) => set_result.set(format!("replay: {e}")),
            }
        });
    };
    let clients = move || {
        rec.timeline().with(|t| {
            t.client_order()
                .filter(|c| *c != t.me())
                .map(|c| (c.to_owned(), client_title(t, c)))
                .collect::<Vec<_>>()
        })
    };
    let faults = move || room.get().map(|r| r.faults).unwrap_or_default();
    let held = move || room.get().map(|r| r.hold.held).unwrap_or_default();

    view! {
        <Show
            when=move || lecture.is_instructor()
            fallback=|| view! {
                <section class="card narrow">
                    <h1>"Instructor"</h1>
                    <p>"This page needs the instructor's link: the server prints it at start (" <code>"http://HOST:PORT/#token=…"</code> ")."</p>
                </section>
            }
        >
            <div class="instructor">
                <section class="card">
                    <h2>"Students join at"</h2>
                    <ul class="join" id="join-urls">
                        {move || room.get().map(|r| r.join_urls).unwrap_or_default().into_iter().map(|u| {
                            let local = is_loopback(&u);
                            view! {
                                <li class:loopback=local>
                                    <code>{u}</code>
                                    {local.then(|| view! { <span class="warn">" this computer only"</span> })}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                    {move || room.get().filter(|r| !r.join_urls.is_empty() && r.join_urls.iter().all(|u| is_loopback(u))).map(|_| view! {
                        <p class="warn" id="loopback-warning">
                            "Students cannot reach this address: it is this computer's own. Start the server with "
                            <code>"--addr 0.0.0.0:8081"</code>" to let the room join."
                        </p>
                    })}
                    <button class="qr" id="qr" class:qr-full=move || qr_full.get() title="Full screen (click again to close)"
                        on:click=move |_| qr_full.update(|f| *f = !*f)
                        inner_html=move || room.get().map(|r| {
                            // Full screen, the address is written under the code too.
                            let url = r.join_urls.first().cloned().unwrap_or_default();
                            let url = url.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
                            format!("{}<span class=\"qr-url\">{url}</span>", r.qr_svg)
                        }).unwrap_or_default()></button>
                    <p class="result" id="instructor-result" aria-live="polite">{result}</p>
                </section>
                <section class="card">
                    <h2>"Faults"</h2>
                    <form class="fault-form" on:submit=add_fault>
                        <label class="field"><span>"kind"</span>
                            <select id="fault-kind" on:change=move |ev| kind.set(event_target_value(&ev))>
                                <option value="latency" selected>"latency (fixed + jitter)"</option>
                                <option value="dropRequest">"drop the request"</option>
                                <option value="dropResponse">"drop the response"</option>
                                <option value="duplicate">"duplicate the request"</option>
                                <option value="status">"answer 429 / 503"</option>
                                <option value="reorderFrames">"reorder WebSocket frames"</option>
                                <option value="close">"close WebSockets (code)"</option>
                                <option value="cut">"cut WebSockets (1006)"</option>
                            </select>
                        </label>
                        <label class="field"><span>"path starts with"</span><input id="fault-path" type="text" bind:value=path /></label>
                        <label class="field"><span>"client (empty: everyone)"</span><input id="fault-client" type="text" bind:value=client /></label>
                        <div class="fault-params">
                            <label class="field"><span>"fixed ms"</span><input type="number" bind:value=fixed /></label>
                            <label class="field"><span>"jitter ms"</span><input type="number" bind:value=jitter /></label>
                            <label class="field"><span>"status"</span><input type="number" bind:value=status /></label>
                            <label class="field"><span>"Retry-After s"</span><input type="number" bind:value=retry /></label>
                            <label class="field"><span>"close code"</span><input type="number" bind:value=code /></label>
                            <label class="field"><span>"times (empty: until removed)"</span><input id="fault-times" type="number" bind:value=times /></label>
                        </div>
                        <button class="btn primary" id="add-fault" type="submit">"Add fault"</button>
                    </form>
                    <ul class="fault-list" id="fault-list">
                        <For
                            each=faults
                            key=|f| (f.id, f.applied)
                            children=move |f| {
                                let id = f.id;
                                let what = serde_json::to_string(&f.fault).unwrap_or_default();
                                let scope = format!("{} {}", f.target.path.clone().unwrap_or_else(|| "*".into()), f.target.client.clone().unwrap_or_default());
                                view! {
                                    <li>
                                        <code>{what}</code>" on "{scope}{format!(" · applied {}", f.applied)}
                                        <button class="btn icon" aria-label="remove" on:click=move |_| { send(Method::DELETE, format!("/api/instructor/faults/{id}"), None, "remove fault"); }>"✕"</button>
                                    </li>
                                }
                            }
                        />
                    </ul>
                    <button class="btn" on:click=move |_| { send(Method::DELETE, "/api/instructor/faults".into(), None, "clear faults"); }>"Clear all faults"</button>
                </section>
                <section class="card">
                    <h2>"Hold messages"</h2>
                    <p class="hint">"Each request waits at the server until you release it (or the timeout does)."</p>
                    <div class="inline-form">
                        <input type="number" bind:value=hold_timeout aria-label="Hold timeout (ms)" />
                        <button class="btn" id="hold-on" on:click=move |_| {
                            let t = hold_timeout.get_untracked().parse::<u64>().unwrap_or(30_000);
                            send(Method::POST, "/api/instructor/hold".into(), Some(format!(r#"{{"on":true,"timeoutMs":{t}}}"#)), "hold on");
                        }>"hold"</button>
                        <button class="btn" id="hold-off" on:click=move |_| { send(Method::POST, "/api/instructor/hold".into(), Some(r#"{"on":false}"#.into()), "hold off"); }>"stop"</button>
                        <button class="btn" id="release-next" on:click=move |_| { send(Method::POST, "/api/instructor/release".into(), Some(r#"{"count":1}"#.into()), "release"); }>"release next"</button>
                        <button class="btn" on:click=move |_| refresh()>"refresh"</button>
                    </div>
                    <ul class="held" id="held-list">
                        {move || held().into_iter().map(|h| view! { <li><code>{format!("{} {}", h.method, h.path)}</code>" · "{h.client}</li> }).collect_view()}
                    </ul>
                    <h2>"Server down"</h2>
                    <div class="inline-form">
                        <input type="number" bind:value=down_s aria-label="Seconds" />
                        <button class="btn" id="server-down" on:click=move |_| {
                            let s = down_s.get_untracked().parse::<u64>().unwrap_or(5);
                            send(Method::POST, "/api/instructor/down".into(), Some(format!(r#"{{"seconds":{s}}}"#)), "server down");
                            back_at.set(Some(js_sys::Date::now() + s as f64 * 1000.0));
                        }>"go down"</button>
                        <span class="countdown" id="down-countdown" aria-live="polite">{countdown}</span>
                    </div>
                </section>
                <section class="card">
                    <h2>"Rehearse alone"</h2>
                    <p class="hint">"Simulated students (their own lanes, “Rehearsal N”) act the script's student steps on this server — health, transcripts, a new student, a chat — until you stop them (at most 15 minutes)."</p>
                    <div class="inline-form">
                        <input id="rehearsal-students" type="number" min="1" max="30" bind:value=rehearsal_students aria-label="Simulated students" />
                        <button class="btn" id="rehearsal-start" on:click=move |_| {
                            let n = rehearsal_students.get_untracked().trim().parse::<u32>().unwrap_or(0);
                            rehearse(Method::POST, Some(format!(r#"{{"students":{n}}}"#)));
                        }>"start"</button>
                        <button class="btn" id="rehearsal-stop" on:click=move |_| rehearse(Method::DELETE, None)>"stop"</button>
                        <button class="btn" on:click=move |_| rehearse(Method::GET, None)>"refresh"</button>
                    </div>
                    <p class="result" id="rehearsal-state" aria-live="polite">{rehearsal}</p>
                </section>
                <section class="card">
                    <h2>"Sessions"</h2>
                    <div class="inline-form">
                        <input id="session-name" type="text" placeholder="name of the new session" bind:value=session_name />
                        <button class="btn" id="new-session" on:click=move |_| {
                            let name = session_name.get_untracked();
                            send(Method::POST, "/api/instructor/session".into(), Some(serde_json::json!({"name": name}).to_string()), "new session");
                        }>"new session"</button>
                    </div>
                    <button class="btn" id="reset-transcripts" on:click=move |_| send(Method::POST, "/api/instructor/reset".into(), None, "reset transcripts")>"Reset transcripts to the seed"</button>
                    <ul class="sessions" id="session-list">
                        <For
                            each=move || sessions.get()
                            key=|s| (s.id, s.name.clone(), s.events, s.published)
                            children=move |s| {
                                let (id, name, published) = (s.id, s.name.clone(), s.published);
                                let rename = RwSignal::new(s.name.clone());
                                view! {
                                    <li data-session=id>
                                        <input type="text" bind:value=rename aria-label="Session name" />
                                        <span class="count">{format!("{} events", s.events)}</span>
                                        <button class="btn" on:click=move |_| {
                                            send(Method::PATCH, format!("/api/instructor/sessions/{id}"), Some(serde_json::json!({"name": rename.get_untracked()}).to_string()), "rename");
                                        }>"rename"</button>
                                        <button class="btn replay-session" on:click=move |_| replay(id, name.clone())>"replay"</button>
                                        <button class="btn publish-session" title="Published sessions can be replayed by students"
                                            on:click=move |_| send(Method::POST, format!("/api/instructor/sessions/{id}/publish"), Some(serde_json::json!({"published": !published}).to_string()), "publish")>
                                            {if published { "unpublish" } else { "publish" }}
                                        </button>
                                        <button class="btn icon" aria-label="delete" on:click=move |_| { send(Method::DELETE, format!("/api/instructor/sessions/{id}"), None, "delete session"); }>"✕"</button>
                                    </li>
                                }
                            }
                        />
                    </ul>
                </section>
                <section class="card">
                    <h2>"The room"</h2>
                    <table class="transcripts" id="moderation">
                        <thead><tr><th>"client"</th><th>"name"</th><th></th></tr></thead>
                        <tbody>
                            <For
                                each=clients
                                key=|(k, t)| (k.clone(), t.clone())
                                children=move |(key, title)| {
                                    let nick = RwSignal::new(title.clone());
                                    let (k1, k2, k3, k4, k5) = (key.clone(), key.clone(), key.clone(), key.clone(), key.clone());
                                    let (k6, k7) = (key.clone(), key.clone());
                                    let muted = Memo::new(move |_| room.with(|r| r.as_ref().is_some_and(|r| r.muted.contains(&k5))));
                                    view! {
                                        <tr data-client=key.clone()>
                                            <td>
                                                <code>{key.clone()}</code>
                                                <div class="hint address" title=move || whereabouts.with(|w| w.get(&k7).map(|v| v.1.clone()).unwrap_or_default())>
                                                    {move || whereabouts.with(|w| w.get(&k6).map(|v| v.0.clone()).unwrap_or_default())}
                                                </div>
                                            </td>
                                            <td><input type="text" bind:value=nick aria-label="Nickname" /></td>
                                            <td class="actions">
                                                <button class="btn" on:click=move |_| send(Method::PATCH, format!("/api/instructor/clients/{k1}"), Some(serde_json::json!({"nickname": nick.get_untracked()}).to_string()), "rename")>"rename"</button>
                                                <button class="btn" on:click=move |_| {
                                                    let m = !muted.get_untracked();
                                                    send(Method::PATCH, format!("/api/instructor/clients/{k2}"), Some(serde_json::json!({"muted": m}).to_string()), "mute");
                                                }>{move || if muted.get() { "unmute" } else { "mute" }}</button>
                                                <button class="btn" on:click=move |_| send(Method::POST, "/api/instructor/highlight".into(), Some(serde_json::json!({"client": k3}).to_string()), "highlight")>"highlight"</button>
                                                <button class="btn" on:click=move |_| send(Method::POST, format!("/api/instructor/clients/{k4}/kick"), None, "kick")>"kick"</button>
                                            </td>
                                        </tr>
                                    }
                                }
                            />
                        </tbody>
                    </table>
                    <button class="btn" on:click=move |_| send(Method::POST, "/api/instructor/highlight".into(), Some(r#"{"client":null}"#.into()), "highlight")>"No highlight"</button>
                </section>
            </div>
        </Show>
    }
}

/// A join address that only this computer can open.
fn is_loopback(url: &str) -> bool {
    let host = url.trim_start_matches("http://").trim_start_matches("https://");
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}
