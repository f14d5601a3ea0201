//! This browser's clock, in the same units as the server's: µs since the Unix epoch.

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
