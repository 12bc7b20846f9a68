//! The JavaScript interface, run as WebAssembly in headless Chromium.

#![cfg(target_arch = "wasm32")]

use dropthat_client::api;
use js_sys::Uint8Array;
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

#[wasm_bindgen_test]
fn blob_round_trips_in_browser() {
    let room = api::new_room().unwrap();
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let blob = api::encrypt_bytes(&room, &content).unwrap();
    assert_eq!(blob.len(), 25 + content.len() + 16);
    assert_eq!(api::decrypt_bytes(&room, &blob).unwrap(), content);

    let error = JsValue::from(api::decrypt_bytes("#other", &blob).unwrap_err());
    let message = String::from(js_sys::Error::from(error).message());
    assert!(message.contains("cannot decrypt"), "{message}");
}

#[wasm_bindgen_test]
fn prehash_in_browser_matches_sjcl() {
    // The value sjcl 1.0.9's primitives give for these inputs by the original page's rule.
    assert_eq!(
        api::prehash("dropth.at", "cda", "password"),
        "e1l178y/9X+h4fTPtSmLSTN4QZAMnpeBk/N2R+2/YBY="
    );
}

#[wasm_bindgen_test]
async fn async_functions_use_webcrypto_in_browser() {
    // The test page is served from 127.0.0.1, a secure context, so WebCrypto is there.
    assert!(dropthat_client::webcrypto::subtle().is_some());

    let room = api::new_room().unwrap();
    let envelope = api::encrypt_async(room.clone(), "grüße 🎉".into())
        .await
        .unwrap();
    assert_eq!(api::decrypt(&room, &envelope).unwrap(), "grüße 🎉");
    let other = api::encrypt(&room, "sync").unwrap();
    assert_eq!(
        api::decrypt_async(room.clone(), other).await.unwrap(),
        "sync"
    );

    let content: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    let blob = api::encrypt_bytes_async(room.clone(), Uint8Array::from(&content[..]))
        .await
        .unwrap();
    assert_eq!(api::decrypt_bytes(&room, &blob.to_vec()).unwrap(), content);
    let blob = api::encrypt_bytes(&room, &content).unwrap();
    let opened = api::decrypt_bytes_async(room.clone(), Uint8Array::from(&blob[..]))
        .await
        .unwrap();
    assert_eq!(opened.to_vec(), content);

    let mut tampered = blob;
    tampered[100] ^= 1;
    let tampered = Uint8Array::from(&tampered[..]);
    let error = JsValue::from(api::decrypt_bytes_async(room, tampered).await.unwrap_err());
    let message = String::from(js_sys::Error::from(error).message());
    assert!(message.contains("cannot decrypt"), "{message}");
}
