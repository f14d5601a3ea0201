//! Export the session (JSON trace, HAR, Mermaid: the whole of it, written by the server) or a
//! picture of a span of rows (SVG, PNG), and import a trace or a HAR file for replay. Nothing
//! imported is ever sent again: it is only drawn.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use export::Format;
use gloo_net::http::Method;

use crate::api;
use crate::lecture::Lecture;
use crate::model::export::{import, observations, replayed, svg};
use crate::model::{Diagram, Geometry, Timeline};
use crate::recorder::Recorder;

/// Offers `text` as a file download named `name`.
pub fn download(name: &str, mime: &str, text: &str) {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else { return };
    download_blob(name, &blob);
}

fn download_blob(name: &str, blob: &web_sys::Blob) {
    let Ok(url) = web_sys::Url::create_object_url_with_blob(blob) else { return };
    if let Some(a) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("a").ok())
        .and_then(|e| e.dyn_into::<web_sys::HtmlAnchorElement>().ok())
    {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

/// Most rows in one SVG or PNG: a long session is exported as a span of it.
const SPAN_LIMIT: usize = 300;
/// Rows in the SVG or PNG when nobody chose a span: the newest ones.
const SPAN_DEFAULT: usize = 40;

/// Rows `from..=to` (1-based, of the filtered timeline) laid out as one drawing.
fn span_diagram(t: &Timeline, rec: Recorder, width: f64, from: usize, to: usize) -> Diagram {
    rec.filter.with_untracked(|f| {
        let rows = f.apply(t);
        let to = to.min(rows.len());
        let from = from.clamp(1, to.max(1)).max(to.saturating_sub(SPAN_LIMIT - 1));
        let rows = if rows.is_empty() { &rows[..] } else { &rows[from - 1..to] };
        let tz = crate::clock::utc_offset_min();
        Diagram::layout(t, rows, &Geometry::for_width(width), f.view, 0..rows.len(), tz)
    })
}

fn stamp() -> String {
    crate::model::time::iso(crate::clock::now_us()).replace([':', '.'], "-")
}

/// Draws an SVG onto a canvas and offers it as PNG.
fn png(svg_text: String, width: f64, height: f64) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    let Ok(img) = web_sys::HtmlImageElement::new() else { return };
    let Some(canvas) =
        doc.create_element("canvas").ok().and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok())
    else {
        return;
    };
    let scale = 2.0;
    canvas.set_width((width * scale) as u32);
    canvas.set_height((height * scale).min(30_000.0) as u32);
    let url = format!("data:image/svg+xml;charset=utf-8,{}", js_sys::encode_uri_component(&svg_text));
    let img2 = img.clone();
    let onload = wasm_bindgen::closure::Closure::once_into_js(move || {
        let Some(ctx) = canvas
            .get_context("2d")
            .ok()
            .flatten()
            .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
        else {
            return;
        };
        let _ = ctx.scale(scale, scale);
        let _ = ctx.draw_image_with_html_image_element(&img2, 0.0, 0.0);
        let cb = wasm_bindgen::closure::Closure::once_into_js(move |blob: wasm_bindgen::JsValue| {
            if let Ok(b) = blob.dyn_into::<web_sys::Blob>() {
                download_blob(&format!("wirescope-{}.png", stamp()), &b);
            }
        });
        let _ = canvas.to_blob(cb.unchecked_ref());
    });
    img.set_onload(Some(onload.unchecked_ref()));
    img.set_src(&url);
}

#[component]
pub fn ExportMenu() -> impl IntoView {
    let rec = Recorder::from_context();
    let lecture = Lecture::from_context();
    let (problem, set_problem) = signal(String::new());
    let busy = RwSignal::new(false);
    let with_source = move |f: &dyn Fn(&Timeline)| {
        lecture.replay.with_untracked(|r| match r {
            Some((_, t)) => f(t),
            None => rec.timeline().with_untracked(|t| f(t)),
        })
    };
    let origin = || web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    // A live session: the server writes the whole of it; this browser adds what only it saw.
    // An imported one: written here, by the same writers.
    let export = move |format: Format| {
        let name = format!("wirescope-{}.{}", stamp(), format.extension());
        if let Some(text) =
            lecture.replay.with_untracked(|r| r.as_ref().map(|(_, t)| replayed(t, format, &origin())))
        {
            download(&name, format.mime(), &text);
            return;
        }
        let body = rec.timeline().with_untracked(|t| {
            serde_json::json!({ "me": rec.client(), "observations": observations(t) }).to_string()
        });
        let path = format!("/api/sessions/current/export?format={}", format.name());
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::exchange(&rec, Method::POST, &path, Some(body)).await {
                Ok(a) if a.status == 200 => {
                    set_problem.set(String::new());
                    download(&name, format.mime(), &a.text);
                }
                Ok(a) => set_problem.set(
                    a.json::<serde_json::Value>()
                        .err()
                        .map_or_else(|| format!("export failed: {}", a.status), |e| e.to_string()),
                ),
                Err(e) => set_problem.set(format!("export failed: {e}")),
            }
            busy.set(false);
        });
    };
    let total = move || {
        lecture.replay.track();
        rec.timeline().track();
        rec.filter.track();
        with_source_count(rec, lecture)
    };
    let span_from = RwSignal::new(0usize);
    let span_to = RwSignal::new(0usize);
    // Unless a span was chosen: the newest rows.
    let span = move || {
        let n = total();
        let to = if span_to.get() == 0 { n } else { span_to.get().min(n) };
        let from =
            if span_from.get() == 0 { to.saturating_sub(SPAN_DEFAULT - 1).max(1) } else { span_from.get() };
        (from.min(to.max(1)), to)
    };
    let export_svg = move |_| {
        let (from, to) = span();
        with_source(&|t| {
            let d = span_diagram(t, rec, 1200.0, from, to);
            download(&format!("wirescope-{}-rows-{from}-{to}.svg", stamp()), "image/svg+xml", &svg(&d));
        })
    };
    let export_png = move |_| {
        let (from, to) = span();
        with_source(&|t| {
            let d = span_diagram(t, rec, 1200.0, from, to);
            png(svg(&d), d.width, d.height);
        })
    };
    let on_file = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        let name = file.name();
        leptos::task::spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text())
                .await
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            match import(&text) {
                Ok(t) => {
                    set_problem.set(String::new());
                    lecture.replay.set(Some((name, t)));
                    lecture.playback.update(|p| p.live());
                }
                Err(e) => set_problem.set(e),
            }
        });
        input.set_value("");
    };
    let number = |ev: &leptos::ev::Event| event_target_value(ev).trim().parse::<usize>().unwrap_or(0);
    view! {
        <details class="exports">
            <summary>"Export / import"</summary>
            <div class="export-list">
                <p class="export-what">"The whole session, as the server recorded it:"</p>
                <button class="btn" id="export-trace" disabled=move || busy.get() on:click=move |_| export(Format::Trace)>"JSON trace"</button>
                <button class="btn" id="export-har" disabled=move || busy.get() on:click=move |_| export(Format::Har)>"HAR 1.2"</button>
                <button class="btn" id="export-mermaid" disabled=move || busy.get() on:click=move |_| export(Format::Mermaid)>"Mermaid"</button>
                <p class="export-what">{move || { let (f, t) = span(); format!("A picture of rows {f}–{t} (at most {SPAN_LIMIT}):") }}</p>
                <div class="export-span">
                    <label>"from "<input id="export-from" type="number" min="1" prop:value=move || span().0.to_string()
                        on:change=move |ev| span_from.set(number(&ev)) /></label>
                    <label>"to "<input id="export-to" type="number" min="1" prop:value=move || span().1.to_string()
                        on:change=move |ev| span_to.set(number(&ev)) /></label>
                </div>
                <button class="btn" id="export-svg" on:click=export_svg>"SVG"</button>
                <button class="btn" id="export-png" on:click=export_png>"PNG"</button>
                <label class="btn import">
                    "Import trace or HAR…"
                    <input id="import-file" type="file" accept=".json,.har,application/json" on:change=on_file />
                </label>
                <p class="result error" id="export-problem">{problem}</p>
            </div>
        </details>
    }
}

/// Rows of what is shown (the replayed file or the live timeline), filtered.
fn with_source_count(rec: Recorder, lecture: Lecture) -> usize {
    rec.filter.with_untracked(|f| {
        lecture.replay.with_untracked(|r| match r {
            Some((_, t)) => f.apply(t).len(),
            None => rec.timeline().with_untracked(|t| f.apply(t).len()),
        })
    })
}
