//! The JSON envelope of `sjcl.encrypt` / `sjcl.decrypt` with a password, byte for byte.
//!
//! SJCL 1.0.x writes, in this order: `iv`, `v`, `iter`, `ks`, `ts`, `mode`, `adata`, `cipher`,
//! `salt`, `ct`, with byte strings in standard base64 with padding. The key is the first `ks`
//! bits of PBKDF2-HMAC-SHA256(password, salt, iter); `ct` is the AES-CCM ciphertext with the
//! `ts`-bit tag appended (see `sjcl_ccm` for the nonce rule). Decryption accepts what SJCL
//! accepts from its own output, fills missing parameters with SJCL's defaults as SJCL does, and
//! checks every cost a sender can choose before any work starts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::kdf::KeyCache;
use super::sjcl_ccm::{self, AesKey, MAX_IV_LEN, MIN_IV_LEN};

/// SJCL's default PBKDF2 iteration count.
pub const DEFAULT_ITERATIONS: u32 = 10_000;

/// Lowest iteration count SJCL accepts with a password: it rejects 100 and below.
pub const MIN_ITERATIONS: u32 = 101;

/// Highest iteration count this crate will derive a key for.
///
/// Any room member chooses the count of the envelopes they send, and every reader pays for it.
/// Ten times SJCL's default keeps one hostile envelope to a fraction of a second in a browser
/// and still admits peers that raised the default.
pub const MAX_ITERATIONS: u32 = 100_000;

/// Largest ciphertext, tag included, that [`decrypt`] accepts, in bytes.
///
/// Chat messages are far smaller (the relay caps a publish at 32 KiB); this bounds the memory
/// and time one envelope can cost while leaving room for SJCL peers that encrypt larger text.
pub const MAX_CIPHERTEXT_LEN: usize = 4 << 20;

/// Error from encrypting or decrypting an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is not valid JSON: {reason}")]
    InvalidJson { reason: String },

    #[error("the envelope has no {field:?} field")]
    MissingField { field: &'static str },

    #[error("the envelope's {field:?} field is not valid base64")]
    InvalidBase64 { field: &'static str },

    #[error("unsupported cipher mode {mode:?}: only \"ccm\" is supported")]
    UnsupportedMode { mode: String },

    #[error("unsupported cipher {cipher:?}: only \"aes\" is supported")]
    UnsupportedCipher { cipher: String },

    #[error("unsupported key size of {bits} bits: expected 128, 192 or 256")]
    UnsupportedKeySize { bits: u32 },

    #[error("unsupported tag size of {bits} bits: expected 64, 96 or 128")]
    UnsupportedTagSize { bits: u32 },

    #[error("invalid IV of {bytes} bytes: expected {MIN_IV_LEN} to {MAX_IV_LEN}")]
    InvalidIvLength { bytes: usize },

    #[error("{iterations} PBKDF2 iterations is too few: at least {MIN_ITERATIONS} are required")]
    TooFewIterations { iterations: u32 },

    #[error("{iterations} PBKDF2 iterations exceeds the limit of {MAX_ITERATIONS}")]
    TooManyIterations { iterations: u32 },

    #[error("the ciphertext of about {bytes} bytes exceeds the limit of {MAX_CIPHERTEXT_LEN}")]
    TooLarge { bytes: usize },

    #[error("cannot decrypt: the key is wrong or the message was altered")]
    CannotDecrypt,

    #[error("the decrypted message is not valid UTF-8 text")]
    NotUtf8,

    #[error("the browser's secure random source failed: {0}")]
    Random(getrandom::Error),
}

/// Parameters for [`encrypt`]; [`Default`] gives SJCL's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub iterations: u32,
    pub key_bits: u32,
    pub tag_bits: u32,
    /// Authenticated but unencrypted data, written to the envelope in base64.
    pub adata: Vec<u8>,
    /// A fixed IV of 7 to 16 bytes; `None` draws 16 random bytes.
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
    let key_len = key_len(params.key_bits)?;
    let tag_len = tag_len(params.tag_bits)?;
    check_iterations(params.iterations)?;

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

    let derived = cache.derive(password, &salt, params.iterations);
    let aes = AesKey::new(derived.prefix(key_len)).map_err(|_| EnvelopeError::CannotDecrypt)?;
    let mut ct = plaintext.to_vec();
    sjcl_ccm::seal(&aes, tag_len, &iv, &params.adata, &mut ct).map_err(|_| {
        EnvelopeError::TooLarge {
            bytes: plaintext.len(),
        }
    })?;

    Ok(format!(
        concat!(
            r#"{{"iv":"{iv}","v":1,"iter":{iter},"ks":{ks},"ts":{ts},"mode":"ccm","#,
            r#""adata":"{adata}","cipher":"aes","salt":"{salt}","ct":"{ct}"}}"#
        ),
        iv = STANDARD.encode(&iv),
        iter = params.iterations,
        ks = params.key_bits,
        ts = params.tag_bits,
        adata = STANDARD.encode(&params.adata),
        salt = STANDARD.encode(&salt),
        ct = STANDARD.encode(&ct),
    ))
}

/// Decrypts an envelope with `password`, returning the plaintext bytes.
pub fn decrypt(
    password: &str,
    envelope: &str,
    cache: &mut KeyCache,
) -> Result<Vec<u8>, EnvelopeError> {
    // Bound the JSON parse itself: base64 grows the ciphertext by 4/3, and the other fields
    // are short.
    let max_text = MAX_CIPHERTEXT_LEN / 3 * 4 + 4096;
    if envelope.len() > max_text {
        return Err(EnvelopeError::TooLarge {
            bytes: envelope.len() / 4 * 3,
        });
    }

    let raw: RawEnvelope =
        serde_json::from_str(envelope).map_err(|e| EnvelopeError::InvalidJson {
            reason: e.to_string(),
        })?;
    let parsed = raw.check()?;

    let derived = cache.derive(password, &parsed.salt, parsed.iterations);
    let aes =
        AesKey::new(derived.prefix(parsed.key_len)).map_err(|_| EnvelopeError::CannotDecrypt)?;
    let mut buf = parsed.ct;
    sjcl_ccm::open(&aes, parsed.tag_len, &parsed.iv, &parsed.adata, &mut buf)
        .map_err(|_| EnvelopeError::CannotDecrypt)?;
    Ok(buf)
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

/// The envelope's fields as they arrive, each optional so a missing one gets SJCL's default or
/// a precise error.
#[derive(Deserialize)]
struct RawEnvelope {
    iv: Option<String>,
    iter: Option<u32>,
    ks: Option<u32>,
    ts: Option<u32>,
    mode: Option<String>,
    adata: Option<String>,
    cipher: Option<String>,
    salt: Option<String>,
    ct: Option<String>,
}

/// An envelope whose parameters passed every check, with its byte strings decoded.
struct CheckedEnvelope {
    iv: Vec<u8>,
    iterations: u32,
    key_len: usize,
    tag_len: usize,
    adata: Vec<u8>,
    salt: Vec<u8>,
    ct: Vec<u8>,
}

impl RawEnvelope {
    fn check(self) -> Result<CheckedEnvelope, EnvelopeError> {
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
        let iterations = self.iter.unwrap_or(DEFAULT_ITERATIONS);
        check_iterations(iterations)?;

        let ct = self.ct.ok_or(EnvelopeError::MissingField { field: "ct" })?;
        if ct.len() / 4 * 3 > MAX_CIPHERTEXT_LEN {
            return Err(EnvelopeError::TooLarge {
                bytes: ct.len() / 4 * 3,
            });
        }
        let iv = decode(
            "iv",
            self.iv.ok_or(EnvelopeError::MissingField { field: "iv" })?,
        )?;
        if !(MIN_IV_LEN..=MAX_IV_LEN).contains(&iv.len()) {
            return Err(EnvelopeError::InvalidIvLength { bytes: iv.len() });
        }
        let salt = decode(
            "salt",
            self.salt
                .ok_or(EnvelopeError::MissingField { field: "salt" })?,
        )?;
        let adata = decode("adata", self.adata.unwrap_or_default())?;
        let ct = decode("ct", ct)?;

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

fn decode(field: &'static str, text: String) -> Result<Vec<u8>, EnvelopeError> {
    STANDARD
        .decode(text.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(&text))
        .map_err(|_| EnvelopeError::InvalidBase64 { field })
}

fn key_len(bits: u32) -> Result<usize, EnvelopeError> {
    match bits {
        128 | 192 | 256 => Ok(bits as usize / 8),
        _ => Err(EnvelopeError::UnsupportedKeySize { bits }),
    }
}

fn tag_len(bits: u32) -> Result<usize, EnvelopeError> {
    match bits {
        64 | 96 | 128 => Ok(bits as usize / 8),
        _ => Err(EnvelopeError::UnsupportedTagSize { bits }),
    }
}

fn check_iterations(iterations: u32) -> Result<(), EnvelopeError> {
    if iterations < MIN_ITERATIONS {
        return Err(EnvelopeError::TooFewIterations { iterations });
    }
    if iterations > MAX_ITERATIONS {
        return Err(EnvelopeError::TooManyIterations { iterations });
    }
    Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_with_defaults() {
        let mut cache = KeyCache::default();
        let text = encrypt("#pw", "grüße 🎉".as_bytes(), &Params::default(), &mut cache).unwrap();
        assert!(text.starts_with(r#"{"iv":""#));
        assert!(text.contains(r#","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":""#));
        let plain = decrypt_text("#pw", &text, &mut cache).unwrap();
        assert_eq!(plain, "grüße 🎉");
    }

    #[test]
    fn wrong_password_cannot_decrypt() {
        let mut cache = KeyCache::default();
        let text = encrypt("#pw", b"hi", &Params::default(), &mut cache).unwrap();
        assert_eq!(
            decrypt("#other", &text, &mut cache),
            Err(EnvelopeError::CannotDecrypt)
        );
    }

    #[test]
    fn excessive_iterations_rejected_before_work() {
        let mut cache = KeyCache::default();
        let text = r#"{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","iter":2000000000,"salt":"AAAAAAAAAAA=","ct":"AAAAAAAAAAA="}"#;
        assert_eq!(
            decrypt("#pw", text, &mut cache),
            Err(EnvelopeError::TooManyIterations {
                iterations: 2_000_000_000
            })
        );
    }
}
