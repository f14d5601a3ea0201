//! The live sequence diagram: an SVG drawing of a [`Diagram`].

use leptos::html::Div;
use leptos::prelude::*;

use crate::model::{Arrow, Diagram, Geometry, Tone};
use crate::recorder::{Recorder, SELF_CLIENT};

/// The diagram of this browser's log, laid out for the width it gets, with its legend.
#[component]
pub fn LiveDiagram() -> impl IntoView {
    let rec = Recorder::from_context();
    let width = RwSignal::new(720.0);
    let tz = crate::clock::utc_offset_min();
    let diagram = Memo::new(move |_| {
        let geo = Geometry::for_width(width.get());
        rec.log().with(|log| Diagram::layout(log.events(), SELF_CLIENT, &geo, tz))
    });
    view! {
        <SequenceDiagram diagram=diagram width=width />
        <Legend />
    }
}

/// What the arrow colours mean.
#[component]
pub fn Legend() -> impl IntoView {
    let items = [
        ("tone-request", "request"),
        ("tone-success", "success"),
        ("tone-client-error", "client error"),
        ("tone-server-error", "server error"),
        ("tone-frame", "WebSocket frame"),
        ("tone-close", "close"),
        ("tone-lost", "lost"),
    ];
    view! {
        <ul class="legend">
            {items
                .into_iter()
                .map(|(class, text)| {
                    view! {
                        <li>
                            <span class=format!("swatch {class}")></span>
                            {text}
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

/// Draws `diagram`. Reports the width it has to draw in through `width`, so the layout fits
/// the screen (a phone, a laptop, a projector) instead of being scaled down.
#[component]
pub fn SequenceDiagram(diagram: Memo<Diagram>, width: RwSignal<f64>) -> impl IntoView {
    let frame = NodeRef::<Div>::new();
    let measure = move || {
        if let Some(el) = frame.get_untracked() {
            let w = f64::from(el.client_width());
            if w > 0.0 && (w - width.get_untracked()).abs() >= 1.0 {
                width.set(w);
            }
        }
    };
    Effect::new(move |_| {
        frame.track();
        measure();
    });
    let resize = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || resize.remove());

    // Follow the newest arrow while the reader is at the bottom; stop when they scroll up.
    let follow = RwSignal::new(true);
    let on_scroll = move |_| {
        if let Some(el) = frame.get_untracked() {
            let gap = el.scroll_height() - el.scroll_top() - el.client_height();
            follow.set(gap < 48);
        }
    };
    Effect::new(move |_| {
        diagram.with(|d| d.arrows.len());
        if follow.get_untracked()
            && let Some(el) = frame.get_untracked()
        {
            el.set_scroll_top(el.scroll_height());
        }
    });

    let lanes = move || diagram.with(|d| d.lanes.clone());
    let arrows = move || diagram.with(|d| d.arrows.clone());
    view! {
        <div class="diagram-frame" node_ref=frame on:scroll=on_scroll>
            <svg
                class="diagram"
                role="img"
                aria-label="Sequence diagram of this browser's traffic"
                width=move || diagram.with(|d| d.width)
                height=move || diagram.with(|d| d.height)
                viewBox=move || diagram.with(|d| format!("0 0 {} {}", d.width, d.height))
            >
                <defs>
                    {Tone::ALL
                        .into_iter()
                        .map(|tone| {
                            view! {
                                <marker
                                    id=format!("head-{}", tone.class())
                                    viewBox="0 0 10 10"
                                    refX="9"
                                    refY="5"
                                    markerWidth="7"
                                    markerHeight="7"
                                    orient="auto-start-reverse"
                                >
                                    <path class=tone.class() d="M 0 0 L 10 5 L 0 10 z" fill="currentColor"></path>
                                </marker>
                            }
                        })
                        .collect_view()}
                </defs>
                <For
                    each=lanes
                    key=|l| (l.key.clone(), l.x as i64)
                    children=move |lane| {
                        let height = move || diagram.with(|d| d.height - 8.0);
                        let class = if lane.is_server { "lane lane-server" } else if lane.is_self { "lane lane-self" } else { "lane" };
                        let w = (lane.title.chars().count() as f64 * 8.6 + 28.0).max(84.0);
                        view! {
                            <g class=class data-lane=lane.key.clone()>
                                <line class="lifeline" x1=lane.x x2=lane.x y1=44 y2=height></line>
                                <rect class="lane-head" x=lane.x - w / 2.0 y=8 width=w height=34 rx=8></rect>
                                <text class="lane-title" x=lane.x y=30 text-anchor="middle">{lane.title.clone()}</text>
                            </g>
                        }
                    }
                />
                <For
                    each=arrows
                    key=|a| (a.seq, a.x1 as i64, a.x2 as i64, a.label.clone())
                    children=move |a: Arrow| view! { <ArrowRow arrow=a /> }
                />
            </svg>
        </div>
    }
}

#[component]
fn ArrowRow(arrow: Arrow) -> impl IntoView {
    let Arrow { seq, y, x1, x2, label, title, time, note, tone, lost, .. } = arrow;
    let mid = (x1 + x2) / 2.0;
    let class = format!("arrow {}{}", tone.class(), if lost { " lost" } else { "" });
    let cross = lost.then(|| {
        let (cx, s) = (x2, 6.0);
        view! {
            <path class="cross" d=format!("M {} {} L {} {} M {} {} L {} {}", cx - s, y - s, cx + s, y + s, cx - s, y + s, cx + s, y - s)></path>
        }
    });
    let note = (!note.is_empty())
        .then(|| view! { <text class="arrow-note" x=mid y=y + 16.0 text-anchor="middle">{note}</text> });
    view! {
        <g class=class data-seq=seq.to_string()>
            <title>{title}</title>
            <text class="row-time" x=6 y=y + 4.0>{time}</text>
            <line class="arrow-line" x1=x1 y1=y x2=x2 y2=y marker-end=(!lost).then(|| format!("url(#head-{})", tone.class()))></line>
            {cross}
            <text class="arrow-label" x=mid y=y - 8.0 text-anchor="middle">{label}</text>
            {note}
        </g>
    }
}
