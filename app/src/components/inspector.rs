//! The inspector: every captured field of the selected arrow and its exchange.

use leptos::prelude::*;

use crate::model::inspect::{Section, inspect};
use crate::recorder::Recorder;

#[component]
pub fn Inspector() -> impl IntoView {
    let rec = Recorder::from_context();
    let tz = crate::clock::utc_offset_min();
    let sections = Memo::new(move |_| {
        rec.selected.get().map(|key| rec.timeline().with(|t| inspect(t, key, tz))).unwrap_or_default()
    });
    let close = move |_| rec.selected.set(None);
    let on_key = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" {
            rec.selected.set(None);
        }
    });
    on_cleanup(move || on_key.remove());
    view! {
        <Show when=move || rec.selected.with(Option::is_some)>
            <aside class="inspector" role="dialog" aria-label="Inspector">
                <header class="inspector-head">
                    <h2>"Inspector"</h2>
                    <button class="btn icon close" on:click=close aria-label="Close the inspector" title="Close (Esc)">
                        "✕"
                    </button>
                </header>
                <Show
                    when=move || sections.with(|s| !s.is_empty())
                    fallback=|| view! { <p class="hint">"This event is no longer in the timeline."</p> }
                >
                    <For
                        each=move || sections.get().into_iter().enumerate()
                        key=|(i, s)| (*i, s.title.clone(), s.rows.len())
                        children=|(_, s): (usize, Section)| {
                            view! {
                                <section class="inspector-section">
                                    <h3>{s.title.clone()}</h3>
                                    <dl>
                                        {s
                                            .rows
                                            .into_iter()
                                            .map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> })
                                            .collect_view()}
                                    </dl>
                                    {s.body.filter(|b| !b.is_empty()).map(|b| view! { <pre class="inspector-body">{b}</pre> })}
                                </section>
                            }
                        }
                    />
                </Show>
            </aside>
        </Show>
    }
}
