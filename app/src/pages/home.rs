//! The root page: try a REST request and a WebSocket echo, and watch both drawn live.

use leptos::prelude::*;

use crate::components::{DiagramCard, NicknameField, TranscriptsCard};
use crate::recorder::Recorder;
use crate::{api, ws};

#[component]
pub fn Home() -> impl IntoView {
    let rec = Recorder::from_context();
    let count = move || rec.timeline().with(|t| t.items().len());

    let (rest_busy, set_rest_busy) = signal(false);
    let (rest_result, set_rest_result) = signal(String::new());
    let send_health = move |_| {
        set_rest_busy.set(true);
        leptos::task::spawn_local(async move {
            let out = match api::health(&rec).await {
                Ok(h) => format!("server ok · version {} · up {} s", h.version, h.uptime_ms / 1000),
                Err(e) => e.to_string(),
            };
            set_rest_result.set(out);
            set_rest_busy.set(false);
        });
    };

    let frame_text = RwSignal::new("hello, wire".to_owned());
    let (ws_busy, set_ws_busy) = signal(false);
    let (ws_result, set_ws_result) = signal(String::new());
    let run_echo = move |_| {
        set_ws_busy.set(true);
        ws::echo_once(rec, frame_text.get_untracked(), move |out| {
            set_ws_result.set(match out {
                Ok(t) => format!("echoed {} characters, closed cleanly", t.chars().count()),
                Err(e) => e,
            });
            set_ws_busy.set(false);
        });
    };

    view! {
        <div class="home">
            <aside class="controls">
                <section class="card">
                    <NicknameField />
                </section>
                <section class="card">
                    <h2>"REST · pull"</h2>
                    <p class="hint">"The browser asks, the server answers: one request, one response."</p>
                    <button id="send-health" class="btn primary" on:click=send_health disabled=rest_busy>
                        "GET /api/health"
                    </button>
                    <p class="result" id="rest-result" aria-live="polite">{rest_result}</p>
                </section>
                <section class="card">
                    <h2>"WebSocket · push"</h2>
                    <p class="hint">"An HTTP Upgrade, then frames both ways on one connection, then a close handshake."</p>
                    <label class="field">
                        <span>"Frame text"</span>
                        <input id="frame-text" type="text" maxlength="200" bind:value=frame_text />
                    </label>
                    <button id="run-echo" class="btn primary" on:click=run_echo disabled=ws_busy>
                        "Open /ws/echo, send, close"
                    </button>
                    <p class="result" id="ws-result" aria-live="polite">{ws_result}</p>
                </section>
                <TranscriptsCard />
                <section class="card subtle">
                    <button id="clear" class="btn" on:click=move |_| rec.clear()>"Clear diagram"</button>
                    <span class="count">{move || format!("{} events", count())}</span>
                </section>
            </aside>
            <DiagramCard />
        </div>
    }
}
