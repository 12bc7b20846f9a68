//! The JavaScript interface, run as WebAssembly in headless Chromium.

#![cfg(target_arch = "wasm32")]

use dropthat_client::api;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn new_room_is_hash_and_22_characters() {
    let fragment = api::new_room().unwrap();
    assert!(fragment.starts_with('#'));
    assert_eq!(fragment.len(), 23);
    assert_eq!(api::channel_id(&fragment).unwrap().len(), 21);
}

#[wasm_bindgen_test]
fn new_rooms_differ() {
    assert_ne!(api::new_room().unwrap(), api::new_room().unwrap());
}

#[wasm_bindgen_test]
fn encrypt_then_decrypt_in_browser() {
    let room = api::new_room().unwrap();
    let envelope = api::encrypt(&room, "grüße 🎉").unwrap();
    assert_eq!(api::decrypt(&room, &envelope).unwrap(), "grüße 🎉");
}

#[wasm_bindgen_test]
fn errors_are_thrown_as_error_objects() {
    let error = JsValue::from(api::decrypt("#room", "not json").unwrap_err());
    let error: js_sys::Error = error.into();
    let message = String::from(error.message());
    assert!(message.contains("not valid JSON"), "{message}");

    let error = JsValue::from(api::channel_id("#short").unwrap_err());
    let message = String::from(js_sys::Error::from(error).message());
    assert!(message.contains("expected 22"), "{message}");
}
