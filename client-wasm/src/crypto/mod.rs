//! The cryptography of dropthat. Plain Rust with no browser dependency, so it runs and is
//! tested natively as well as in WebAssembly.
//!
//! - [`room`]: room keys, the link fragment that carries them, and the channel id the server
//!   receives.
//! - [`envelope`]: the JSON envelope of `sjcl.encrypt`, byte-compatible with SJCL 1.0.x.
//! - [`blob`]: a compact binary envelope for images and files, with the same primitives.
//! - [`kdf`]: PBKDF2-HMAC-SHA256, its iteration limits, and the cache of derived keys.
//! - [`prehash`]: the original page's login prehash, and the server's salted storage of it.
//! - `ccm`: AES-CCM with runtime nonce and tag sizes, and SJCL's nonce rule.

pub mod blob;
pub(crate) mod ccm;
pub mod envelope;
pub mod kdf;
pub mod prehash;
pub mod room;

/// Returns `N` bytes from the operating system's or browser's secure random source.
///
/// On wasm32 this is `crypto.getRandomValues`, which only fails when no such source exists.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod test_support {
    /// Decodes a hex string of test vectors.
    pub fn hex(text: &str) -> Vec<u8> {
        assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("a hex test vector"))
            .collect()
    }
}
