//! Export what the diagram shows (JSON trace, HAR, Mermaid, SVG, PNG) and import a trace or a
//! HAR file for replay. Nothing imported is ever sent again: it is only drawn.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::lecture::Lecture;
use crate::model::export::{har, import, mermaid, svg, trace};
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

/// The whole filtered timeline laid out (at most the newest 1,000 rows), for SVG and PNG.
fn full_diagram(t: &Timeline, rec: Recorder, width: f64) -> Diagram {
    rec.filter.with_untracked(|f| {
        let rows = f.apply(t);
        let from = rows.len().saturating_sub(1000);
        let rows = &rows[from..];
        Diagram::layout(t, rows, &Geometry::for_width(width), 0..rows.len(), crate::clock::utc_offset_min())
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
    let with_source = move |f: &dyn Fn(&Timeline)| {
        lecture.replay.with_untracked(|r| match r {
            Some((_, t)) => f(t),
            None => rec.timeline().with_untracked(|t| f(t)),
        })
    };
    let origin = || web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let export_trace = move |_| {
        with_source(&|t| {
            let rows = rec.filter.with_untracked(|f| f.apply(t));
            download(&format!("wirescope-{}.trace.json", stamp()), "application/json", &trace(t, &rows));
        })
    };
    let export_har = move |_| {
        with_source(&|t| {
            let rows = rec.filter.with_untracked(|f| f.apply(t));
            download(&format!("wirescope-{}.har", stamp()), "application/json", &har(&rows, &origin()));
        })
    };
    let export_mermaid = move |_| {
        with_source(&|t| {
            let rows = rec.filter.with_untracked(|f| f.apply(t));
            let parts = mermaid(t, &rows);
            let text = parts.join("\n%% ---- the session continues in the next diagram ----\n\n");
            download(&format!("wirescope-{}.mmd", stamp()), "text/plain", &text);
        })
    };
    let export_svg = move |_| {
        with_source(&|t| {
            let d = full_diagram(t, rec, 1200.0);
            download(&format!("wirescope-{}.svg", stamp()), "image/svg+xml", &svg(&d));
        })
    };
    let export_png = move |_| {
        with_source(&|t| {
            let d = full_diagram(t, rec, 1200.0);
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
    view! {
        <details class="exports">
            <summary>"Export / import"</summary>
            <div class="export-list">
                <button class="btn" id="export-trace" on:click=export_trace>"JSON trace"</button>
                <button class="btn" id="export-har" on:click=export_har>"HAR 1.2"</button>
                <button class="btn" id="export-mermaid" on:click=export_mermaid>"Mermaid"</button>
                <button class="btn" id="export-svg" on:click=export_svg>"SVG"</button>
                <button class="btn" id="export-png" on:click=export_png>"PNG"</button>
                <label class="btn import">
                    "Import trace or HAR…"
                    <input id="import-file" type="file" accept=".json,.har,application/json" on:change=on_file />
                </label>
                <p class="result error">{problem}</p>
            </div>
        </details>
    }
}
