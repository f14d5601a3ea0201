use leptos::prelude::*;
use leptos_router::components::A;

/// Any path the app does not know.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section class="card narrow">
            <h1>"Nothing here"</h1>
            <p>"This page does not exist. "<A href="/">"Back to the live diagram"</A>"."</p>
        </section>
    }
}
