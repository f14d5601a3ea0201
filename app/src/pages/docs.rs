//! The API page: every operation of the server's OpenAPI document as a form, sent for real
//! and drawn on the live diagram beside it.

use leptos::prelude::*;

use crate::api;
use crate::components::{Legend, LiveDiagram, OperationForm, StatusLine, ViewSwitch};
use crate::model::openapi::operations;
use crate::recorder::Recorder;

#[component]
pub fn Docs() -> impl IntoView {
    let rec = Recorder::from_context();
    let doc = LocalResource::new(move || async move { api::openapi(&rec).await });
    let ops = move || {
        doc.get().map(|r| match r {
            Ok(d) => {
                let ops = operations(&d);
                view! {
                    <div class="ops">
                        {ops.into_iter().map(|op| view! { <OperationForm op=op /> }).collect_view()}
                    </div>
                }
                .into_any()
            }
            Err(e) => {
                view! { <p class="result error">{format!("Could not load the API description: {e}")}</p> }
                    .into_any()
            }
        })
    };
    view! {
        <div class="docs">
            <section class="docs-ops">
                <header class="page-head">
                    <h1>"Transcript REST API"</h1>
                    <p class="hint">
                        "Every operation of "<a href="/api/openapi.json">"/api/openapi.json"</a>
                        ". Open one, fill it in, send it: the exchange is drawn on the diagram."
                    </p>
                </header>
                <Suspense fallback=|| view! { <p class="hint">"Loading the API description…"</p> }>{ops}</Suspense>
            </section>
            <section class="card diagram-card docs-diagram">
                <div class="diagram-toolbar">
                    <StatusLine />
                    <ViewSwitch />
                </div>
                <LiveDiagram />
                <Legend />
            </section>
        </div>
    }
}
