//! The Push page: this browser on `/ws/events` — presence, rooms and chat, the ping-pong demo,
//! and what the server pushes when anyone changes the transcripts.

use leptos::prelude::*;
use protocol::channel::ChangeKind;

use crate::channel::{Channel, Status};
use crate::components::{DiagramCard, NicknameField};
use crate::recorder::Recorder;

#[component]
pub fn Push() -> impl IntoView {
    let rec = Recorder::from_context();
    let ch = Channel::open(rec);
    let room = RwSignal::new("lecture".to_owned());
    let say_room = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let rounds = RwSignal::new(3u32);

    let status = move || match ch.status.get() {
        Status::Connecting => ("connecting", "connecting…".to_owned()),
        Status::Open => ("live", "connected".to_owned()),
        Status::Waiting { attempt, ms } => (
            "retrying",
            format!("lost — reconnecting in {:.1} s (attempt {attempt})", f64::from(ms) / 1000.0),
        ),
        Status::Stopped => ("retrying", "closed".to_owned()),
    };
    let join = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let r = room.get_untracked();
        ch.join(&r);
        say_room.set(r.trim().to_owned());
    };
    let say = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (r, t) = (say_room.get_untracked(), text.get_untracked());
        if !r.is_empty() && !t.trim().is_empty() {
            ch.say(&r, &t);
            text.set(String::new());
        }
    };
    let rooms = move || ch.rooms.get().into_iter().collect::<Vec<_>>();
    let chat = move || ch.chat.get().into_iter().rev().take(30).collect::<Vec<_>>();
    let pushed = move || ch.changes.get().into_iter().rev().take(10).collect::<Vec<_>>();
    let change_text = |k: ChangeKind| match k {
        ChangeKind::StudentCreated => "student created",
        ChangeKind::StudentDeleted => "student deleted",
        ChangeKind::GradeAdded => "grade added",
    };

    view! {
        <div class="home">
            <aside class="controls">
                <section class="card">
                    <NicknameField />
                </section>
                <section class="card" id="channel-card">
                    <h2>"WebSocket · /ws/events"</h2>
                    <p class="hint">"One connection, held open: the server speaks whenever it has news."</p>
                    <p class=move || format!("link link-{}", status().0)>
                        <span class="dot" aria-hidden="true"></span>
                        <span id="channel-status">{move || status().1}</span>
                    </p>
                    <dl class="facts">
                        <dt>"connected"</dt>
                        <dd id="presence-count">{move || ch.connected.get()}</dd>
                        <dt>"watchers (tick)"</dt>
                        <dd>{move || ch.watchers.get().map_or("–".to_owned(), |w| w.to_string())}</dd>
                        <dt>"connections made"</dt>
                        <dd id="connects">{move || ch.connects.get()}</dd>
                    </dl>
                    <p class="result error" aria-live="polite">{move || ch.last_error.get()}</p>
                </section>
                <section class="card">
                    <h2>"Rooms and chat"</h2>
                    <form class="inline-form" on:submit=join>
                        <input id="room-name" type="text" maxlength="40" bind:value=room aria-label="Room" />
                        <button class="btn" type="submit">"join"</button>
                    </form>
                    <ul class="rooms">
                        <For
                            each=rooms
                            key=|r| r.clone()
                            children=move |r: String| {
                                let r2 = r.clone();
                                let r3 = r.clone();
                                view! {
                                    <li class="chip" class:active=move || { say_room.get() == r2 }>
                                        <button class="link-btn" on:click=move |_| say_room.set(r3.clone())>{r.clone()}</button>
                                        <button class="link-btn" aria-label=format!("leave {r}") on:click=move |_| ch.leave(&r)>"×"</button>
                                    </li>
                                }
                            }
                        />
                    </ul>
                    <form class="inline-form" on:submit=say>
                        <input
                            id="chat-text"
                            type="text"
                            maxlength="2000"
                            placeholder=move || if say_room.get().is_empty() { "join a room first".to_owned() } else { format!("say something in {}", say_room.get()) }
                            bind:value=text
                        />
                        <button class="btn" type="submit" disabled=move || say_room.get().is_empty()>"send"</button>
                    </form>
                    <ol class="chat" id="chat-log">
                        <For
                            each=chat
                            key=|l| (l.at_us, l.from.client_id.clone(), l.text.clone())
                            children=|l| view! {
                                <li><span class="who">{l.from.name.clone()}</span>" "<span class="room">{format!("#{}", l.room)}</span>" "{l.text.clone()}</li>
                            }
                        />
                    </ol>
                </section>
                <section class="card">
                    <h2>"Ping-pong"</h2>
                    <p class="hint">"The server says ping n, this browser answers pong n, for as many rounds as you ask."</p>
                    <div class="inline-form">
                        <input
                            id="rounds"
                            type="number"
                            min="1"
                            max="100"
                            aria-label="Rounds"
                            prop:value=move || rounds.get().to_string()
                            on:input=move |ev| rounds.set(event_target_value(&ev).parse().unwrap_or(3).clamp(1, 100))
                        />
                        <button id="start-pingpong" class="btn" on:click=move |_| ch.pingpong(rounds.get_untracked())>"start"</button>
                    </div>
                    <p class="result" id="pingpong-state">{move || ch.pingpong.get()}</p>
                </section>
                <section class="card">
                    <h2>"Pushed by the server"</h2>
                    <p class="hint">"Change the transcripts anywhere (here, another browser, curl): every connection is told at once."</p>
                    <ol class="changes" id="pushed-changes">
                        <For
                            each=pushed
                            key=|c| c.seq
                            children=move |c| view! {
                                <li>
                                    <code>{format!("#{}", c.seq)}</code>" "{change_text(c.kind)}" · student "{c.student_id}
                                    {c.course.clone().map(|course| format!(" · {course}"))}
                                </li>
                            }
                        />
                    </ol>
                </section>
            </aside>
            <DiagramCard />
        </div>
    }
}
