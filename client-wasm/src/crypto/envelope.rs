//! The JSON envelope of `sjcl.encrypt` / `sjcl.decrypt` with a password, byte for byte.
//!
//! SJCL 1.0.x writes, in this order: `iv`, `v`, `iter`, `ks`, `ts`, `mode`, `adata`, `cipher`,
//! `salt`, `ct`, with byte strings in standard base64 with padding. The key is the first `ks`
//! bits of PBKDF2-HMAC-SHA256(password, salt, iter). `ct` is the AES-CCM ciphertext with the
//! `ts`-bit tag appended, and the nonce is cut from `iv` by SJCL's rule (see `ccm`).
//!
//! Decryption accepts every envelope `sjcl.encrypt` produces in mode "ccm", including
//! non-default `iter`, `ks`, `ts`, `adata`, salts and IVs of 7 to 16 bytes, extra fields, and
//! any field order. It decodes base64 as leniently as SJCL does. A missing `v`, `iter`, `ks`,
//! `ts`, `mode`, `cipher` or `adata` gets SJCL's default. Everything else is rejected with an
//! [`EnvelopeError`], and every cost a sender can choose is checked before the work starts.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::Deserialize;

use super::ccm::{self, AesKey, MAX_IV_LEN, MIN_IV_LEN};
use super::kdf::{DEFAULT_ITERATIONS, DerivedKey, KeyCache, MAX_ITERATIONS, MIN_ITERATIONS};

/// Maximum length of an envelope text that [`decrypt`] parses and [`encrypt`] writes, in bytes.
///
/// This bounds both memory and time: AES-CCM work is linear in the ciphertext and adata, which
/// are at most three quarters of the text. 2 MiB admits the 1 MiB plaintexts of the SJCL
/// interop tests; chat messages are far smaller, and blobs use the binary format of
/// [`super::blob`]. Decrypting at this size, with the key cached, took 91 ms (median) in
/// headless Chromium 148 (docs/BENCHMARKS.md).
pub const MAX_ENVELOPE_LEN: usize = 2 << 20;

/// Error from encrypting or decrypting an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is not valid JSON: {reason}")]
    InvalidJson { reason: String },

    #[error("the envelope has no {field:?} field")]
    MissingField { field: &'static str },

    #[error("the envelope's {field:?} field is not valid base64")]
    InvalidBase64 { field: &'static str },

    #[error("unsupported envelope version {version}: only version 1 is supported")]
    UnsupportedVersion { version: u64 },

    #[error("unsupported cipher mode {mode:?}: only \"ccm\" is supported")]
    UnsupportedMode { mode: String },

    #[error("unsupported cipher {cipher:?}: only \"aes\" is supported")]
    UnsupportedCipher { cipher: String },

    #[error("unsupported key size of {bits} bits: expected 128, 192 or 256")]
    UnsupportedKeySize { bits: u64 },

    #[error("unsupported tag size of {bits} bits: expected 64, 96 or 128")]
    UnsupportedTagSize { bits: u64 },

    #[error("invalid IV of {bytes} bytes: expected {MIN_IV_LEN} to {MAX_IV_LEN}")]
    InvalidIvLength { bytes: usize },

    #[error("{iterations} PBKDF2 iterations is too few: at least {MIN_ITERATIONS} are required")]
    TooFewIterations { iterations: u64 },

    #[error("{iterations} PBKDF2 iterations exceeds the limit of {MAX_ITERATIONS}")]
    TooManyIterations { iterations: u64 },

    #[error("the envelope of {bytes} bytes exceeds the limit of {MAX_ENVELOPE_LEN} bytes")]
    TooLarge { bytes: usize },

    #[error("cannot decrypt: the key is wrong or the message was altered")]
    CannotDecrypt,

    #[error("the decrypted message is not valid UTF-8 text")]
    NotUtf8,

    #[error("the secure random source failed: {0}")]
    Random(getrandom::Error),
}

/// Parameters for [`encrypt`]; [`Default`] gives SJCL's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// PBKDF2 iterations, from [`MIN_ITERATIONS`] to [`MAX_ITERATIONS`].
    pub iterations: u32,
    /// AES key size: 128, 192 or 256 bits.
    pub key_bits: u32,
    /// CCM tag size: 64, 96 or 128 bits.
    pub tag_bits: u32,
    /// Authenticated but unencrypted data, written to the envelope in base64.
    pub adata: Vec<u8>,
    /// A fixed IV of 7 to 16 bytes; `None` draws 16 random bytes. Reusing an IV with the same
    /// key and message length reveals the XOR of the plaintexts, so fixed IVs are for tests.
    pub iv: Option<Vec<u8>>,
    /// A fixed salt; `None` uses this page's salt for the password (see [`KeyCache::send_salt`]).
    pub salt: Option<Vec<u8>>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            iterations: DEFAULT_ITERATIONS,
            key_bits: 128,
            tag_bits: 64,
            adata: Vec::new(),
            iv: None,
            salt: None,
        }
    }
}

/// Encrypts `plaintext` with `password` into SJCL's JSON envelope.
pub fn encrypt(
    password: &str,
    plaintext: &[u8],
    params: &Params,
    cache: &mut KeyCache,
) -> Result<String, EnvelopeError> {
    let key_len = key_len(params.key_bits.into())?;
    let tag_len = tag_len(params.tag_bits.into())?;
    check_iterations(params.iterations.into())?;

    let iv = match &params.iv {
        Some(iv) => iv.clone(),
        None => super::random_bytes::<16>()
            .map_err(EnvelopeError::Random)?
            .to_vec(),
    };
    if !(MIN_IV_LEN..=MAX_IV_LEN).contains(&iv.len()) {
        return Err(EnvelopeError::InvalidIvLength { bytes: iv.len() });
    }
    let salt = match &params.salt {
        Some(salt) => salt.clone(),
        None => cache
            .send_salt(password, params.iterations)
            .map_err(EnvelopeError::Random)?
            .to_vec(),
    };

    // Every field's length is known now, so an envelope too large for [`decrypt`] is rejected
    // before any work.
    let text_len = ENVELOPE_FRAME_LEN
        + decimal_len(params.iterations)
        + decimal_len(params.key_bits)
        + decimal_len(params.tag_bits)
        + [
            iv.len(),
            params.adata.len(),
            salt.len(),
            plaintext.len() + tag_len,
        ]
        .into_iter()
        .map(base64_len)
        .sum::<usize>();
    if text_len > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge { bytes: text_len });
    }

    let derived = cache.derive(password, &salt, params.iterations);
    // The key length is 16, 24 or 32 bytes after `key_len` above, so expansion cannot fail.
    let aes = AesKey::new(derived.prefix(key_len)).map_err(|_| EnvelopeError::CannotDecrypt)?;
    let mut ct = Vec::with_capacity(plaintext.len() + tag_len);
    ct.extend_from_slice(plaintext);
    // The nonce and tag sizes were checked above and the length fits SJCL's length field, so
    // sealing cannot fail. The error arm only keeps this free of panics.
    let nonce = ccm::sjcl_nonce(&iv, plaintext.len()).map_err(|_| EnvelopeError::CannotDecrypt)?;
    let tag = aes
        .seal_in_place(nonce, &params.adata, tag_len, &mut ct)
        .map_err(|_| EnvelopeError::CannotDecrypt)?;
    ct.extend_from_slice(tag.as_slice());

    let mut text = String::with_capacity(text_len);
    text.push_str(r#"{"iv":""#);
    STANDARD.encode_string(&iv, &mut text);
    text.push_str(&format!(
        r#"","v":1,"iter":{},"ks":{},"ts":{},"mode":"ccm","adata":""#,
        params.iterations, params.key_bits, params.tag_bits
    ));
    STANDARD.encode_string(&params.adata, &mut text);
    text.push_str(r#"","cipher":"aes","salt":""#);
    STANDARD.encode_string(&salt, &mut text);
    text.push_str(r#"","ct":""#);
    STANDARD.encode_string(&ct, &mut text);
    text.push_str(r#""}"#);
    Ok(text)
}

/// Decrypts an envelope with `password`, returning the plaintext bytes.
pub fn decrypt(
    password: &str,
    envelope: &str,
    cache: &mut KeyCache,
) -> Result<Vec<u8>, EnvelopeError> {
    let parsed = parse(envelope)?;
    let derived = cache.derive(password, &parsed.salt, parsed.iterations);
    parsed.open(&derived)
}

/// Parses an envelope and checks every parameter and limit, before any key derivation.
pub(crate) fn parse(envelope: &str) -> Result<CheckedEnvelope, EnvelopeError> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge {
            bytes: envelope.len(),
        });
    }
    let raw: RawEnvelope =
        serde_json::from_str(envelope).map_err(|e| EnvelopeError::InvalidJson {
            reason: e.to_string(),
        })?;
    raw.check()
}

/// Decrypts an envelope whose plaintext must be UTF-8 text, as `sjcl.decrypt` returns it.
pub fn decrypt_text(
    password: &str,
    envelope: &str,
    cache: &mut KeyCache,
) -> Result<String, EnvelopeError> {
    let bytes = decrypt(password, envelope, cache)?;
    String::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8)
}

/// Length of [`encrypt`]'s output without its numbers and base64 fields.
const ENVELOPE_FRAME_LEN: usize =
    r#"{"iv":"","v":1,"iter":,"ks":,"ts":,"mode":"ccm","adata":"","cipher":"aes","salt":"","ct":""}"#
        .len();

fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

fn decimal_len(value: u32) -> usize {
    value.checked_ilog10().unwrap_or(0) as usize + 1
}

/// The envelope's fields as they arrive, each optional so a missing one gets SJCL's default or
/// a precise error. Unknown fields are ignored, as SJCL ignores them.
#[derive(Deserialize)]
struct RawEnvelope {
    iv: Option<String>,
    v: Option<u64>,
    iter: Option<u64>,
    ks: Option<u64>,
    ts: Option<u64>,
    mode: Option<String>,
    adata: Option<String>,
    cipher: Option<String>,
    salt: Option<String>,
    ct: Option<String>,
}

/// An envelope whose parameters passed every check, with its byte strings decoded.
pub(crate) struct CheckedEnvelope {
    iv: Vec<u8>,
    pub(crate) iterations: u32,
    key_len: usize,
    tag_len: usize,
    adata: Vec<u8>,
    pub(crate) salt: Vec<u8>,
    ct: Vec<u8>,
}

impl CheckedEnvelope {
    /// Decrypts with the key material derived for this envelope's salt and iterations.
    pub(crate) fn open(self, derived: &DerivedKey) -> Result<Vec<u8>, EnvelopeError> {
        let aes =
            AesKey::new(derived.prefix(self.key_len)).map_err(|_| EnvelopeError::CannotDecrypt)?;
        let mut buf = self.ct;
        let msg_len = buf
            .len()
            .checked_sub(self.tag_len)
            .ok_or(EnvelopeError::CannotDecrypt)?;
        let nonce = ccm::sjcl_nonce(&self.iv, msg_len).map_err(|_| EnvelopeError::CannotDecrypt)?;
        let (ciphertext, tag) = buf.split_at_mut(msg_len);
        aes.open_in_place(nonce, &self.adata, tag, ciphertext)
            .map_err(|_| EnvelopeError::CannotDecrypt)?;
        buf.truncate(msg_len);
        Ok(buf)
    }
}

impl RawEnvelope {
    fn check(self) -> Result<CheckedEnvelope, EnvelopeError> {
        let version = self.v.unwrap_or(1);
        if version != 1 {
            return Err(EnvelopeError::UnsupportedVersion { version });
        }
        let mode = self.mode.unwrap_or_else(|| "ccm".to_owned());
        if mode != "ccm" {
            return Err(EnvelopeError::UnsupportedMode {
                mode: shorten(mode),
            });
        }
        let cipher = self.cipher.unwrap_or_else(|| "aes".to_owned());
        if cipher != "aes" {
            return Err(EnvelopeError::UnsupportedCipher {
                cipher: shorten(cipher),
            });
        }

        let key_len = key_len(self.ks.unwrap_or(128))?;
        let tag_len = tag_len(self.ts.unwrap_or(64))?;
        let iterations = check_iterations(self.iter.unwrap_or(DEFAULT_ITERATIONS.into()))?;

        let iv = required("iv", self.iv)?;
        let iv = decode_sjcl_base64("iv", &iv)?;
        if !(MIN_IV_LEN..=MAX_IV_LEN).contains(&iv.len()) {
            return Err(EnvelopeError::InvalidIvLength { bytes: iv.len() });
        }
        let salt = decode_sjcl_base64("salt", &required("salt", self.salt)?)?;
        let adata = decode_sjcl_base64("adata", &self.adata.unwrap_or_default())?;
        let ct = decode_sjcl_base64("ct", &required("ct", self.ct)?)?;

        Ok(CheckedEnvelope {
            iv,
            iterations,
            key_len,
            tag_len,
            adata,
            salt,
            ct,
        })
    }
}

fn required(field: &'static str, value: Option<String>) -> Result<String, EnvelopeError> {
    value.ok_or(EnvelopeError::MissingField { field })
}

/// Decodes standard base64 the way SJCL's `codec.base64.toBits` does: `=` and whitespace
/// anywhere are ignored, any length is accepted, and trailing bits that do not fill a byte are
/// dropped. Characters outside the standard alphabet are rejected.
fn decode_sjcl_base64(field: &'static str, text: &str) -> Result<Vec<u8>, EnvelopeError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let invalid = || EnvelopeError::InvalidBase64 { field };

    // SJCL's own output is canonical, so the common case decodes without a copy.
    let trimmed = text.trim_end_matches('=');
    let canonical = text.len() - trimmed.len() <= 2 && trimmed.bytes().all(is_base64_char);
    let filtered: String;
    let mut digits = if canonical {
        trimmed
    } else {
        filtered = text
            .chars()
            .filter(|&c| c != '=' && !is_js_whitespace(c))
            .collect();
        if !filtered.bytes().all(is_base64_char) {
            return Err(invalid());
        }
        &filtered
    };

    // One character left over carries 6 bits, less than a byte, which SJCL drops.
    if digits.len() % 4 == 1 {
        digits = &digits[..digits.len() - 1];
    }
    LENIENT.decode(digits).map_err(|_| invalid())
}

fn is_base64_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/'
}

/// Whitespace as JavaScript's `\s` matches it, which SJCL strips before decoding.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

fn key_len(bits: u64) -> Result<usize, EnvelopeError> {
    match bits {
        128 | 192 | 256 => Ok(bits as usize / 8),
        _ => Err(EnvelopeError::UnsupportedKeySize { bits }),
    }
}

fn tag_len(bits: u64) -> Result<usize, EnvelopeError> {
    match bits {
        64 | 96 | 128 => Ok(bits as usize / 8),
        _ => Err(EnvelopeError::UnsupportedTagSize { bits }),
    }
}

fn check_iterations(iterations: u64) -> Result<u32, EnvelopeError> {
    if iterations < MIN_ITERATIONS.into() {
        return Err(EnvelopeError::TooFewIterations { iterations });
    }
    if iterations > MAX_ITERATIONS.into() {
        return Err(EnvelopeError::TooManyIterations { iterations });
    }
    // At most MAX_ITERATIONS here, which fits in a u32.
    Ok(iterations as u32)
}

/// Keeps a peer-chosen string short enough to show in an error message.
fn shorten(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(24) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests;
