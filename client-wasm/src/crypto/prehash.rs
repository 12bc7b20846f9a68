//! The login prehash of the original JavaScript page, and the server's storage of it.
//!
//! A page that logs in to a site sends `prehash(site, username, password)` instead of the
//! password, so the slow PBKDF2 runs in the browser, not on the server. The server then wraps
//! the prehash with a random salt and one SHA-256 before storing it ([`StoredPrehash`]), so a
//! leaked table does not hold values a client could send as they are.
//!
//! This module depends on nothing from the browser, so the server crate can use it:
//!
//! ```
//! use dropthat_client::crypto::prehash::{StoredPrehash, prehash};
//!
//! # fn main() -> Result<(), dropthat_client::crypto::prehash::PrehashError> {
//! // In the browser: the page sends this 44-character string in place of the password.
//! let sent = prehash("dropth.at", "cda", "password");
//!
//! // On the server, at registration: keep only the wrapped form.
//! let record = StoredPrehash::new(&sent)?.to_string();
//! assert!(record.starts_with("sha256$"));
//!
//! // At login: parse the stored record and compare in constant time.
//! let stored: StoredPrehash = record.parse()?;
//! assert!(stored.verify(&sent).is_ok());
//! assert!(stored.verify(&prehash("dropth.at", "cda", "wrong")).is_err());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::kdf::pbkdf2_sha256_into;

/// PBKDF2 iterations of the prehash, as the original page ran them.
pub const PREHASH_ITERATIONS: u32 = 25_000;

/// Length of a prehash in bytes; its base64 text is 44 characters.
pub const PREHASH_LEN: usize = 32;

/// Length of the random salt in a [`StoredPrehash`].
pub const STORED_SALT_LEN: usize = 16;

/// The scheme name that starts a stored record.
const SCHEME: &str = "sha256";

/// Error from checking a prehash or a stored record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrehashError {
    #[error("invalid prehash: expected {PREHASH_LEN} bytes in standard base64 (44 characters)")]
    InvalidPrehash,

    #[error("invalid stored prehash: {reason}")]
    InvalidRecord { reason: &'static str },

    #[error("the prehash does not match the stored one")]
    Mismatch,

    #[error("the secure random source failed: {0}")]
    Random(getrandom::Error),
}

/// Computes the prehash: PBKDF2-HMAC-SHA256 of the password with 25,000 iterations, in
/// standard base64 with padding.
///
/// The salt is text: the first 10 characters of the standard base64 of SHA-256(site followed
/// by username), both UTF-8. This reproduces `preHash(site, username, password)` of the
/// original page, which ran on SJCL's `hash.sha256`, `codec.base64` and `misc.pbkdf2`.
pub fn prehash(site: &str, username: &str, password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(site.as_bytes())
        .chain_update(username.as_bytes())
        .finalize();
    let salt_text = STANDARD.encode(digest);

    let mut output = Zeroizing::new([0u8; PREHASH_LEN]);
    pbkdf2_sha256_into(
        password.as_bytes(),
        &salt_text.as_bytes()[..10],
        PREHASH_ITERATIONS,
        output.as_mut_slice(),
    );
    STANDARD.encode(output.as_slice())
}

/// A prehash as a server stores it: a random salt and SHA-256(salt followed by the 32 prehash
/// bytes).
///
/// Its text form is `sha256$` + base64(salt) + `$` + base64(digest), standard base64 with
/// padding (Display and [`FromStr`]).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPrehash {
    salt: [u8; STORED_SALT_LEN],
    digest: [u8; 32],
}

impl StoredPrehash {
    /// Wraps a prehash received from a client with a fresh random salt.
    pub fn new(prehash: &str) -> Result<Self, PrehashError> {
        let salt = super::random_bytes().map_err(PrehashError::Random)?;
        Self::with_salt(prehash, salt)
    }

    /// Wraps a prehash with the given salt; [`StoredPrehash::new`] draws a random one.
    pub fn with_salt(prehash: &str, salt: [u8; STORED_SALT_LEN]) -> Result<Self, PrehashError> {
        let bytes = decode_prehash(prehash)?;
        Ok(Self {
            salt,
            digest: wrap(&salt, &bytes),
        })
    }

    /// Checks a prehash received from a client against this record, comparing the digests in
    /// constant time.
    pub fn verify(&self, prehash: &str) -> Result<(), PrehashError> {
        let bytes = decode_prehash(prehash)?;
        let digest = wrap(&self.salt, &bytes);
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(PrehashError::Mismatch)
        }
    }
}

impl fmt::Display for StoredPrehash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let salt = STANDARD.encode(self.salt);
        let digest = STANDARD.encode(self.digest);
        write!(f, "{SCHEME}${salt}${digest}")
    }
}

impl fmt::Debug for StoredPrehash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredPrehash(..)")
    }
}

impl FromStr for StoredPrehash {
    type Err = PrehashError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| PrehashError::InvalidRecord { reason };
        let mut parts = text.split('$');
        if parts.next() != Some(SCHEME) {
            return Err(invalid("it does not start with \"sha256$\""));
        }
        let (Some(salt), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("expected three fields separated by '$'"));
        };

        let mut record = Self {
            salt: [0; STORED_SALT_LEN],
            digest: [0; 32],
        };
        decode_exact(salt, &mut record.salt)
            .map_err(|_| invalid("the salt is not 16 bytes of base64"))?;
        decode_exact(digest, &mut record.digest)
            .map_err(|_| invalid("the digest is not 32 bytes of base64"))?;
        Ok(record)
    }
}

fn wrap(salt: &[u8; STORED_SALT_LEN], prehash: &[u8; PREHASH_LEN]) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(prehash)
        .finalize()
        .into()
}

/// Decodes a client's prehash: exactly 32 bytes in canonical standard base64.
fn decode_prehash(prehash: &str) -> Result<Zeroizing<[u8; PREHASH_LEN]>, PrehashError> {
    let mut bytes = Zeroizing::new([0u8; PREHASH_LEN]);
    decode_exact(prehash, bytes.as_mut_slice()).map_err(|_| PrehashError::InvalidPrehash)?;
    Ok(bytes)
}

/// Decodes canonical standard base64 that must fill `out` exactly.
fn decode_exact(text: &str, out: &mut [u8]) -> Result<(), ()> {
    // The encoded length is checked first, so the decoder never writes past `out`.
    if text.len() != out.len().div_ceil(3) * 4 {
        return Err(());
    }
    match STANDARD.decode_slice(text, out) {
        Ok(written) if written == out.len() => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kdf::pbkdf2_sha256;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn prehash_salt_is_base64_prefix() {
        // SHA-256("abc") is the FIPS 180-2 example digest ba7816bf...f20015ad, whose base64
        // starts with "ungWv48Bz+".
        let expected = pbkdf2_sha256(b"secret", b"ungWv48Bz+", PREHASH_ITERATIONS);
        assert_eq!(
            prehash("a", "bc", "secret"),
            STANDARD.encode(expected.prefix(32))
        );
        assert_eq!(prehash("ab", "c", "secret"), prehash("a", "bc", "secret"));
    }

    #[test]
    fn prehash_matches_sjcl_known_answer() {
        // Computed with sjcl 1.0.9's hash.sha256, codec.base64 and misc.pbkdf2 by the original
        // page's preHash rule; tests/node checks random inputs against SJCL at test time.
        assert_eq!(
            prehash("dropth.at", "cda", "password"),
            "e1l178y/9X+h4fTPtSmLSTN4QZAMnpeBk/N2R+2/YBY="
        );
    }

    #[test]
    fn prehash_is_44_base64_characters() {
        let value = prehash("dropth.at", "ünïcode 🎉", "pässword");
        assert_eq!(value.len(), 44);
        assert!(value.ends_with('='));
        assert_ne!(value, prehash("dropth.at", "ünïcode 🎉", "password"));
    }

    #[test]
    fn stored_prehash_verifies_same_only() {
        let sent = STANDARD.encode([0x11u8; 32]);
        let other = STANDARD.encode([0x12u8; 32]);
        let record = StoredPrehash::new(&sent).unwrap();
        assert_eq!(record.verify(&sent), Ok(()));
        assert_eq!(record.verify(&other), Err(PrehashError::Mismatch));
    }

    #[test]
    fn stored_prehash_salts_differ() {
        let sent = STANDARD.encode([0x11u8; 32]);
        let first = StoredPrehash::new(&sent).unwrap();
        let second = StoredPrehash::new(&sent).unwrap();
        assert_ne!(first.salt, second.salt);
        assert_ne!(first.digest, second.digest);
    }

    #[test]
    fn stored_digest_is_sha256_of_salt_and_prehash() {
        let record = StoredPrehash::with_salt(&STANDARD.encode([3u8; 32]), [4; 16]).unwrap();
        let mut input = vec![4u8; 16];
        input.extend_from_slice(&[3u8; 32]);
        assert_eq!(record.digest, <[u8; 32]>::from(Sha256::digest(&input)));
        assert_eq!(
            record.to_string(),
            format!(
                "sha256${}${}",
                STANDARD.encode([4u8; 16]),
                STANDARD.encode(record.digest)
            )
        );
    }

    #[test]
    fn record_text_round_trips() {
        let record = StoredPrehash::new(&STANDARD.encode([9u8; 32])).unwrap();
        let parsed: StoredPrehash = record.to_string().parse().unwrap();
        assert_eq!(parsed, record);
    }

    #[test]
    fn malformed_prehash_rejected() {
        let record = StoredPrehash::new(&STANDARD.encode([1u8; 32])).unwrap();
        let valid = STANDARD.encode([1u8; 32]);
        for bad in [
            String::new(),
            valid[..43].to_owned(),
            format!("{valid}A"),
            STANDARD.encode([1u8; 31]),
            STANDARD.encode([1u8; 33]),
            valid.replace('=', "A"),
            valid.replacen('A', "-", 1),
            format!("{}B=", &valid[..42]),
        ] {
            assert_eq!(
                record.verify(&bad),
                Err(PrehashError::InvalidPrehash),
                "{bad:?}"
            );
            assert_eq!(
                StoredPrehash::new(&bad).unwrap_err(),
                PrehashError::InvalidPrehash,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_record_rejected() {
        let salt = STANDARD.encode([1u8; 16]);
        let digest = STANDARD.encode([2u8; 32]);
        for bad in [
            String::new(),
            format!("md5${salt}${digest}"),
            format!("sha256${salt}"),
            format!("sha256${salt}${digest}$extra"),
            format!("sha256${digest}${digest}"),
            format!("sha256${salt}${salt}"),
            format!("sha256$${digest}"),
        ] {
            assert!(
                matches!(
                    bad.parse::<StoredPrehash>(),
                    Err(PrehashError::InvalidRecord { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
