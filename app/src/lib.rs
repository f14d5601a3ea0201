//! wirescope's front end. `model` holds the logic as plain, tested types; `components` and
//! `pages` render it; the network layer (`api`, `ws`, `observer`, `channel`, `lab_client`;
//! see `app/layers.txt`) is all that touches the network, and what this browser sends and
//! receives is recorded through the [`recorder::Recorder`].

pub mod api;
pub mod channel;
pub mod clock;
pub mod components;
pub mod identity;
pub mod lab_client;
pub mod lecture;
pub mod model;
pub mod observer;
pub mod pages;
pub mod recorder;
pub mod ws;

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// The whole app: header, and the page the address names.
#[component]
pub fn App() -> impl IntoView {
    let recorder = recorder::Recorder::new(identity::client_id(), identity::nickname());
    provide_context(recorder);
    provide_context(observer::start(recorder));
    let lecture = lecture::start(recorder);
    provide_context(lecture);
    view! {
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">
                    <span class="brand-mark" aria-hidden="true">"⇄"</span>
                    <span class="brand-name">"wirescope"</span>
                </A>
                <span class="tagline">"REST and WebSocket, drawn live"</span>
                <nav class="nav">
                    <A href="/" exact=true>"Live"</A>
                    <A href="/push">"Push"</A>
                    <A href="/lab">"Lab"</A>
                    <A href="/docs">"API"</A>
                    <Show when=move || lecture.is_instructor()>
                        <A href="/instructor">"Instructor"</A>
                    </Show>
                </nav>
            </header>
            <components::Inspector />
            <components::Blank />
            <main>
                // In the page's flow, above whatever page is open: never over the diagram.
                <components::FaultConsole />
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view=pages::Home />
                    <Route path=path!("/docs") view=pages::Docs />
                    <Route path=path!("/push") view=pages::Push />
                    <Route path=path!("/lab") view=pages::Lab />
                    <Route path=path!("/instructor") view=pages::Instructor />
                </Routes>
            </main>
        </Router>
    }
}
