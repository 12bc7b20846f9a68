//! The cryptography of dropthat, all of it running in the browser.
//!
//! - [`room`]: room keys, the link fragment that carries them, and the channel id the server sees.
//! - [`envelope`]: the JSON envelope of `sjcl.encrypt`, byte-compatible with SJCL 1.0.x.
//! - [`kdf`]: PBKDF2-HMAC-SHA256 key derivation with a per-page cache of derived keys.
//! - `sjcl_ccm`: AES-CCM with SJCL's rules for choosing the nonce and length-field sizes.

pub mod envelope;
pub mod kdf;
pub mod room;
mod sjcl_ccm;

/// Fills `buf` from the operating system's or browser's secure random source.
///
/// On wasm32 this is `crypto.getRandomValues`, which only fails when no such source exists.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}
