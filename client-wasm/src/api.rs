//! The JavaScript interface of the cryptography, exported with wasm-bindgen.
//!
//! Errors reach JavaScript as thrown `Error` objects whose message is the Rust error's text.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use crate::crypto::envelope::{self, Params};
use crate::crypto::kdf::KeyCache;
use crate::crypto::room::RoomKey;

thread_local! {
    /// Derived keys of this page. WebAssembly here runs on one thread, so a thread-local is
    /// the page's single cache.
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

/// Creates a room and returns its fragment: `#` followed by 22 base64url characters.
#[wasm_bindgen(js_name = newRoom)]
pub fn new_room() -> Result<String, JsError> {
    let key = RoomKey::generate()?;
    Ok(key.fragment().expose().to_owned())
}

/// Returns the channel id for a room fragment, after checking that it is a valid room link.
#[wasm_bindgen(js_name = channelId)]
pub fn channel_id(fragment: &str) -> Result<String, JsError> {
    let key = RoomKey::from_fragment(fragment)?;
    Ok(key.fragment().channel_id())
}

/// Encrypts text with a password into SJCL's JSON envelope, with SJCL's default parameters.
#[wasm_bindgen]
pub fn encrypt(password: &str, plaintext: &str) -> Result<String, JsError> {
    encrypt_text(password, plaintext).map_err(JsError::from)
}

/// Decrypts SJCL's JSON envelope with a password and returns the text.
#[wasm_bindgen]
pub fn decrypt(password: &str, envelope: &str) -> Result<String, JsError> {
    decrypt_text(password, envelope).map_err(JsError::from)
}

/// Encrypts with the page's key cache; the Rust-side entry point of [`encrypt`].
pub fn encrypt_text(password: &str, plaintext: &str) -> Result<String, envelope::EnvelopeError> {
    KEYS.with_borrow_mut(|keys| {
        envelope::encrypt(password, plaintext.as_bytes(), &Params::default(), keys)
    })
}

/// Decrypts with the page's key cache; the Rust-side entry point of [`decrypt`].
pub fn decrypt_text(password: &str, envelope: &str) -> Result<String, envelope::EnvelopeError> {
    KEYS.with_borrow_mut(|keys| envelope::decrypt_text(password, envelope, keys))
}
