//! One operation of the API page: a form built from the OpenAPI document, sent for real.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::api;
use crate::clock::now_us;
use crate::model::describe::status_line;
use crate::model::openapi::{In, Operation};
use crate::model::time;
use crate::recorder::Recorder;

/// What came back, ready to show.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    status: String,
    ok: bool,
    took: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn pretty_body(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned()),
        Err(_) => text.to_owned(),
    }
}

#[component]
pub fn OperationForm(op: Operation) -> impl IntoView {
    let rec = Recorder::from_context();
    let open = RwSignal::new(false);
    let values = RwSignal::new(
        op.params.iter().map(|p| (p.name.clone(), p.example.clone())).collect::<BTreeMap<String, String>>(),
    );
    let body = RwSignal::new(op.body_example.clone().unwrap_or_default());
    let busy = RwSignal::new(false);
    let shown = RwSignal::new(None::<Shown>);
    let (problem, set_problem) = signal(String::new());
    let has_body = op.body_example.is_some();
    let op = StoredValue::new(op);

    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let url = match op.with_value(|o| o.url(&values.get_untracked())) {
            Ok(url) => url,
            Err(e) => {
                set_problem.set(e);
                return;
            }
        };
        set_problem.set(String::new());
        let method = api::method(&op.with_value(|o| o.method.clone()));
        let payload = has_body.then(|| body.get_untracked());
        busy.set(true);
        leptos::task::spawn_local(async move {
            let t0 = now_us();
            match api::exchange(&rec, method, &url, payload).await {
                Ok(a) => shown.set(Some(Shown {
                    status: status_line(a.status),
                    ok: a.status < 400,
                    took: time::duration(now_us() - t0),
                    headers: a.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
                    body: pretty_body(&a.text),
                })),
                Err(e) => {
                    shown.set(None);
                    set_problem.set(e.to_string());
                }
            }
            busy.set(false);
        });
    };

    let (method, path, summary, id) =
        op.with_value(|o| (o.method.clone(), o.path.clone(), o.summary.clone(), o.id.clone()));
    let method_class = format!("method method-{}", method.to_lowercase());
    view! {
        <article class="op card" data-op=id class:open=open>
            <button class="op-head" on:click=move |_| open.update(|o| *o = !*o) aria-expanded=move || open.get().to_string()>
                <span class=method_class>{method.clone()}</span>
                <code class="op-path">{path}</code>
                <span class="op-summary">{prose(&summary)}</span>
            </button>
            <Show when=move || open.get()>
                <form class="op-form" on:submit=send>
                    {op.with_value(|o| o.params.clone())
                        .into_iter()
                        .map(|p| {
                            let name = p.name.clone();
                            let key = p.name.clone();
                            let where_ = if p.location == In::Path { "path" } else { "query" };
                            view! {
                                <label class="field">
                                    <span>
                                        <code>{p.name.clone()}</code>
                                        " · "
                                        {where_}
                                        " · "
                                        {p.kind.clone()}
                                        {p.required.then_some(" · required")}
                                    </span>
                                    <input
                                        type="text"
                                        data-param=name.clone()
                                        prop:value=move || values.with(|v| v.get(&key).cloned().unwrap_or_default())
                                        on:input=move |ev| {
                                            let v = event_target_value(&ev);
                                            values.update(|m| {
                                                m.insert(name.clone(), v);
                                            });
                                        }
                                    />
                                    <small>{prose(&p.description)}</small>
                                </label>
                            }
                        })
                        .collect_view()}
                    {has_body
                        .then(|| {
                            let description = op.with_value(|o| o.body_description.clone());
                            view! {
                                <label class="field">
                                    <span>"body · application/json"</span>
                                    <textarea data-body="" rows="5" spellcheck="false" bind:value=body></textarea>
                                    <small>{prose(&description)}</small>
                                </label>
                            }
                        })}
                    <div class="op-actions">
                        <button class="btn primary send" type="submit" disabled=busy>
                            {format!("Send {method}")}
                        </button>
                        <span class="result error">{problem}</span>
                    </div>
                    <details class="op-responses">
                        <summary>"Documented responses"</summary>
                        <ul>
                            {op.with_value(|o| o.responses.clone())
                                .into_iter()
                                .map(|(code, d)| view! { <li><code>{code}</code>" "{prose(&d)}</li> })
                                .collect_view()}
                        </ul>
                    </details>
                </form>
                {move || {
                    shown
                        .get()
                        .map(|s| {
                            view! {
                                <div class="response" class:bad=!s.ok>
                                    <p class="response-status">
                                        <strong class="status">{s.status}</strong>
                                        <span class="took">{s.took}</span>
                                    </p>
                                    <details>
                                        <summary>{format!("{} headers", s.headers.len())}</summary>
                                        <dl class="headers">
                                            {s
                                                .headers
                                                .into_iter()
                                                .map(|(n, v)| view! { <dt>{n}</dt><dd>{v}</dd> })
                                                .collect_view()}
                                        </dl>
                                    </details>
                                    <pre class="response-body">{s.body}</pre>
                                </div>
                            }
                        })
                }}
            </Show>
        </article>
    }
}

/// Words from the API description, `code` in backticks shown as code.
fn prose(text: &str) -> impl IntoView + use<> {
    crate::model::openapi::code_spans(text)
        .into_iter()
        .map(|(code, t)| if code { view! { <code>{t}</code> }.into_any() } else { t.into_any() })
        .collect_view()
}
