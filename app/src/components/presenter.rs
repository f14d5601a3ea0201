//! What lecture mode adds on top of a page: the blanked screen, the playback bar, the
//! instructor's quick fault console (F), and the "replaying" banner.

use gloo_net::http::Method;
use leptos::prelude::*;

use crate::api::instructor::call;
use crate::lecture::Lecture;
use crate::recorder::Recorder;

/// The playback state in a few words, and the keys that change it.
#[component]
pub fn PlaybackBar() -> impl IntoView {
    let rec = Recorder::from_context();
    let lecture = Lecture::from_context();
    let total = move || {
        lecture.playback.track();
        rec.timeline().track();
        lecture.replay.track();
        crate::lecture::total_rows(rec, lecture)
    };
    let state = move || {
        let p = lecture.playback.get();
        let total = total();
        let mode = if p.paused {
            "❚❚ paused"
        } else if p.following() {
            "● live"
        } else {
            "▶ playing"
        };
        let speed = p.speed();
        let speed = if speed < 1.0 { format!("{speed}×") } else { format!("{speed:.0}×") };
        (mode, speed, p.visible(total), total)
    };
    let scrub = move |ev: leptos::ev::Event| {
        if let Ok(n) = event_target_value(&ev).parse::<usize>() {
            lecture.playback.update(|p| p.scrub(n));
        }
    };
    view! {
        <div class="playback" role="group" aria-label="Playback">
            <span class="pb-state" id="playback-state">{move || state().0}</span>
            <span class="pb-speed" id="playback-speed">{move || state().1}</span>
            <input
                class="scrubber"
                id="scrubber"
                type="range"
                min="0"
                aria-label="Scrub through the session"
                prop:max=move || state().3.to_string()
                prop:value=move || state().2.to_string()
                on:input=scrub
            />
            <span class="pb-count" id="playback-count">{move || format!("{} / {}", state().2, state().3)}</span>
            <span class="pb-keys">"space pause · → ← step · + − speed · R replay · L live · P present · B blank"</span>
            {move || lecture.replay.with(|r| r.as_ref().map(|(name, _)| name.clone())).map(|name| view! {
                <span class="replaying">
                    {format!("replaying: {name}")}
                    <button class="btn" id="back-to-live" on:click=move |_| {
                        lecture.replay.set(None);
                        lecture.playback.update(|p| p.live());
                    }>"back to live"</button>
                </span>
            })}
        </div>
    }
}

/// A black screen (keys B or `.`), as slide software does.
#[component]
pub fn Blank() -> impl IntoView {
    let lecture = Lecture::from_context();
    view! {
        <Show when=move || lecture.blank.get()>
            <div class="blank" id="blank" on:click=move |_| lecture.blank.set(false)></div>
        </Show>
    }
}

/// One click per common fault (instructor only; key F).
#[component]
pub fn FaultConsole() -> impl IntoView {
    let rec = Recorder::from_context();
    let lecture = Lecture::from_context();
    let (last, set_last) = signal(String::new());
    let act = move |label: &'static str, method: Method, path: &'static str, body: &'static str| {
        move |_| {
            let Some(token) = lecture.token.get_untracked() else { return };
            let body = (!body.is_empty()).then(|| body.to_owned());
            let method = method.clone();
            leptos::task::spawn_local(async move {
                // Done with the console: it closes, so the diagram shows what the fault does.
                lecture.console.set(false);
                let out = match call(&rec, &token, method, path, body).await {
                    Ok(a) if a.status < 300 => format!("done: {label}"),
                    Ok(a) => format!("{label}: {}", a.status),
                    Err(e) => format!("{label}: {e}"),
                };
                set_last.set(out);
            });
        }
    };
    let f = "/api/instructor/faults";
    view! {
        <Show when=move || !lecture.console.get() && lecture.is_instructor() && !last.get().is_empty()>
            <p class="console-done" id="console-result">{last}</p>
        </Show>
        <Show when=move || lecture.console.get() && lecture.is_instructor()>
            <aside class="console" id="fault-console" aria-label="Fault console">
                <header class="inspector-head">
                    <h2>"Fault console"</h2>
                    <button class="btn icon close" on:click=move |_| lecture.console.set(false) aria-label="Close">"✕"</button>
                </header>
                <div class="console-grid">
                    <button class="btn" on:click=act("latency", Method::POST, f, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"latency","fixedMs":1500,"jitterMs":500},"times":3}"#)>"+1.5 s latency ×3"</button>
                    <button class="btn" on:click=act("drop request", Method::POST, f, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"dropRequest"},"times":1}"#)>"drop next request"</button>
                    <button class="btn" on:click=act("drop response", Method::POST, f, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"dropResponse"},"times":1}"#)>"drop next response"</button>
                    <button class="btn" on:click=act("duplicate", Method::POST, f, r#"{"target":{"path":"/transcripts"},"fault":{"kind":"duplicate"},"times":1}"#)>"duplicate next"</button>
                    <button class="btn" on:click=act("503", Method::POST, f, r#"{"fault":{"kind":"status","status":503,"retryAfterS":2},"times":1}"#)>"503 next (Retry-After 2)"</button>
                    <button class="btn" on:click=act("429", Method::POST, f, r#"{"fault":{"kind":"status","status":429,"retryAfterS":1},"times":1}"#)>"429 next"</button>
                    <button class="btn" on:click=act("reorder", Method::POST, f, r#"{"target":{"path":"/ws"},"fault":{"kind":"reorderFrames"},"times":5}"#)>"reorder frames (next sockets)"</button>
                    <button class="btn" on:click=act("close 1011", Method::POST, f, r#"{"target":{"path":"/ws"},"fault":{"kind":"close","code":1011}}"#)>"close sockets 1011"</button>
                    <button class="btn" on:click=act("cut", Method::POST, f, r#"{"target":{"path":"/ws"},"fault":{"kind":"cut"}}"#)>"cut sockets (1006)"</button>
                    <button class="btn" on:click=act("server down", Method::POST, "/api/instructor/down", r#"{"seconds":5}"#)>"server down 5 s"</button>
                    <button class="btn" on:click=act("hold on", Method::POST, "/api/instructor/hold", r#"{"on":true,"timeoutMs":30000}"#)>"hold messages"</button>
                    <button class="btn" on:click=act("release", Method::POST, "/api/instructor/release", r#"{"count":1}"#)>"release next"</button>
                    <button class="btn" on:click=act("hold off", Method::POST, "/api/instructor/hold", r#"{"on":false}"#)>"stop holding"</button>
                    <button class="btn" on:click=act("clear", Method::DELETE, f, "")>"clear all faults"</button>
                </div>
            </aside>
        </Show>
    }
}
