//! dropthat's browser side: end-to-end encryption and the chat page, compiled to WebAssembly.
//!
//! - [`crypto`]: room keys and channel ids, SJCL-compatible envelopes, binary blobs, key
//!   derivation and the login prehash. Plain Rust, usable and tested natively too.
//! - `api` (wasm32 only): the JavaScript interface to the cryptography (`newRoom`,
//!   `channelId`, `encrypt`, `decrypt`, `encryptBytes`, `decryptBytes`, `prehash`).
//! - `app` (wasm32 only): the chat page itself, which starts when the module loads in a page
//!   that has the chat's markup.
//! - [`message`]: the typed chat messages inside the envelopes, and their checks.
//! - [`link`]: room links with and without a passphrase, and the envelope password of each.
//! - [`pacing`]: the budget of key derivations, retry delays, and recently seen message ids.
//! - [`qr`]: the QR code of a room link as SVG path data.
//! - `webcrypto` (wasm32 only): PBKDF2 and blob AES-CCM through the browser's WebCrypto, for
//!   the asynchronous functions of `api`.

#[cfg(target_arch = "wasm32")]
pub mod api;
#[cfg(target_arch = "wasm32")]
mod app;
pub mod crypto;
pub mod link;
pub mod message;
pub mod pacing;
pub mod qr;
#[cfg(target_arch = "wasm32")]
pub mod webcrypto;

// The unit tests also run as WebAssembly in headless Chromium; each test module imports
// `wasm_bindgen_test` as `test` on wasm32.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
