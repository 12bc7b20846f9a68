//! dropthat's browser side: end-to-end encryption and the chat page, compiled to WebAssembly.
//!
//! - [`crypto`]: room keys and channel ids, SJCL-compatible envelopes, key derivation. Plain
//!   Rust, usable and tested natively too.
//! - [`api`]: the JavaScript interface to the cryptography (`newRoom`, `channelId`, `encrypt`,
//!   `decrypt`), for the page and for other JavaScript code.
//! - `app`: the chat page itself, which starts when the module loads in a page that has the
//!   chat's markup.

pub mod api;
#[cfg(target_arch = "wasm32")]
mod app;
pub mod crypto;
pub mod message;
