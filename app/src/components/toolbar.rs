//! Above the diagram: the stream's status, this browser's name, and the filters.

use leptos::prelude::*;
use protocol::ObserverCmd;

use crate::model::layout::{View, client_title};
use crate::model::time;
use crate::observer::{Link, Observer};
use crate::recorder::Recorder;

/// Live / reconnecting, observers, clock offset.
#[component]
pub fn StatusLine() -> impl IntoView {
    let rec = Recorder::from_context();
    let obs = Observer::from_context();
    let link = move || match obs.link.get() {
        Link::Connecting => ("connecting", "connecting…".to_owned()),
        Link::Live => ("live", "live".to_owned()),
        Link::Retrying(n) => ("retrying", format!("reconnecting (attempt {n})")),
    };
    let offset = move || {
        rec.timeline().with(|t| {
            let o = t.offset;
            if o.samples == 0 {
                "clock offset: measuring…".to_owned()
            } else {
                let sign = if o.offset_us >= 0 { "+" } else { "" };
                format!("server clock {sign}{} ± {}", time::duration(o.offset_us), time::duration(o.error_us))
            }
        })
    };
    let observers = move || rec.timeline().with(|t| t.observers);
    view! {
        <div class="status-line" aria-live="polite">
            <span class=move || format!("link link-{}", link().0)>
                <span class="dot" aria-hidden="true"></span>
                {move || link().1}
            </span>
            <span class="observers">{move || format!("{} watching", observers())}</span>
            <span class="offset" title="How far the server's clock is from this browser's, measured with pings">
                {offset}
            </span>
            {move || (obs.unpersisted.get() > 0).then(|| view! {
                <span class="warn">{format!("{} events not saved", obs.unpersisted.get())}</span>
            })}
        </div>
    }
}

/// This browser's nickname, shown to everyone on its lane.
#[component]
pub fn NicknameField() -> impl IntoView {
    let rec = Recorder::from_context();
    let obs = Observer::from_context();
    let save = move || {
        let nick: String = rec.nickname.get_untracked().trim().chars().take(40).collect();
        crate::identity::set_nickname(&nick);
        obs.refused.set(None);
        obs.send(&ObserverCmd::Nickname { nickname: nick.clone() });
        rec.saved_nickname.set(nick);
    };
    view! {
        <label class="field nickname">
            <span>"Your name on the diagram"</span>
            <input
                id="nickname"
                type="text"
                maxlength="40"
                placeholder="e.g. Ana"
                bind:value=rec.nickname
                on:change=move |_| save()
                on:keydown=move |ev| if ev.key() == "Enter" { save() }
            />
            {move || obs.refused.get().map(|why| view! { <span class="field-error" role="alert">{why}</span> })}
        </label>
    }
}

/// Filters: kinds of traffic, path, clients.
#[component]
pub fn FilterBar() -> impl IntoView {
    let rec = Recorder::from_context();
    let f = rec.filter;
    let toggle = move |which: &'static str| {
        move |_| {
            f.update(|f| match which {
                "rest" => f.rest = !f.rest,
                "data" => f.ws_data = !f.ws_data,
                _ => f.ws_control = !f.ws_control,
            })
        }
    };
    let clients = move || {
        rec.timeline().with(|t| {
            t.client_order()
                .map(|c| {
                    (c.to_owned(), if c == t.me() { "this browser".to_owned() } else { client_title(t, c) })
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <div class="filters" role="group" aria-label="Filters">
            <ViewSwitch />
            <label class="chip"><input type="checkbox" id="filter-rest" prop:checked=move || f.with(|f| f.rest) on:change=toggle("rest") />"REST"</label>
            <label class="chip"><input type="checkbox" id="filter-ws" prop:checked=move || f.with(|f| f.ws_data) on:change=toggle("data") />"WS data"</label>
            <label class="chip"><input type="checkbox" id="filter-control" prop:checked=move || f.with(|f| f.ws_control) on:change=toggle("control") />"WS ping/pong"</label>
            <input
                class="path-filter"
                id="filter-path"
                type="search"
                placeholder="path contains…"
                prop:value=move || f.with(|f| f.path.clone())
                on:input=move |ev| {
                    let v = event_target_value(&ev);
                    f.update(|f| f.path = v);
                }
            />
            <details class="client-filter">
                <summary>{move || format!("clients ({})", clients().len())}</summary>
                <ul>
                    <For
                        each=clients
                        key=|(k, title)| (k.clone(), title.clone())
                        children=move |(key, title)| {
                            let k1 = key.clone();
                            let k2 = key.clone();
                            view! {
                                <li>
                                    <label>
                                        <input
                                            type="checkbox"
                                            prop:checked=move || f.with(|f| !f.hidden.contains(&k1))
                                            on:change=move |_| f.update(|f| {
                                                if !f.hidden.remove(&k2) {
                                                    f.hidden.insert(k2.clone());
                                                }
                                            })
                                        />
                                        {title}
                                    </label>
                                </li>
                            }
                        }
                    />
                </ul>
            </details>
        </div>
    }
}

/// Client view / inside view (key `I` too).
#[component]
pub fn ViewSwitch() -> impl IntoView {
    let f = Recorder::from_context().filter;
    let views = [
        (View::Client, "view-client", "Client view", "One Server lane: what a client sees"),
        (
            View::Inside,
            "view-inside",
            "Inside view",
            "The balancer, each replica and the database as lanes, with the steps between them",
        ),
    ];
    view! {
        <div class="view-switch" role="group" aria-label="View" title="Key I switches the view">
            {views
                .into_iter()
                .map(|(v, id, text, title)| {
                    let on = move || f.with(|f| f.view == v);
                    view! {
                        <button
                            id=id
                            class=move || if on() { "on" } else { "" }
                            aria-pressed=move || on().to_string()
                            title=title
                            on:click=move |_| f.update(|f| f.view = v)
                        >
                            {text}
                        </button>
                    }
                })
                .collect_view()}
        </div>
    }
}
