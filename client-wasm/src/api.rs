//! The JavaScript interface of the cryptography, exported with wasm-bindgen.
//!
//! Errors reach JavaScript as thrown `Error` objects (rejected promises for the asynchronous
//! functions) whose message is the Rust error's text.
//!
//! The first envelope for a (password, salt, iterations) costs one PBKDF2 derivation; later
//! ones reuse the page's cache of derived keys and cost one AES-CCM. The synchronous functions
//! derive and encrypt in WebAssembly, on the calling thread. Their `...Async` twins give the
//! same results but derive keys, and encrypt blobs, through WebCrypto where the page has it
//! (see `webcrypto`): several times faster, and off the main thread, so a sender's costly
//! parameters cannot freeze the page. Without WebCrypto they fall back to the Rust code.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Uint8Array;
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use web_sys::SubtleCrypto;

use crate::crypto::blob::{self, BlobError};
use crate::crypto::envelope::{self, EnvelopeError, Params};
use crate::crypto::kdf::{self, DEFAULT_ITERATIONS, DerivedKey, KeyCache};
use crate::crypto::prehash as login;
use crate::crypto::room::RoomKey;
use crate::webcrypto::{self, CcmFailure, CcmKey};

#[cfg(feature = "test-exports")]
mod testing;

thread_local! {
    /// Derived keys of this page, shared by text envelopes and blobs. WebAssembly here runs
    /// on one thread, so a thread-local is the page's single cache.
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());

    /// Blob keys imported into WebCrypto, by the digest of the key, at most
    /// [`CCM_KEY_CAPACITY`] with the most recently used last. Importing costs two more round trips to WebCrypto on
    /// every blob, which weigh most on small ones.
    static CCM_KEYS: RefCell<Vec<([u8; 32], Rc<CcmKey>)>> = const { RefCell::new(Vec::new()) };
}

/// Blob keys kept imported. A blob's key depends on its salt, and each sending page picks its
/// own, so a room needs one per member who sends attachments.
const CCM_KEY_CAPACITY: usize = 32;

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
/// The bytes are copied into WebAssembly memory, then into the output buffer where they are
/// encrypted in place, then into the returned `Uint8Array`. `encryptBytesAsync` copies less.
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

/// Returns whether the page's cache holds the key for these inputs, so that decrypting an
/// envelope with them costs no PBKDF2 derivation. The chat page asks before it spends its
/// derivation budget on a received envelope.
pub(crate) fn has_cached_key(password: &str, salt: &[u8], iterations: u32) -> bool {
    KEYS.with_borrow_mut(|keys| keys.get(password, salt, iterations).is_some())
}

/// Encrypts text like [`encrypt`], deriving the page's key through WebCrypto when it is not
/// cached yet. Returns a `Promise` of the envelope.
#[wasm_bindgen(js_name = encryptAsync)]
pub async fn encrypt_async(password: String, plaintext: String) -> Result<String, JsError> {
    let salt = KEYS
        .with_borrow_mut(|keys| keys.send_salt(&password, DEFAULT_ITERATIONS))
        .map_err(EnvelopeError::Random)?;
    derived_key(&password, &salt, DEFAULT_ITERATIONS).await?;
    Ok(encrypt_text(&password, &plaintext)?)
}

/// Decrypts like [`decrypt`], deriving a key that is not cached yet through WebCrypto.
/// Returns a `Promise` of the text.
#[wasm_bindgen(js_name = decryptAsync)]
pub async fn decrypt_async(password: String, envelope: String) -> Result<String, JsError> {
    let parsed = envelope::parse(&envelope)?;
    let derived = derived_key(&password, &parsed.salt, parsed.iterations).await?;
    let bytes = parsed.open(&derived)?;
    Ok(String::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8)?)
}

/// Encrypts bytes like [`encrypt_bytes`], with WebCrypto's AES doing the CCM work. Returns a
/// `Promise` of the blob.
///
/// With WebCrypto only the content's last partial AES block, under 16 bytes, enters
/// WebAssembly memory. See `webcrypto::seal` for the one copy it makes in JavaScript memory.
#[wasm_bindgen(js_name = encryptBytesAsync)]
pub async fn encrypt_bytes_async(
    password: String,
    plaintext: Uint8Array,
) -> Result<Uint8Array, JsError> {
    blob::check_plaintext_len(plaintext.length() as usize)?;
    let salt = KEYS
        .with_borrow_mut(|keys| keys.send_salt(&password, DEFAULT_ITERATIONS))
        .map_err(BlobError::Random)?;
    let nonce = crate::crypto::random_bytes().map_err(BlobError::Random)?;
    let derived = derived_key(&password, &salt, DEFAULT_ITERATIONS).await?;

    let Some(subtle) = webcrypto::subtle() else {
        let content = plaintext.to_vec();
        let sealed = KEYS.with_borrow_mut(|keys| {
            blob::encrypt_with(&password, &content, DEFAULT_ITERATIONS, salt, nonce, keys)
        })?;
        return Ok(Uint8Array::from(&sealed[..]));
    };
    let key = ccm_key(&subtle, &derived).await?;
    let header = blob::header(DEFAULT_ITERATIONS, &salt, &nonce);
    webcrypto::seal(&subtle, &key, &nonce, &header, blob::TAG_LEN, &plaintext)
        .await
        .map_err(blob_failure)
}

/// Decrypts a blob like [`decrypt_bytes`], with WebCrypto's AES doing the CCM work. Returns a
/// `Promise` of the bytes.
#[wasm_bindgen(js_name = decryptBytesAsync)]
pub async fn decrypt_bytes_async(
    password: String,
    sealed: Uint8Array,
) -> Result<Uint8Array, JsError> {
    let blob_len = sealed.length() as usize;
    let header_len = blob_len.min(blob::HEADER_LEN) as u32;
    let header = sealed.subarray(0, header_len).to_vec();
    let iterations = blob::check_header(&header, blob_len)?;
    let salt = &header[5..5 + kdf::SALT_LEN];
    let nonce = &header[5 + kdf::SALT_LEN..];
    let derived = derived_key(&password, salt, iterations).await?;

    let Some(subtle) = webcrypto::subtle() else {
        let content = sealed.to_vec();
        let opened = KEYS.with_borrow_mut(|keys| blob::decrypt(&password, &content, keys))?;
        return Ok(Uint8Array::from(&opened[..]));
    };
    let tag_start = (blob_len - blob::TAG_LEN) as u32;
    let ciphertext = sealed.subarray(header_len, tag_start);
    let tag = sealed.subarray(tag_start, blob_len as u32).to_vec();
    let key = ccm_key(&subtle, &derived).await?;
    webcrypto::open(&subtle, &key, nonce, &header, &ciphertext, &tag)
        .await
        .map_err(blob_failure)
}

/// Returns the cached key for these inputs, or derives it through WebCrypto (the Rust PBKDF2
/// without WebCrypto) and caches it.
async fn derived_key(password: &str, salt: &[u8], iterations: u32) -> Result<DerivedKey, JsError> {
    if let Some(key) = KEYS.with_borrow_mut(|keys| keys.get(password, salt, iterations)) {
        return Ok(key);
    }
    let key = match webcrypto::subtle() {
        Some(subtle) => {
            webcrypto::pbkdf2_sha256(&subtle, password.as_bytes(), salt, iterations).await?
        }
        None => kdf::pbkdf2_sha256(password.as_bytes(), salt, iterations),
    };
    KEYS.with_borrow_mut(|keys| keys.insert(password, salt, iterations, key.clone()));
    Ok(key)
}

/// Returns the blob key of `derived` imported into WebCrypto, from [`CCM_KEYS`] or imported now.
async fn ccm_key(subtle: &SubtleCrypto, derived: &DerivedKey) -> Result<Rc<CcmKey>, JsError> {
    let key = blob::blob_key(derived);
    // The digest, not the key, identifies the entry, so the cache keeps no second copy of it.
    let id: [u8; 32] = Sha256::digest(key.as_slice()).into();
    let cached = CCM_KEYS.with_borrow_mut(|keys| {
        let index = keys.iter().position(|(k, _)| *k == id)?;
        let entry = keys.remove(index);
        let imported = Rc::clone(&entry.1);
        keys.push(entry);
        Some(imported)
    });
    if let Some(imported) = cached {
        return Ok(imported);
    }
    let imported = Rc::new(CcmKey::import(subtle, key.as_slice()).await?);
    CCM_KEYS.with_borrow_mut(|keys| {
        keys.retain(|(k, _)| *k != id);
        if keys.len() == CCM_KEY_CAPACITY {
            keys.remove(0);
        }
        keys.push((id, Rc::clone(&imported)));
    });
    Ok(imported)
}

fn blob_failure(failure: CcmFailure) -> JsError {
    match failure {
        CcmFailure::Ccm(_) => BlobError::CannotDecrypt.into(),
        CcmFailure::WebCrypto(error) => error.into(),
    }
}
