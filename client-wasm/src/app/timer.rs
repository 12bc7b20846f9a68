//! Timers for async code: a future that resolves after a delay, and the clock.

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Resolves after `millis` milliseconds, through `setTimeout`.
pub async fn sleep(millis: u32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        let scheduled = web_sys::window().map(|window| {
            window.set_timeout_with_callback_and_timeout_and_arguments_0(
                &resolve,
                millis.min(i32::MAX as u32) as i32,
            )
        });
        // Without a window there is no timer; resolving at once keeps callers from hanging.
        if !matches!(scheduled, Some(Ok(_))) {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Milliseconds since the page loaded, from the monotonic `performance.now()`.
pub fn now_millis() -> f64 {
    web_sys::window()
        .and_then(|window| window.performance())
        .map(|performance| performance.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// Returns one random byte for retry jitter, or 128 when the random source fails.
pub fn jitter() -> u8 {
    let mut byte = [128u8];
    let _ = getrandom::fill(&mut byte);
    byte[0]
}
