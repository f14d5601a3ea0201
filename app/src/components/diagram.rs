//! The live sequence diagram: an SVG drawing of the visible window of the timeline.

use leptos::html::Div;
use leptos::prelude::*;

use crate::model::layout::View;
use crate::model::{Arrow, Diagram, Geometry, ItemKey, Tone};
use crate::recorder::Recorder;

/// Rows drawn beyond the visible ones, above and below.
const OVERSCAN: usize = 8;
/// While following, at least this many of the newest rows are drawn, even below a short
/// viewport: at thousands of events a second a frame brings dozens of rows, and each must
/// reach the page (and the screen-reader's view of it) at least once, not be skipped.
const FOLLOW_ROWS: usize = 96;

/// The page's timeline as a diagram: laid out for the width it gets, only the rows in view
/// in the DOM, following the newest row while the reader is at the bottom.
#[component]
pub fn LiveDiagram() -> impl IntoView {
    let rec = Recorder::from_context();
    let lecture = crate::lecture::Lecture::from_context();
    let frame = NodeRef::<Div>::new();
    let width = RwSignal::new(720.0);
    // (scroll top, viewport height) of the frame.
    let view = RwSignal::new((0.0, 600.0));
    let follow = RwSignal::new(true);
    let tz = crate::clock::utc_offset_min();
    let geometry = Memo::new(move |_| {
        let k = if lecture.present.get() { crate::lecture::PRESENT_SCALE } else { 1.0 };
        let geo = Geometry::for_width(width.get() / k).scaled(k);
        Geometry { width: width.get(), ..geo }
    });
    let diagram = Memo::new(move |_| {
        let geo = geometry.get();
        let (scroll_top, height) = view.get();
        let shown = lecture.playback.get();
        let lay = |t: &crate::model::Timeline, f: &crate::model::Filter| {
            let mut rows = f.apply(t);
            rows.truncate(shown.visible(rows.len()));
            let top = geo.header + if t.earlier() > 0 { geo.row * 0.7 } else { 0.0 };
            let window = if follow.get() {
                let n = ((height / geo.row).ceil() as usize + OVERSCAN).max(FOLLOW_ROWS);
                rows.len().saturating_sub(n)..rows.len()
            } else {
                // The frame scrolls the drawing below the (fixed) lane heads.
                Diagram::window(rows.len(), &geo, top, scroll_top + geo.header, height, OVERSCAN)
            };
            Diagram::layout(t, &rows, &geo, f.view, window, tz)
        };
        rec.filter.with(|f| {
            lecture.replay.with(|r| match r {
                Some((_, t)) => lay(t, f),
                None => rec.timeline().with(|t| lay(t, f)),
            })
        })
    });

    // The frame's height, so that it ends inside the screen (see `frame_height`).
    let fitted = RwSignal::new(None::<f64>);
    let measure = move || {
        // (A late timer may find the page gone: then nothing is measured.)
        if let Some(el) = frame.try_get_untracked().flatten() {
            if let Some(win) = web_sys::window() {
                let viewport = win.inner_height().ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
                let scrolled = win.scroll_y().unwrap_or(0.0);
                let top = el.get_bounding_client_rect().top() + scrolled;
                let below = if lecture.present.try_get_untracked() == Some(true) { 6.0 } else { 12.0 };
                let head =
                    el.previous_element_sibling().map_or(0.0, |h| h.get_bounding_client_rect().height());
                let h = crate::model::layout::frame_height(viewport, top, head, below);
                if fitted.get_untracked() != Some(h) {
                    fitted.set(Some(h));
                }
            }
            let w = f64::from(el.client_width());
            if w > 0.0 && (w - width.get_untracked()).abs() >= 1.0 {
                width.set(w);
            }
            let v = (f64::from(el.scroll_top()), f64::from(el.client_height()));
            if v != view.get_untracked() {
                view.set(v);
            }
        }
    };
    Effect::new(move |_| {
        frame.track();
        measure();
    });
    // Presentation mode and the fault console (in the page's flow, above the diagram) move
    // the frame: measure again once the page has settled.
    Effect::new(move |_| {
        lecture.present.track();
        lecture.console.track();
        set_timeout(measure, std::time::Duration::from_millis(60));
    });
    let resize = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || resize.remove());
    // Where the diagram last scrolled itself. Only the reader stops the following — a wheel,
    // a touch, a key or the scroll bar, then a scroll above that point; a scroll the layout
    // causes (rows hidden by a replay and shown again by "live") never does.
    let auto_top = StoredValue::new(0i32);
    let reader = StoredValue::new(false);
    let by_reader = move || reader.set_value(true);
    let to_bottom = move |el: &web_sys::HtmlDivElement| {
        el.set_scroll_top(el.scroll_height());
        let _ = auto_top.try_set_value(el.scroll_top());
        let _ = reader.try_set_value(false);
    };
    let on_scroll = move |_| {
        if let Some(el) = frame.get_untracked() {
            let gap = el.scroll_height() - el.scroll_top() - el.client_height();
            if gap < 48 {
                if !follow.get_untracked() {
                    follow.set(true);
                }
                reader.set_value(false);
            } else if follow.get_untracked() && el.scroll_top() + 4 < auto_top.get_value() {
                if reader.get_value() {
                    follow.set(false);
                } else {
                    to_bottom(&el);
                }
            }
        }
        measure();
    };
    // Keep the newest row in view while following. After the drawing has its new height
    // (next frame): scrolling to the old height would show an empty stretch (R, then L).
    Effect::new(move |_| {
        diagram.with(|d| (d.rows, d.height));
        if follow.get() {
            // (By the next frame the page may have gone: then there is nothing to scroll.)
            request_animation_frame(move || {
                // Whatever moved the frame since (a line of text above it), it still ends
                // inside the screen.
                measure();
                if follow.try_get_untracked() == Some(true)
                    && let Some(el) = frame.try_get_untracked().flatten()
                {
                    to_bottom(&el);
                }
            });
        }
    });
    let jump = move |_| {
        follow.set(true);
        if let Some(el) = frame.get_untracked() {
            to_bottom(&el);
        }
    };

    view! {
        <div
            class="diagram-wrap"
            style=move || format!("--travel: {:.0}ms", lecture.playback.with(|p| p.travel_ms()))
        >
            <Show when=move || {
                rec.filter.with(|f| f.view == View::Inside) && !diagram.with(Diagram::has_balancer)
            }>
                <p class="hint inside-hint">
                    "The inside view of one server: its writes are steps into SQLite, its reads come from memory. "
                    "Run it as a cluster ("<code>"scripts/cluster --replicas 2"</code>
                    ") and the balancer, each replica and PostgreSQL get lanes of their own."
                </p>
            </Show>
            <DiagramHead diagram=diagram />
            <div
                class="diagram-frame"
                class:fitted=move || fitted.get().is_some()
                style=move || fitted.get().map(|h| format!("--frame-h: {h:.0}px")).unwrap_or_default()
                node_ref=frame
                on:scroll=on_scroll
                on:wheel=move |_| by_reader()
                on:touchmove=move |_| by_reader()
                on:pointerdown=move |_| by_reader()
                on:keydown=move |_| by_reader()
            >
                <SequenceDiagram diagram=diagram />
            </div>
            <Show when=move || !follow.get()>
                <button class="btn follow" on:click=jump>"↓ newest"</button>
            </Show>
        </div>
    }
}

/// The lane heads: a strip that stays put while the rows scroll under it.
#[component]
pub fn DiagramHead(diagram: Memo<Diagram>) -> impl IntoView {
    let lanes = move || diagram.with(|d| d.lanes.clone());
    let header = move || diagram.with(|d| d.top - d.earlier_height());
    view! {
        <svg
            class="diagram-head"
            aria-hidden="true"
            width=move || diagram.with(|d| d.width)
            height=header
            viewBox=move || format!("0 0 {} {}", diagram.with(|d| d.width), header())
        >
            <For
                each=lanes
                key=|l| (l.key.clone(), l.x as i64, l.title.clone(), l.subtitle.clone(), l.highlight)
                children=move |lane| {
                    let base = match (lane.is_server, lane.is_self, lane.is_aggregate) {
                        (true, _, _) => "lane lane-server",
                        (_, true, _) => "lane lane-self",
                        (_, _, true) => "lane lane-others",
                        _ => "lane",
                    };
                    let class = if lane.highlight { format!("{base} lane-highlight") } else { base.to_owned() };
                    let w = lane.head_width;
                    let two = !lane.subtitle.is_empty();
                    let k = diagram.with_untracked(|d| d.scale);
                    let head_h = if two { 44.0 } else { 34.0 } * k;
                    view! {
                        <g class=class data-lane=lane.key.clone()>
                            <line class="lifeline" x1=lane.x x2=lane.x y1=8.0 * k + head_h y2=header></line>
                            <rect class="lane-head" x=lane.x - w / 2.0 y=8.0 * k width=w height=head_h rx=8.0 * k></rect>
                            <text class="lane-title" x=lane.x y=if two { 26.0 } else { 30.0 } * k text-anchor="middle">
                                {lane.title.clone()}
                            </text>
                            {two.then(|| view! {
                                <text class="lane-subtitle" x=lane.x y=44.0 * k text-anchor="middle">{lane.subtitle.clone()}</text>
                            })}
                        </g>
                    }
                }
            />
        </svg>
    }
}

/// The rows of a [`Diagram`] (lifelines, activation bars, arrows), below the lane heads.
#[component]
pub fn SequenceDiagram(diagram: Memo<Diagram>) -> impl IntoView {
    let lanes = move || diagram.with(|d| d.lanes.iter().map(|l| (l.key.clone(), l.x)).collect::<Vec<_>>());
    let arrows = move || diagram.with(|d| d.arrows.clone());
    let bars = move || diagram.with(|d| d.bars.clone());
    let links = move || diagram.with(|d| d.links.clone());
    let bar_labels = move || diagram.with(|d| d.bar_labels);
    // The drawing's own coordinates start below the lane heads.
    let head = move || diagram.with(|d| d.top - d.earlier_height());
    let body_height = move || diagram.with(|d| d.height) - head();
    view! {
        <svg
            class="diagram"
            role="img"
            aria-label="Sequence diagram of the traffic"
            width=move || diagram.with(|d| d.width)
            height=body_height
            viewBox=move || format!("0 {} {} {}", head(), diagram.with(|d| d.width), body_height())
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
                key=|(k, x)| (k.clone(), *x as i64)
                children=move |(_, x)| {
                    view! { <line class="lifeline" x1=x x2=x y1=head y2=move || diagram.with(|d| d.height)></line> }
                }
            />
            {move || diagram.with(|d| d.earlier.clone()).map(|text| view! {
                <text class="earlier" x=8 y=move || diagram.with(|d| d.top - 8.0)>{text}</text>
            })}
            <For
                each=bars
                key=|b| (b.y1 as i64, b.y2 as i64, b.x as i64)
                children=move |b| {
                    let k = diagram.with_untracked(|d| d.scale);
                    let labelled = !b.label.is_empty();
                    view! {
                        <g class="bar">
                            <rect x=b.x - 4.0 * k y=b.y1 width=8.0 * k height=(b.y2 - b.y1).max(2.0) rx=2></rect>
                            <Show when=move || bar_labels() && labelled>
                                <text x=b.x + 10.0 * k y=(b.y1 + b.y2) / 2.0 + 4.0 * k text-anchor="start">{b.label.clone()}</text>
                            </Show>
                        </g>
                    }
                }
            />
            <For
                each=links
                key=|l| (l.cause, l.y1 as i64, l.y2 as i64)
                children=move |l| {
                    view! {
                        <g class="cause" data-cause=l.cause>
                            <path d=format!("M {} {} C {} {}, {} {}, {} {}", l.x, l.y1, l.x + 26.0, l.y1, l.x + 26.0, l.y2, l.x, l.y2)></path>
                            <circle cx=l.x cy=l.y2 r=3></circle>
                        </g>
                    }
                }
            />
            <For
                each=arrows
                key=|a| (a.key, a.x1 as i64, a.x2 as i64, a.y as i64, a.label.clone(), a.note.clone())
                children=move |a: Arrow| view! { <ArrowRow arrow=a k=diagram.with_untracked(|d| d.scale) /> }
            />
        </svg>
    }
}

#[component]
fn ArrowRow(
    arrow: Arrow,
    /// Type scale: text offsets around the arrow grow with the type.
    k: f64,
) -> impl IntoView {
    let rec = Recorder::from_context();
    let Arrow {
        key,
        seq,
        y,
        x1,
        y1,
        x2,
        y2,
        label,
        label_x,
        title,
        time,
        note,
        tone,
        lost,
        local,
        server_us,
        client,
        mine,
        cause,
        is_note,
        ..
    } = arrow;
    let fresh = crate::observer::first_drawing(key);
    if fresh
        && crate::observer::marks_enabled()
        && let (ItemKey::Seq(_), Some(us)) = (key, server_us)
        && let Some(p) = web_sys::window().and_then(|w| w.performance())
    {
        let _ = p.mark(&format!("arrow:{seq}:{us}"));
    }
    let class = format!(
        "arrow {}{}{}{}{}{}",
        tone.class(),
        if lost { " lost" } else { "" },
        if local { " local" } else { "" },
        if mine { " mine" } else { "" },
        if fresh { " fresh" } else { "" },
        if x2 < x1 { " leftward" } else { "" },
    );
    let cross = lost.then(|| {
        let s = 6.0 * k;
        view! {
            <path class="cross" d=format!("M {} {} L {} {} M {} {} L {} {}", x2 - s, y2 - s, x2 + s, y2 + s, x2 - s, y2 + s, x2 + s, y2 - s)></path>
        }
    });
    let note = (!note.is_empty()).then(
        || view! { <text class="arrow-note" x=label_x y=y + 17.0 * k text-anchor="middle">{note}</text> },
    );
    let selected = move || rec.selected.get() == Some(key);
    let data_seq = if local { String::new() } else { seq.to_string() };
    if is_note {
        let (left, right) = (x1.min(x2), x1.max(x2));
        return view! {
            <g class="note-row" data-seq=data_seq data-client=client on:click=move |_| rec.selected.set(Some(key))>
                <title>{title}</title>
                <text class="row-time" x=6 y=y + 4.0 * k>{time}</text>
                <rect class="note-band" x=left y=y - 15.0 * k width=(right - left).max(40.0) height=26.0 * k rx=6.0 * k></rect>
                <text class="note-text" x=(left + right) / 2.0 y=y + 4.0 * k text-anchor="middle">{label}</text>
            </g>
        }
        .into_any();
    }
    view! {
        <g
            class=class
            class:selected=selected
            data-seq=data_seq
            data-client=client
            data-cause=cause.map(|c| c.to_string())
            on:click=move |_| rec.selected.set(Some(key))
        >
            <title>{title}</title>
            <rect class="hit" x=x1.min(x2) y=y - 22.0 * k width=(x2 - x1).abs() height=40.0 * k></rect>
            <text class="row-time" x=6 y=y + 4.0 * k>{time}</text>
            <g class="travel">
                <line class="arrow-line" x1=x1 y1=y1 x2=x2 y2=y2 marker-end=(!lost).then(|| format!("url(#head-{})", tone.class()))></line>
                {cross}
                <text class="arrow-label" x=label_x y=y - 8.0 * k text-anchor="middle">{label}</text>
                {note}
            </g>
        </g>
    }
    .into_any()
}

/// The live diagram with everything around it: status, filters, exports, playback, legend.
#[component]
pub fn DiagramCard() -> impl IntoView {
    view! {
        <section class="card diagram-card">
            <div class="diagram-toolbar">
                <crate::components::toolbar::StatusLine />
                <crate::components::toolbar::FilterBar />
                <crate::components::exports::ExportMenu />
            </div>
            <crate::components::presenter::PlaybackBar />
            <LiveDiagram />
            <Legend />
        </section>
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
        ("tone-inside", "inside step"),
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
