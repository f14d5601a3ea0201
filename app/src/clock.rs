//! This browser's clock, in the same units as the server's (µs since the Unix epoch), its
//! timers, and how long to wait before trying again.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

/// Now, with the sub-millisecond resolution of `performance.now()` where available.
pub fn now_us() -> protocol::Micros {
    let ms = web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.time_origin() + p.now())
        .unwrap_or_else(js_sys::Date::now);
    (ms * 1000.0) as protocol::Micros
}

/// Minutes east of UTC of this browser's time zone.
pub fn utc_offset_min() -> i32 {
    -(js_sys::Date::new_0().get_timezone_offset() as i32)
}

/// Resolves after `ms` milliseconds (a browser timer).
pub fn sleep(ms: i32) -> Sleep {
    let state = Rc::new(std::cell::RefCell::new((false, None::<std::task::Waker>)));
    let s = state.clone();
    let cb = Closure::once_into_js(move || {
        let mut st = s.borrow_mut();
        st.0 = true;
        if let Some(w) = st.1.take() {
            w.wake();
        }
    });
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms);
    }
    Sleep(state)
}

/// See [`sleep`].
pub struct Sleep(Rc<std::cell::RefCell<(bool, Option<std::task::Waker>)>>);

impl Future for Sleep {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let mut st = self.0.borrow_mut();
        if st.0 {
            return std::task::Poll::Ready(());
        }
        st.1 = Some(cx.waker().clone());
        std::task::Poll::Pending
    }
}

/// Backoff before attempt `n`: 0.5 s doubling to 10 s, ± 30 % jitter.
pub fn backoff_ms(attempt: u32, jitter: f64) -> i32 {
    let base = (500.0 * 2f64.powi(attempt.saturating_sub(1).min(5) as i32)).min(10_000.0);
    (base * (0.7 + 0.6 * jitter.clamp(0.0, 1.0))).round() as i32
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_ten_seconds_with_jitter() {
        assert_eq!(backoff_ms(1, 0.5), 500);
        assert_eq!(backoff_ms(2, 0.5), 1000);
        assert_eq!(backoff_ms(3, 0.5), 2000);
        assert_eq!(backoff_ms(9, 0.5), 10_000);
        assert_eq!(backoff_ms(1, 0.0), 350);
        assert_eq!(backoff_ms(1, 1.0), 650);
    }
}
