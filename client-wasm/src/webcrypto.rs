//! The browser's WebCrypto for the slow parts: PBKDF2 through `deriveBits`, and AES-CCM for
//! blobs composed from WebCrypto's AES-CBC (for the CBC-MAC) and AES-CTR (for the key stream).
//!
//! WebCrypto runs in the browser's native code, with AES and SHA instructions where the CPU has
//! them, and off the page's main thread. It exists only in secure contexts (HTTPS, localhost)
//! and its calls are asynchronous, so the synchronous API in `api` keeps the pure Rust path and
//! the `...Async` functions use this module when [`subtle`] finds WebCrypto.
//!
//! NOTE: keys handed to WebCrypto live in JavaScript memory as imported non-extractable
//! `CryptoKey`s and as short-lived `Uint8Array` copies, which the garbage collector frees but
//! nothing zeroizes.

use futures_util::future::join as futures_join;
use js_sys::{Array, Promise, Reflect, Uint8Array};
use subtle::ConstantTimeEq;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AesCbcParams, AesCtrParams, CryptoKey, Pbkdf2Params, SubtleCrypto};

use crate::crypto::ccm::{self, CcmError, MAX_TAG_LEN};
use crate::crypto::kdf::{DERIVED_KEY_LEN, DerivedKey};

/// A WebCrypto call failed, with the `DOMException` name or error text it gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WebCrypto failed: {0}")]
pub struct WebCryptoError(String);

impl From<JsValue> for WebCryptoError {
    fn from(value: JsValue) -> Self {
        let text = value
            .dyn_ref::<js_sys::Error>()
            .map(|e| format!("{}: {}", String::from(e.name()), String::from(e.message())))
            .unwrap_or_else(|| format!("{value:?}"));
        Self(text)
    }
}

/// Returns `crypto.subtle` of the global scope, or `None` where it does not exist (an insecure
/// context, or an environment without WebCrypto).
pub fn subtle() -> Option<SubtleCrypto> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
    if crypto.is_undefined() || crypto.is_null() {
        return None;
    }
    let subtle = Reflect::get(&crypto, &"subtle".into()).ok()?;
    if subtle.is_undefined() || subtle.is_null() {
        return None;
    }
    Some(subtle.unchecked_into())
}

async fn resolve(promise: Result<Promise, JsValue>) -> Result<JsValue, WebCryptoError> {
    Ok(JsFuture::from(promise?).await?)
}

async fn import_raw(
    subtle: &SubtleCrypto,
    key: &[u8],
    algorithm: &str,
    usage: &str,
) -> Result<CryptoKey, WebCryptoError> {
    let usages = Array::of1(&usage.into());
    let key_data = Uint8Array::from(key);
    let imported = resolve(subtle.import_key_with_str("raw", &key_data, algorithm, false, &usages));
    let imported = imported.await;
    key_data.fill(0, 0, key_data.length());
    Ok(imported?.unchecked_into())
}

/// Derives 32 bytes with PBKDF2-HMAC-SHA256, as [`crate::crypto::kdf::pbkdf2_sha256`] does.
pub async fn pbkdf2_sha256(
    subtle: &SubtleCrypto,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Result<DerivedKey, WebCryptoError> {
    let base = import_raw(subtle, password, "PBKDF2", "deriveBits").await?;
    let params =
        Pbkdf2Params::new_with_str("PBKDF2", "SHA-256", iterations, &Uint8Array::from(salt));
    let bits =
        resolve(subtle.derive_bits_with_object(&params, &base, 8 * DERIVED_KEY_LEN as u32)).await?;
    let bytes = Uint8Array::new(&bits);
    if bytes.length() as usize != DERIVED_KEY_LEN {
        return Err(WebCryptoError(format!(
            "deriveBits returned {} bytes",
            bytes.length()
        )));
    }
    let mut out = [0u8; DERIVED_KEY_LEN];
    bytes.copy_to(&mut out);
    bytes.fill(0, 0, bytes.length());
    Ok(DerivedKey::from_bytes(out))
}

/// An AES key imported twice, once for AES-CBC and once for AES-CTR, since a `CryptoKey`
/// serves one algorithm.
pub struct CcmKey {
    cbc: CryptoKey,
    ctr: CryptoKey,
}

impl CcmKey {
    pub async fn import(subtle: &SubtleCrypto, key: &[u8]) -> Result<Self, WebCryptoError> {
        let (cbc, ctr) = futures_join(
            import_raw(subtle, key, "AES-CBC", "encrypt"),
            import_raw(subtle, key, "AES-CTR", "encrypt"),
        )
        .await;
        Ok(Self {
            cbc: cbc?,
            ctr: ctr?,
        })
    }
}

/// The cause of a failed WebCrypto CCM operation.
#[derive(Debug)]
pub enum CcmFailure {
    /// The sizes or the tag: the same opaque failure as the Rust path.
    Ccm(CcmError),
    WebCrypto(WebCryptoError),
}

impl From<WebCryptoError> for CcmFailure {
    fn from(error: WebCryptoError) -> Self {
        Self::WebCrypto(error)
    }
}

/// Encrypts `plaintext` and returns `header || ciphertext || tag`, with `header` as the
/// associated data: the same bytes as the Rust path of [`crate::crypto::blob`].
///
/// The content stays in JavaScript memory: it is copied once into the CBC-MAC input and once
/// into the result, and never into WebAssembly memory.
pub async fn seal(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
    header: &[u8],
    tag_len: usize,
    plaintext: &Uint8Array,
) -> Result<Uint8Array, CcmFailure> {
    let len = plaintext.length() as usize;
    ccm::check_sizes(nonce, tag_len, len).map_err(CcmFailure::Ccm)?;

    // The MAC and the key stream both depend only on the plaintext, so WebCrypto may run them
    // on two threads at once.
    let (mac, (first_key_block, ciphertext)) = futures_join(
        cbc_mac(subtle, key, nonce, header, tag_len, plaintext),
        futures_join(
            key_stream_block(subtle, key, nonce),
            ctr(subtle, key, nonce, plaintext),
        ),
    )
    .await;
    let (mac, first_key_block, ciphertext) = (mac?, first_key_block?, ciphertext?);

    let mut tag = [0u8; MAX_TAG_LEN];
    for (i, byte) in tag[..tag_len].iter_mut().enumerate() {
        *byte = mac[i] ^ first_key_block[i];
    }
    let sealed = Uint8Array::new_with_length((header.len() + len + tag_len) as u32);
    sealed.set(&Uint8Array::from(header), 0);
    sealed.set(&ciphertext, header.len() as u32);
    sealed.set(
        &Uint8Array::from(&tag[..tag_len]),
        (header.len() + len) as u32,
    );
    Ok(sealed)
}

/// Decrypts `ciphertext` and checks `tag` in constant time, returning the plaintext. On a
/// mismatch the decrypted bytes are zeroed before they are dropped.
pub async fn open(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
    adata: &[u8],
    ciphertext: &Uint8Array,
    tag: &[u8],
) -> Result<Uint8Array, CcmFailure> {
    ccm::check_sizes(nonce, tag.len(), ciphertext.length() as usize).map_err(CcmFailure::Ccm)?;

    let (plaintext, first_key_block) = futures_join(
        ctr(subtle, key, nonce, ciphertext),
        key_stream_block(subtle, key, nonce),
    )
    .await;
    let (plaintext, first_key_block) = (plaintext?, first_key_block?);
    let mac = cbc_mac(subtle, key, nonce, adata, tag.len(), &plaintext).await?;

    let mut expected = [0u8; MAX_TAG_LEN];
    for (i, byte) in expected[..tag.len()].iter_mut().enumerate() {
        *byte = mac[i] ^ first_key_block[i];
    }
    if bool::from(expected[..tag.len()].ct_eq(tag)) {
        return Ok(plaintext);
    }
    plaintext.fill(0, 0, plaintext.length());
    Err(CcmFailure::Ccm(CcmError))
}

/// Computes the CBC-MAC as the last block of AES-CBC with a zero IV over the formatted input:
/// B0, the adata with its length prefix, and the payload, each zero-padded to whole blocks.
/// WebCrypto's PKCS#7 padding adds one more block after it, which is ignored.
async fn cbc_mac(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
    adata: &[u8],
    tag_len: usize,
    payload: &Uint8Array,
) -> Result<[u8; 16], WebCryptoError> {
    let payload_len = payload.length() as usize;
    let mut head = Vec::with_capacity(16 + 10 + adata.len() + 15);
    head.extend_from_slice(&ccm::first_block(nonce, adata.len(), tag_len, payload_len));
    if !adata.is_empty() {
        let (prefix, prefix_len) = ccm::adata_length_prefix(adata.len());
        head.extend_from_slice(&prefix[..prefix_len]);
        head.extend_from_slice(adata);
        head.resize(head.len().next_multiple_of(16), 0);
    }
    let formatted_len = head.len() + payload_len.next_multiple_of(16);
    let formatted = Uint8Array::new_with_length(formatted_len as u32);
    formatted.set(&Uint8Array::from(&head[..]), 0);
    formatted.set(payload, head.len() as u32);

    let params = AesCbcParams::new("AES-CBC", &Uint8Array::new_with_length(16));
    let encrypted =
        resolve(subtle.encrypt_with_object_and_buffer_source(&params, &key.cbc, &formatted));
    let encrypted = encrypted.await;
    formatted.fill(0, 0, formatted.length());
    let encrypted = Uint8Array::new(&encrypted?);

    let end = formatted_len as u32;
    let mut mac = [0u8; 16];
    encrypted.subarray(end - 16, end).copy_to(&mut mac);
    Ok(mac)
}

/// Returns the key stream block of counter 0, which encrypts the tag.
async fn key_stream_block(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
) -> Result<[u8; 16], WebCryptoError> {
    let zeros = Uint8Array::new_with_length(16);
    let params = ctr_params(nonce, 0);
    let encrypted =
        resolve(subtle.encrypt_with_object_and_buffer_source(&params, &key.ctr, &zeros));
    let mut block = [0u8; 16];
    Uint8Array::new(&encrypted.await?).copy_to(&mut block);
    Ok(block)
}

/// XORs `input` with the key stream from counter 1 on, returning a new array.
async fn ctr(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
    input: &Uint8Array,
) -> Result<Uint8Array, WebCryptoError> {
    if input.length() == 0 {
        return Ok(Uint8Array::new_with_length(0));
    }
    let params = ctr_params(nonce, 1);
    let encrypted = resolve(subtle.encrypt_with_object_and_buffer_source(&params, &key.ctr, input));
    Ok(Uint8Array::new(&encrypted.await?))
}

/// AES-CTR parameters whose counter is CCM's counter block: WebCrypto increments the last
/// `8 * L` bits, which is CCM's counter field.
fn ctr_params(nonce: &[u8], first_counter: u64) -> AesCtrParams {
    let counter = ccm::counter_block(nonce, first_counter);
    let counter_bits = (8 * (15 - nonce.len())) as u8;
    AesCtrParams::new("AES-CTR", &Uint8Array::from(&counter[..]), counter_bits)
}
