//! The transcripts as a table, driven by the typed client: every click is a REST exchange
//! drawn on the diagram.

use leptos::prelude::*;
use protocol::Transcript;

use crate::api::transcripts;
use crate::recorder::Recorder;

#[component]
pub fn TranscriptsCard() -> impl IntoView {
    let rec = Recorder::from_context();
    let rows = RwSignal::new(None::<Vec<Transcript>>);
    let (error, set_error) = signal(String::new());
    let name = RwSignal::new(String::new());
    let busy = RwSignal::new(false);

    // Every action ends by reloading the list, as a REST client must: the server holds the state.
    let reload = move || async move {
        match transcripts::list(&rec).await {
            Ok(list) => {
                rows.set(Some(list));
                set_error.set(String::new());
            }
            Err(e) => set_error.set(e.to_string()),
        }
    };
    let run = move |action: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>| {
        busy.set(true);
        leptos::task::spawn_local(async move {
            if let Err(e) = action.await {
                set_error.set(e);
            } else {
                reload().await;
            }
            busy.set(false);
        });
    };
    let load = move |_| run(Box::pin(async { Ok(()) }));
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = name.get_untracked();
        run(Box::pin(async move {
            transcripts::add_student(&rec, &n, Vec::new()).await.map(|_| ()).map_err(|e| e.to_string())
        }));
        name.set(String::new());
    };
    let remove = move |id| {
        run(Box::pin(async move { transcripts::delete(&rec, id).await.map_err(|e| e.to_string()) }))
    };

    view! {
        <section class="card" id="transcripts-card">
            <h2>"Transcripts · a REST resource"</h2>
            <p class="hint">"The server holds the state; the browser asks for it again after every change."</p>
            <button id="load-transcripts" class="btn primary" on:click=load disabled=busy>"GET /transcripts"</button>
            <Show when=move || rows.with(Option::is_some)>
                <table class="transcripts">
                    <thead>
                        <tr><th>"id"</th><th>"student"</th><th>"grades"</th><th></th></tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || rows.get().unwrap_or_default()
                            key=|t| (t.student.student_id, t.grades.len())
                            children=move |t: Transcript| {
                                let id = t.student.student_id;
                                let grades = t
                                    .grades
                                    .iter()
                                    .map(|g| format!("{} {}", g.course, g.grade))
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                view! {
                                    <tr data-student=id>
                                        <td class="num">{id}</td>
                                        <td>{t.student.student_name.clone()}</td>
                                        <td class="grades">{grades}</td>
                                        <td>
                                            <button
                                                class="btn icon"
                                                title=format!("DELETE /transcripts/{id}")
                                                aria-label=format!("Delete student {id}")
                                                on:click=move |_| remove(id)
                                                disabled=busy
                                            >
                                                "✕"
                                            </button>
                                        </td>
                                    </tr>
                                }
                            }
                        />
                    </tbody>
                </table>
            </Show>
            <form class="inline-form" on:submit=add>
                <input id="new-student" type="text" placeholder="new student's name" maxlength="200" bind:value=name />
                <button class="btn" type="submit" disabled=move || busy.get() || name.with(|n| n.trim().is_empty())>
                    "POST"
                </button>
            </form>
            <p class="result error" aria-live="polite">{error}</p>
        </section>
    }
}
