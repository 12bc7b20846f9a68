//! Raw primitives for the interop tests against SJCL, exported only with the `test-exports`
//! feature: they take caller-chosen keys and IVs, which the page must never do.

use wasm_bindgen::prelude::*;

use crate::crypto::ccm::{self, AesKey};
use crate::crypto::envelope::{self, Params};
use crate::crypto::kdf::{self, KeyCache};

/// AES-CCM as `sjcl.mode.ccm.encrypt` computes it: the nonce is cut from `iv` by SJCL's rule,
/// and the tag of `tag_bits` is appended.
#[wasm_bindgen(js_name = testCcmEncrypt)]
pub fn ccm_encrypt(
    key: &[u8],
    iv: &[u8],
    adata: &[u8],
    plaintext: &[u8],
    tag_bits: usize,
) -> Result<Vec<u8>, JsError> {
    let aes = AesKey::new(key).map_err(|_| JsError::new("invalid AES key length"))?;
    let nonce = ccm::sjcl_nonce(iv, plaintext.len())
        .map_err(|_| JsError::new("invalid IV: expected 7 to 16 bytes"))?;
    let mut buf = plaintext.to_vec();
    let tag = aes
        .seal_in_place(nonce, adata, tag_bits / 8, &mut buf)
        .map_err(|_| JsError::new("invalid CCM parameters: tag sizes are 4 to 16 even bytes"))?;
    buf.extend_from_slice(tag.as_slice());
    Ok(buf)
}

/// AES-CCM decryption as `sjcl.mode.ccm.decrypt` computes it.
#[wasm_bindgen(js_name = testCcmDecrypt)]
pub fn ccm_decrypt(
    key: &[u8],
    iv: &[u8],
    adata: &[u8],
    sealed: &[u8],
    tag_bits: usize,
) -> Result<Vec<u8>, JsError> {
    let aes = AesKey::new(key).map_err(|_| JsError::new("invalid AES key length"))?;
    let tag_len = tag_bits / 8;
    let msg_len = sealed
        .len()
        .checked_sub(tag_len)
        .ok_or_else(|| JsError::new("the sealed input is shorter than the tag"))?;
    let nonce = ccm::sjcl_nonce(iv, msg_len)
        .map_err(|_| JsError::new("invalid IV: expected 7 to 16 bytes"))?;
    let mut buf = sealed[..msg_len].to_vec();
    aes.open_in_place(nonce, adata, &sealed[msg_len..], &mut buf)
        .map_err(|_| JsError::new("cannot decrypt"))?;
    Ok(buf)
}

/// PBKDF2-HMAC-SHA256 with any output length in bytes.
#[wasm_bindgen(js_name = testPbkdf2Sha256)]
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    kdf::pbkdf2_sha256_into(password, salt, iterations, &mut out);
    out
}

/// Encrypts an envelope with every parameter chosen, with a cache of its own.
#[wasm_bindgen(js_name = testEncryptWith)]
pub fn encrypt_with(
    password: &str,
    plaintext: &str,
    iterations: u32,
    key_bits: u32,
    tag_bits: u32,
    iv: &[u8],
    adata: &[u8],
) -> Result<String, JsError> {
    let params = Params {
        iterations,
        key_bits,
        tag_bits,
        adata: adata.to_vec(),
        iv: Some(iv.to_vec()),
        salt: None,
    };
    let mut cache = KeyCache::default();
    envelope::encrypt(password, plaintext.as_bytes(), &params, &mut cache).map_err(JsError::from)
}
