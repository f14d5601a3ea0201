//! Lecture mode: presentation, playback, the instructor's token, and the keys a keyboard or a
//! presenter remote sends. Shared by every page through the context.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::model::Timeline;
use crate::model::playback::Playback;
use crate::recorder::Recorder;

/// Type scale of the diagram in presentation mode (13 px labels become 28 px).
pub const PRESENT_SCALE: f64 = 28.0 / 13.0;

#[derive(Debug, Clone, Copy)]
pub struct Lecture {
    pub present: RwSignal<bool>,
    pub dark: RwSignal<bool>,
    pub blank: RwSignal<bool>,
    pub playback: RwSignal<Playback>,
    /// The instructor's quick fault console (key F).
    pub console: RwSignal<bool>,
    /// The instructor's token, once the server accepted it.
    pub token: RwSignal<Option<String>>,
    /// A recorded session or an imported trace, shown instead of the live timeline.
    pub replay: RwSignal<Option<(String, Timeline)>>,
}

impl Lecture {
    pub fn from_context() -> Self {
        expect_context::<Lecture>()
    }

    pub fn is_instructor(&self) -> bool {
        self.token.with(Option::is_some)
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// Takes `#token=…` out of the address (and the history), keeping it for this tab only.
fn token_from_address() -> Option<String> {
    let w = web_sys::window()?;
    let hash = w.location().hash().ok().unwrap_or_default();
    if let Some(t) = hash.strip_prefix("#token=").filter(|t| !t.is_empty()) {
        if let Some(s) = storage() {
            let _ = s.set_item("wirescope.token", t);
        }
        let path = w.location().pathname().unwrap_or_default() + &w.location().search().unwrap_or_default();
        if let Ok(h) = w.history() {
            let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&path));
        }
        return Some(t.to_owned());
    }
    storage().and_then(|s| s.get_item("wirescope.token").ok().flatten())
}

fn typing_in_a_field(ev: &web_sys::KeyboardEvent) -> bool {
    ev.target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"))
}

/// Rows the diagram has now (for playback), with the page's filter.
pub fn total_rows(rec: Recorder, lecture: Lecture) -> usize {
    rec.filter.with_untracked(|f| {
        lecture.replay.with_untracked(|r| match r {
            Some((_, t)) => f.apply(t).len(),
            None => rec.timeline().with_untracked(|t| f.apply(t).len()),
        })
    })
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

/// Sets lecture mode up: reads `?present` and `#token=`, listens to the keys, ticks playback.
pub fn start(rec: Recorder) -> Lecture {
    let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let lecture = Lecture {
        present: RwSignal::new(search.contains("present")),
        dark: RwSignal::new(search.contains("dark")),
        blank: RwSignal::new(false),
        playback: RwSignal::new(Playback::default()),
        console: RwSignal::new(false),
        token: RwSignal::new(None),
        replay: RwSignal::new(None),
    };
    if let Some(token) = token_from_address() {
        leptos::task::spawn_local(async move {
            let ok = crate::api::instructor::call(
                &rec,
                &token,
                gloo_net::http::Method::GET,
                "/api/instructor",
                None,
            )
            .await
            .is_ok_and(|a| a.status == 204);
            if ok {
                lecture.token.set(Some(token));
            } else if let Some(s) = storage() {
                let _ = s.remove_item("wirescope.token");
            }
        });
    }
    // The page's look follows the mode.
    Effect::new(move |_| {
        let (present, dark) = (lecture.present.get(), lecture.dark.get());
        if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
            let _ = body.class_list().toggle_with_force("present", present);
            let _ = body.class_list().toggle_with_force("dark", dark);
        }
    });
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if typing_in_a_field(&ev) || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
            return;
        }
        let total = total_rows(rec, lecture);
        let mut handled = true;
        match ev.key().as_str() {
            "p" | "P" => lecture.present.update(|p| *p = !*p),
            "F5" => lecture.present.set(true),
            "Escape" if lecture.present.get_untracked() && rec.selected.with_untracked(Option::is_none) => {
                lecture.present.set(false)
            }
            " " => lecture.playback.update(|p| p.toggle_pause(total)),
            "ArrowRight" | "PageDown" => lecture.playback.update(|p| p.step(total)),
            "ArrowLeft" | "PageUp" => lecture.playback.update(|p| p.back(total)),
            "+" | "=" => lecture.playback.update(|p| p.faster(total)),
            "-" | "_" => lecture.playback.update(|p| p.slower(total)),
            "r" | "R" => lecture.playback.update(|p| p.replay(now_ms())),
            "l" | "L" => lecture.playback.update(Playback::live),
            "b" | "B" | "." => lecture.blank.update(|b| *b = !*b),
            "t" | "T" => lecture.dark.update(|d| *d = !*d),
            "i" | "I" => rec.filter.update(|f| f.view = f.view.other()),
            "f" | "F" if lecture.is_instructor() => lecture.console.update(|c| *c = !*c),
            _ => handled = false,
        }
        if handled {
            ev.prevent_default();
        }
    });
    on_cleanup(move || keys.remove());
    if let Ok(h) = set_interval_with_handle(
        move || {
            let total = total_rows(rec, lecture);
            let changed = lecture.playback.try_update_untracked(|p| p.tick(now_ms(), total)).unwrap_or(false);
            if changed {
                lecture.playback.notify();
            }
        },
        std::time::Duration::from_millis(50),
    ) {
        on_cleanup(move || h.clear());
    }
    lecture
}
