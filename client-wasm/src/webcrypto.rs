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
use zeroize::Zeroize;

use crate::crypto::ccm::{self, AesKey, CcmError, MAX_TAG_LEN};
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
/// serves one algorithm, and expanded once more for the Rust AES, which encrypts the few single
/// blocks around WebCrypto's bulk work.
pub struct CcmKey {
    cbc: CryptoKey,
    ctr: CryptoKey,
    aes: AesKey,
}

impl CcmKey {
    pub async fn import(subtle: &SubtleCrypto, key: &[u8]) -> Result<Self, WebCryptoError> {
        let aes = AesKey::new(key).map_err(|_| {
            WebCryptoError(format!(
                "an AES key has 16, 24 or 32 bytes, not {}",
                key.len()
            ))
        })?;
        let (cbc, ctr) = futures_join(
            import_raw(subtle, key, "AES-CBC", "encrypt"),
            import_raw(subtle, key, "AES-CTR", "encrypt"),
        )
        .await;
        Ok(Self {
            cbc: cbc?,
            ctr: ctr?,
            aes,
        })
    }

    /// Returns the full-length tag: `mac` XORed with the key stream block of counter 0. CCM's
    /// tag is its first `tag_len` bytes.
    fn full_tag(&self, nonce: &[u8], mac: &[u8; 16]) -> [u8; MAX_TAG_LEN] {
        let mut tag = ccm::counter_block(nonce, 0);
        self.aes.encrypt_block(&mut tag);
        for (t, m) in tag.iter_mut().zip(mac) {
            *t ^= m;
        }
        tag
    }

    /// Absorbs `bytes` into the CBC-MAC state `mac` and returns the new state. Only the
    /// payload's last chunk may end in a partial block.
    async fn absorb(
        &self,
        subtle: &SubtleCrypto,
        mac: [u8; 16],
        bytes: &Uint8Array,
    ) -> Result<[u8; 16], WebCryptoError> {
        let len = bytes.length();
        let whole = len - len % 16;
        let mut last = [0u8; 16];
        bytes
            .subarray(whole, len)
            .copy_to(&mut last[..(len - whole) as usize]);
        let mut mac = match self.request_chain(subtle, &mac, &bytes.subarray(0, whole))? {
            Some(chaining) => chained_state(&chaining.await?),
            None => mac,
        };
        self.absorb_partial(&mut mac, &last[..(len - whole) as usize]);
        last.zeroize();
        Ok(mac)
    }

    /// Requests WebCrypto's AES-CBC of `blocks`, whole 16-byte blocks, with the CBC-MAC state
    /// `mac` as its IV: block i of the output is then the state after block i. WebCrypto
    /// copies `blocks` before this returns. Returns `None` for no blocks.
    fn request_chain(
        &self,
        subtle: &SubtleCrypto,
        mac: &[u8; 16],
        blocks: &Uint8Array,
    ) -> Result<Option<JsFuture>, WebCryptoError> {
        if blocks.length() == 0 {
            return Ok(None);
        }
        let params = AesCbcParams::new("AES-CBC", &Uint8Array::from(&mac[..]));
        let promise = subtle.encrypt_with_object_and_buffer_source(&params, &self.cbc, blocks)?;
        Ok(Some(JsFuture::from(promise)))
    }

    /// Absorbs `tail`, a partial last block of at most 15 bytes, zero-padded, into `mac`.
    fn absorb_partial(&self, mac: &mut [u8; 16], tail: &[u8]) {
        if tail.is_empty() {
            return;
        }
        for (m, b) in mac.iter_mut().zip(tail) {
            *m ^= b;
        }
        self.aes.encrypt_block(mac);
    }
}

/// Returns the CBC-MAC state from the output of a chaining AES-CBC: the last block before the
/// one that WebCrypto's PKCS#7 padding adds.
fn chained_state(encrypted: &JsValue) -> [u8; 16] {
    let encrypted = Uint8Array::new(encrypted);
    let end = encrypted.length() - 16;
    let mut mac = [0u8; 16];
    encrypted.subarray(end - 16, end).copy_to(&mut mac);
    mac
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

/// Bytes per AES-CTR call, and per AES-CBC call when decrypting. While decrypting, each
/// chunk's MAC can run while the next chunk's key stream is applied. Chunks also proved faster
/// in Chromium: AES-CBC over 1 MiB took 3.1 ms in one call and 1.8 ms in calls of 256 KiB (the
/// "WebCrypto AES, 1 MiB" rows of docs/BENCHMARKS.md).
const CHUNK_LEN: usize = 256 << 10;

/// Encrypts `plaintext` and returns `header || ciphertext || tag`, with `header` as the
/// associated data: the same bytes as the Rust path of [`crate::crypto::blob`].
///
/// WebCrypto reads the content straight from `plaintext`: the key stream in chunks, and the
/// CBC-MAC's whole blocks in one call, because chained calls would read `plaintext` later. The
/// Rust AES does B0, the header, the last partial block and the tag.
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

    // Every request that reads `plaintext` starts here, before the first await, and
    // WebCrypto copies what it reads at once. The caller may change or transfer the array
    // while the requests run, and the key stream and the MAC still see the same bytes.
    let encrypting = ctr_chunks(subtle, key, nonce, plaintext)?;
    let whole = (len - len % 16) as u32;
    let start = key.aes.mac_before_payload(nonce, header, tag_len, len);
    let chaining = key.request_chain(subtle, &start, &plaintext.subarray(0, whole))?;
    let mut last = [0u8; 16];
    plaintext
        .subarray(whole, len as u32)
        .copy_to(&mut last[..len - whole as usize]);

    // Allocating a large result takes a while, so it happens while WebCrypto works.
    let sealed = Uint8Array::new_with_length((header.len() + len + tag_len) as u32);
    sealed.set(&Uint8Array::from(header), 0);
    let place_ciphertext = async {
        for (start, chunk) in encrypting {
            let chunk = Uint8Array::new(&chunk.await?);
            sealed.set(&chunk, (header.len() + start) as u32);
        }
        Ok::<_, WebCryptoError>(())
    };
    let chained = async {
        match chaining {
            Some(chaining) => Ok::<_, WebCryptoError>(chained_state(&chaining.await?)),
            None => Ok(start),
        }
    };
    let (placed, chained) = futures_join(place_ciphertext, chained).await;
    placed?;
    let mut mac = chained?;
    key.absorb_partial(&mut mac, &last[..len - whole as usize]);
    last.zeroize();

    let tag = key.full_tag(nonce, &mac);
    sealed.set(
        &Uint8Array::from(&tag[..tag_len]),
        (header.len() + len) as u32,
    );
    Ok(sealed)
}

/// Decrypts `ciphertext` and checks `tag` in constant time, returning the plaintext. On a
/// mismatch the decrypted bytes are zeroed before they are dropped.
///
/// The key stream of every chunk is requested at once. Each decrypted chunk then goes through
/// the CBC-MAC when it and the chunk before it are done.
pub async fn open(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
    adata: &[u8],
    ciphertext: &Uint8Array,
    tag: &[u8],
) -> Result<Uint8Array, CcmFailure> {
    let len = ciphertext.length() as usize;
    ccm::check_sizes(nonce, tag.len(), len).map_err(CcmFailure::Ccm)?;

    let decrypting = ctr_chunks(subtle, key, nonce, ciphertext)?;
    let single = decrypting.len() == 1;
    let mut plaintext = None;
    let mut mac = key.aes.mac_before_payload(nonce, adata, tag.len(), len);
    for (start, chunk) in decrypting {
        let absorbed = match chunk.await {
            Ok(chunk) => {
                let chunk = Uint8Array::new(&chunk);
                let absorbed = key.absorb(subtle, mac, &chunk).await;
                if single {
                    plaintext = Some(chunk);
                } else {
                    let whole =
                        plaintext.get_or_insert_with(|| Uint8Array::new_with_length(len as u32));
                    whole.set(&chunk, start as u32);
                    chunk.fill(0, 0, chunk.length());
                }
                absorbed
            }
            Err(error) => Err(WebCryptoError::from(error)),
        };
        match absorbed {
            Ok(next) => mac = next,
            Err(error) => {
                // The bytes decrypted so far are zeroed, as on a tag mismatch.
                if let Some(plaintext) = &plaintext {
                    plaintext.fill(0, 0, plaintext.length());
                }
                return Err(error.into());
            }
        }
    }
    let plaintext = plaintext.unwrap_or_else(|| Uint8Array::new_with_length(0));

    let expected = key.full_tag(nonce, &mac);
    if bool::from(expected[..tag.len()].ct_eq(tag)) {
        return Ok(plaintext);
    }
    plaintext.fill(0, 0, plaintext.length());
    Err(CcmFailure::Ccm(CcmError))
}

/// Requests WebCrypto's AES-CTR of each [`CHUNK_LEN`] chunk of `input`, all at once, with
/// CCM's counters from 1 on. Returns each chunk's offset and result.
fn ctr_chunks(
    subtle: &SubtleCrypto,
    key: &CcmKey,
    nonce: &[u8],
    input: &Uint8Array,
) -> Result<Vec<(usize, JsFuture)>, WebCryptoError> {
    let len = input.length() as usize;
    let counter_bits = (8 * (15 - nonce.len())) as u8;
    let mut pending = Vec::with_capacity(len.div_ceil(CHUNK_LEN));
    for start in (0..len).step_by(CHUNK_LEN) {
        let chunk = input.subarray(start as u32, (start + CHUNK_LEN).min(len) as u32);
        // `check_sizes` keeps the block count below 2^counter_bits, and WebCrypto increments
        // the last `counter_bits` bits, which is CCM's counter field.
        let counter = ccm::counter_block(nonce, 1 + (start / 16) as u64);
        let params = AesCtrParams::new("AES-CTR", &Uint8Array::from(&counter[..]), counter_bits);
        let promise = subtle.encrypt_with_object_and_buffer_source(&params, &key.ctr, &chunk)?;
        pending.push((start, JsFuture::from(promise)));
    }
    Ok(pending)
}
