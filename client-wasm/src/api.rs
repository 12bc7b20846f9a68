//! The JavaScript interface of the cryptography, exported with wasm-bindgen.
//!
//! Errors reach JavaScript as thrown `Error` objects whose message is the Rust error's text.
//! Every function is synchronous. The first envelope for a (password, salt, iterations) costs
//! one PBKDF2 derivation (about MEASURE_ME ms at SJCL's default of 10,000 iterations in
//! Chromium); later ones reuse the page's cache of derived keys and cost one AES-CCM.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use crate::crypto::envelope::{self, EnvelopeError, Params};
use crate::crypto::kdf::KeyCache;
use crate::crypto::room::RoomKey;
use crate::crypto::{blob, prehash as login};

#[cfg(feature = "test-exports")]
mod testing;

thread_local! {
    /// Derived keys of this page, shared by text envelopes and blobs. WebAssembly here runs
    /// on one thread, so a thread-local is the page's single cache.
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

/// Encrypts text with a password into SJCL's JSON envelope, with SJCL's default parameters
/// and this page's salt for the password.
#[wasm_bindgen]
pub fn encrypt(password: &str, plaintext: &str) -> Result<String, JsError> {
    encrypt_text(password, plaintext).map_err(JsError::from)
}

/// Decrypts an SJCL JSON envelope with a password and returns the text.
#[wasm_bindgen]
pub fn decrypt(password: &str, envelope: &str) -> Result<String, JsError> {
    decrypt_text(password, envelope).map_err(JsError::from)
}

/// Encrypts bytes (a `Uint8Array`) into the binary blob format, up to 8 MiB.
///
/// The bytes are copied once into WebAssembly memory, encrypted where they land in the output
/// buffer, and copied once into the returned `Uint8Array`.
#[wasm_bindgen(js_name = encryptBytes)]
pub fn encrypt_bytes(password: &str, plaintext: &[u8]) -> Result<Vec<u8>, JsError> {
    KEYS.with_borrow_mut(|keys| blob::encrypt(password, plaintext, keys))
        .map_err(JsError::from)
}

/// Decrypts a binary blob made by `encryptBytes` and returns its bytes as a `Uint8Array`.
#[wasm_bindgen(js_name = decryptBytes)]
pub fn decrypt_bytes(password: &str, blob: &[u8]) -> Result<Vec<u8>, JsError> {
    KEYS.with_borrow_mut(|keys| blob::decrypt(password, blob, keys))
        .map_err(JsError::from)
}

/// Computes the login prehash of the original page: PBKDF2-HMAC-SHA256 with 25,000
/// iterations, returned as 44 characters of base64.
#[wasm_bindgen]
pub fn prehash(site: &str, username: &str, password: &str) -> String {
    login::prehash(site, username, password)
}

/// Encrypts with the page's key cache; the Rust-side entry point of [`encrypt`].
pub fn encrypt_text(password: &str, plaintext: &str) -> Result<String, EnvelopeError> {
    KEYS.with_borrow_mut(|keys| {
        envelope::encrypt(password, plaintext.as_bytes(), &Params::default(), keys)
    })
}

/// Decrypts with the page's key cache; the Rust-side entry point of [`decrypt`].
pub fn decrypt_text(password: &str, envelope: &str) -> Result<String, EnvelopeError> {
    KEYS.with_borrow_mut(|keys| envelope::decrypt_text(password, envelope, keys))
}
