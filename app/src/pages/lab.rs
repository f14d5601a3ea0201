//! The pattern lab: one scenario — grades posted at a rate you set, N subscribers want to
//! know — run as short polling, long polling, SSE and WebSocket side by side, live.

use gloo_net::http::Method;
use leptos::prelude::*;
use protocol::lab::{LabConfig, LabReport};

use crate::api;
use crate::api::instructor::call;
use crate::lab_client::Subscriber;
use crate::lecture::Lecture;
use crate::model::lab::{Bar, bars, bytes, log_position, log_scale, rows};
use crate::recorder::Recorder;

const RATE: (f64, f64) = (0.05, 20.0);
const POLL: (f64, f64) = (100.0, 10_000.0);

#[component]
pub fn Lab() -> impl IntoView {
    let rec = Recorder::from_context();
    let rate_pos = RwSignal::new(log_position(1.0, RATE.0, RATE.1));
    let subscribers = RwSignal::new(50u32);
    let poll_pos = RwSignal::new(log_position(1000.0, POLL.0, POLL.1));
    let rate = Memo::new(move |_| log_scale(rate_pos.get(), RATE.0, RATE.1));
    let poll_ms = Memo::new(move |_| log_scale(poll_pos.get(), POLL.0, POLL.1).round() as u64);
    let report = RwSignal::new(None::<LabReport>);
    let (problem, set_problem) = signal(String::new());

    let lecture = Lecture::from_context();
    // Where the lab is now, once; from then on the server pushes its figures (room `lab`).
    leptos::task::spawn_local(async move {
        if let Ok(a) = api::exchange(&rec, Method::GET, "/api/lab", None).await
            && let Ok(r) = a.json::<LabReport>()
            && report.with_untracked(Option::is_none)
        {
            report.set(Some(r));
        }
    });
    let start = move |_| {
        let Some(token) = lecture.token.get_untracked() else { return };
        let config = LabConfig {
            rate: rate.get_untracked(),
            subscribers: subscribers.get_untracked(),
            poll_ms: poll_ms.get_untracked(),
        };
        let body = serde_json::to_string(&config).unwrap_or_default();
        leptos::task::spawn_local(async move {
            match call(&rec, &token, Method::POST, "/api/lab", Some(body))
                .await
                .and_then(|a| a.json::<LabReport>())
            {
                Ok(r) => {
                    report.set(Some(r));
                    set_problem.set(String::new());
                }
                Err(e) => set_problem.set(e.to_string()),
            }
        });
    };
    let stop = move |_| {
        let Some(token) = lecture.token.get_untracked() else { return };
        leptos::task::spawn_local(async move {
            if let Err(e) = call(&rec, &token, Method::DELETE, "/api/lab", None).await {
                set_problem.set(e.to_string());
            }
        });
    };
    // Students watch the instructor's run: their sliders show its settings, and cannot move.
    Effect::new(move |_| {
        if !lecture.is_instructor()
            && let Some(c) = report.with(|r| r.as_ref().and_then(|r| r.config))
        {
            rate_pos.set(log_position(c.rate, RATE.0, RATE.1));
            subscribers.set(c.subscribers);
            poll_pos.set(log_position(c.poll_ms as f64, POLL.0, POLL.1));
        }
    });
    let watching = move || !lecture.is_instructor();
    let running = Signal::derive(move || report.with(|r| r.as_ref().is_some_and(|r| r.running)));
    let sub = Subscriber::start(rec, Signal::derive(move || poll_ms.get()), running, report);

    let table = Memo::new(move |_| report.get().map(|r| rows(&r)).unwrap_or_default());
    let byte_bars = Memo::new(move |_| {
        let t = table.get();
        bars(&t.iter().map(|r| (r.name, vec![r.overhead_per_s, r.payload_per_s])).collect::<Vec<_>>(), |x| {
            format!("{}/s", bytes(x))
        })
    });
    let request_bars = Memo::new(move |_| {
        let t = table.get();
        bars(&t.iter().map(|r| (r.name, vec![r.requests_per_s])).collect::<Vec<_>>(), |x| format!("{x:.1}/s"))
    });
    let stale_bars = Memo::new(move |_| {
        let t = table.get();
        bars(&t.iter().map(|r| (r.name, vec![r.stale_p95.unwrap_or(0.0)])).collect::<Vec<_>>(), |x| {
            format!("{x:.0} ms")
        })
    });
    let summary = move || {
        report.get().map_or("Not running.".to_owned(), |r| {
            let state = if r.running { "running" } else { "stopped" };
            let failed = if r.failed > 0 {
                format!(" · {} not posted: {}", r.failed, r.problem.unwrap_or_default())
            } else {
                String::new()
            };
            format!("{state} · {:.0} s · {} grades posted{failed}", r.seconds, r.changes)
        })
    };

    view! {
        <div class="lab">
            <section class="card lab-controls">
                <h1>"Pattern lab: pull or push?"</h1>
                <p class="hint">
                    "Grades are posted to a scratch store (never the course's) at the rate you set; N subscribers per pattern want to know. This browser subscribes too, four ways, for real."
                </p>
                <div class="sliders">
                    <label class="field">
                        <span>"changes per second: "<strong id="rate-value">{move || format!("{:.2}", rate.get())}</strong></span>
                        <input id="rate" disabled=watching type="range" min="0" max="100" step="1" prop:value=move || rate_pos.get().to_string()
                            on:input=move |ev| rate_pos.set(event_target_value(&ev).parse().unwrap_or(50.0)) />
                    </label>
                    <label class="field">
                        <span>"subscribers per pattern: "<strong id="subscribers-value">{move || subscribers.get()}</strong></span>
                        <input id="subscribers" disabled=watching type="range" min="1" max="200" step="1" prop:value=move || subscribers.get().to_string()
                            on:input=move |ev| subscribers.set(event_target_value(&ev).parse().unwrap_or(50)) />
                    </label>
                    <label class="field">
                        <span>"short-poll period: "<strong>{move || format!("{} ms", poll_ms.get())}</strong></span>
                        <input id="poll" disabled=watching type="range" min="0" max="100" step="1" prop:value=move || poll_pos.get().to_string()
                            on:input=move |ev| poll_pos.set(event_target_value(&ev).parse().unwrap_or(50.0)) />
                    </label>
                </div>
                <div class="lab-actions">
                    <Show
                        when=move || lecture.is_instructor()
                        fallback=|| view! { <span class="hint" id="lab-watch">"The instructor runs the lab; watch it here."</span> }
                    >
                        <button id="lab-start" class="btn primary" on:click=start>"Start / apply"</button>
                        <button id="lab-stop" class="btn" on:click=stop>"Stop"</button>
                    </Show>
                    <span class="result" id="lab-status">{summary}</span>
                    <span class="result error">{problem}</span>
                </div>
            </section>
            <section class="card lab-plots">
                <Plot title="Bytes on the wire (headers and framing | payload)" bars=byte_bars stacked=true />
                <Plot title="Requests per second" bars=request_bars stacked=false />
                <Plot title="Staleness p95: change → subscriber" bars=stale_bars stacked=false />
            </section>
            <section class="card lab-table">
                <table class="patterns" id="lab-table">
                    <thead>
                        <tr>
                            <th>"pattern"</th><th>"requests/s"</th><th>"bytes/s (overhead + payload)"</th>
                            <th>"staleness p50 / p95"</th><th>"open"</th><th>"server msgs/s"</th><th>"this browser"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || table.get().into_iter().enumerate()
                            key=|(i, r)| (*i, r.requests_per_s.to_bits(), r.overhead_per_s.to_bits(), r.summary.clone())
                            children=move |(i, r)| {
                                let ms = |x: Option<f64>| x.map_or("–".to_owned(), |v| format!("{v:.0} ms"));
                                let mine = sub.measured[i.min(3)];
                                view! {
                                    <tr data-pattern=r.key.clone()>
                                        <th scope="row">{r.name}<p class="verdict">{r.summary.clone()}</p></th>
                                        <td class="num requests">{format!("{:.1}", r.requests_per_s)}</td>
                                        <td class="num bytes">{format!("{} + {}", bytes(r.overhead_per_s), bytes(r.payload_per_s))}</td>
                                        <td class="num stale">{format!("{} / {}", ms(r.stale_p50), ms(r.stale_p95))}</td>
                                        <td class="num open">{r.open}</td>
                                        <td class="num">{format!("{:.1}", r.messages_per_s)}</td>
                                        <td class="num mine">{move || mine.with(|m| format!("{} changes · p50 {}", m.changes, ms(m.p50_ms())))}</td>
                                    </tr>
                                }
                            }
                        />
                    </tbody>
                </table>
            </section>
        </div>
    }
}

/// A horizontal bar chart (SVG).
#[component]
fn Plot(title: &'static str, bars: Memo<Vec<Bar>>, stacked: bool) -> impl IntoView {
    let (label_w, width, row_h) = (170.0, 560.0, 30.0);
    let bar_w = width - label_w - 110.0;
    view! {
        <figure class="plot">
            <figcaption>{title}</figcaption>
            <svg
                viewBox=move || format!("0 0 {width} {}", bars.with(|b| b.len().max(1)) as f64 * row_h + 6.0)
                role="img"
                aria-label=title
            >
                {move || {
                    bars.get()
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let y = i as f64 * row_h + 4.0;
                            let mut x = label_w;
                            let parts = b
                                .parts
                                .iter()
                                .enumerate()
                                .map(|(j, p)| {
                                    let w = (p * bar_w).max(0.0);
                                    let r = view! {
                                        <rect class=format!("part part-{}{}", j, if stacked { " stacked" } else { "" }) x=x y=y width=w height=row_h - 10.0 rx=3></rect>
                                    };
                                    x += w;
                                    r
                                })
                                .collect_view();
                            view! {
                                <g class="plot-row">
                                    <text class="plot-label" x=label_w - 8.0 y=y + 15.0 text-anchor="end">{b.label}</text>
                                    {parts}
                                    <text class="plot-value" x=x + 6.0 y=y + 15.0>{b.text.clone()}</text>
                                </g>
                            }
                        })
                        .collect_view()
                }}
            </svg>
        </figure>
    }
}
