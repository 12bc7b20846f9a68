//! The binary blob envelope: images and files, encrypted without base64.
//!
//! It uses the JSON envelope's primitives: the PBKDF2-HMAC-SHA256 key of the password with the
//! page's salt (cached, so a page derives it once), then AES-CCM. Layout of version 1, all
//! integers big-endian (docs/PROTOCOL.md has the byte-by-byte table):
//!
//! ```text
//! 0   1  version, 1
//! 1   4  PBKDF2 iterations
//! 5   8  salt
//! 13  12 CCM nonce, random
//! 25  n  ciphertext, n = plaintext length, at most MAX_PLAINTEXT_LEN
//! 25+n 16 CCM tag
//! ```
//!
//! The AES-128 key is the first 16 bytes of HMAC-SHA256(PBKDF2 output, "dropthat blob v1"), so
//! blobs never share a key with JSON envelopes made from the same password and salt. The 25 header bytes are the
//! CCM associated data, so changing any of them fails the tag check.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::ccm::AesKey;
use super::kdf::{
    DEFAULT_ITERATIONS, DerivedKey, KeyCache, MAX_ITERATIONS, MIN_ITERATIONS, SALT_LEN,
};

/// The format version this module writes and reads.
pub const VERSION: u8 = 1;

/// Length of the header in front of the ciphertext.
pub const HEADER_LEN: usize = 1 + 4 + SALT_LEN + NONCE_LEN;

/// Length of the CCM nonce. 12 bytes leave a 3-byte length field, so CCM itself allows
/// payloads up to 16 MiB - 1.
pub const NONCE_LEN: usize = 12;

/// Length of the CCM tag: the full AES block, 128 bits.
pub const TAG_LEN: usize = 16;

/// Largest plaintext a blob may carry: 8 MiB.
///
/// Images and files in a chat stay below this. The limit bounds the memory and AES-CCM time one
/// blob can cost a reader before the tag is checked. Decrypting 8 MiB took 401 ms in
/// WebAssembly and 42 ms through WebCrypto (medians) in headless Chromium 148
/// (docs/BENCHMARKS.md).
pub const MAX_PLAINTEXT_LEN: usize = 8 << 20;

/// The HMAC message that turns a PBKDF2 output into the blob key.
const KEY_LABEL: &[u8] = b"dropthat blob v1";

/// Error from encrypting or decrypting a blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the blob of {bytes} bytes is shorter than the {minimum}-byte header and tag")]
    TooShort { bytes: usize, minimum: usize },

    #[error("unsupported blob version {version}: only version {VERSION} is supported")]
    UnsupportedVersion { version: u8 },

    #[error("{iterations} PBKDF2 iterations is too few: at least {MIN_ITERATIONS} are required")]
    TooFewIterations { iterations: u32 },

    #[error("{iterations} PBKDF2 iterations exceeds the limit of {MAX_ITERATIONS}")]
    TooManyIterations { iterations: u32 },

    #[error("the blob's content of {bytes} bytes exceeds the limit of {MAX_PLAINTEXT_LEN} bytes")]
    TooLarge { bytes: usize },

    #[error("cannot decrypt: the key is wrong or the blob was altered")]
    CannotDecrypt,

    #[error("the secure random source failed: {0}")]
    Random(getrandom::Error),
}

/// Encrypts `plaintext` into a blob with the page's salt and SJCL's default iteration count.
pub fn encrypt(
    password: &str,
    plaintext: &[u8],
    cache: &mut KeyCache,
) -> Result<Vec<u8>, BlobError> {
    let salt = cache
        .send_salt(password, DEFAULT_ITERATIONS)
        .map_err(BlobError::Random)?;
    let nonce = super::random_bytes().map_err(BlobError::Random)?;
    encrypt_with(password, plaintext, DEFAULT_ITERATIONS, salt, nonce, cache)
}

/// Encrypts with every input given; [`encrypt`] draws the salt and nonce.
pub(crate) fn encrypt_with(
    password: &str,
    plaintext: &[u8],
    iterations: u32,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    cache: &mut KeyCache,
) -> Result<Vec<u8>, BlobError> {
    check_iterations(iterations)?;
    check_plaintext_len(plaintext.len())?;

    let mut blob = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    blob.extend_from_slice(&header(iterations, &salt, &nonce));
    blob.extend_from_slice(plaintext);

    let aes = AesKey::new(blob_key(&cache.derive(password, &salt, iterations)).as_slice())
        .map_err(|_| BlobError::CannotDecrypt)?;
    let (header, body) = blob.split_at_mut(HEADER_LEN);
    // The nonce and tag sizes are constants that CCM allows, and the length check above keeps
    // the payload within the 3-byte length field, so sealing cannot fail.
    let tag = aes
        .seal_in_place(&nonce, header, TAG_LEN, body)
        .map_err(|_| BlobError::CannotDecrypt)?;
    blob.extend_from_slice(tag.as_slice());
    Ok(blob)
}

/// Returns the header of a blob with these parameters.
pub(crate) fn header(
    iterations: u32,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = VERSION;
    header[1..5].copy_from_slice(&iterations.to_be_bytes());
    header[5..5 + SALT_LEN].copy_from_slice(salt);
    header[5 + SALT_LEN..].copy_from_slice(nonce);
    header
}

/// Decrypts a blob with `password` and returns its plaintext.
pub fn decrypt(password: &str, blob: &[u8], cache: &mut KeyCache) -> Result<Vec<u8>, BlobError> {
    let parts = parse(blob)?;
    let key = blob_key(&cache.derive(password, parts.salt, parts.iterations));
    let aes = AesKey::new(key.as_slice()).map_err(|_| BlobError::CannotDecrypt)?;
    let mut plaintext = parts.ciphertext.to_vec();
    aes.open_in_place(parts.nonce, parts.header, parts.tag, &mut plaintext)
        .map_err(|_| BlobError::CannotDecrypt)?;
    Ok(plaintext)
}

/// A blob's fields, after the checks that come before any work.
pub(crate) struct BlobParts<'a> {
    pub(crate) header: &'a [u8],
    pub(crate) iterations: u32,
    pub(crate) salt: &'a [u8],
    pub(crate) nonce: &'a [u8],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) tag: &'a [u8],
}

/// Splits a blob into its fields and checks its length, version and limits.
pub(crate) fn parse(blob: &[u8]) -> Result<BlobParts<'_>, BlobError> {
    let iterations = check_header(blob.get(..HEADER_LEN).unwrap_or(blob), blob.len())?;
    let (header, rest) = blob.split_at(HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok(BlobParts {
        header,
        iterations,
        salt: &header[5..5 + SALT_LEN],
        nonce: &header[5 + SALT_LEN..],
        ciphertext,
        tag,
    })
}

/// Checks a blob's total length and its header (the first [`HEADER_LEN`] bytes, or all of a
/// shorter blob), and returns the iteration count.
pub(crate) fn check_header(header: &[u8], blob_len: usize) -> Result<u32, BlobError> {
    let minimum = HEADER_LEN + TAG_LEN;
    if blob_len < minimum || header.len() < HEADER_LEN {
        return Err(BlobError::TooShort {
            bytes: blob_len,
            minimum,
        });
    }
    if header[0] != VERSION {
        return Err(BlobError::UnsupportedVersion { version: header[0] });
    }
    let iterations = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    check_iterations(iterations)?;
    let content_len = blob_len - minimum;
    if content_len > MAX_PLAINTEXT_LEN {
        return Err(BlobError::TooLarge { bytes: content_len });
    }
    Ok(iterations)
}

/// Length of the blob's AES key: AES-128, as SJCL's default, and 1.4 times faster than
/// AES-256 both in WebAssembly and in WebCrypto.
pub const KEY_LEN: usize = 16;

/// Derives the blob's AES-128 key from the PBKDF2 output.
pub(crate) fn blob_key(derived: &DerivedKey) -> Zeroizing<[u8; KEY_LEN]> {
    // `new_from_slice` only fails for key lengths HMAC does not accept, and HMAC accepts any.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(derived.prefix(32))
        .expect("HMAC accepts keys of any length");
    mac.update(KEY_LABEL);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&mac.finalize().into_bytes()[..KEY_LEN]);
    key
}

/// Checks the size limit of a plaintext to encrypt.
pub(crate) fn check_plaintext_len(len: usize) -> Result<(), BlobError> {
    if len > MAX_PLAINTEXT_LEN {
        return Err(BlobError::TooLarge { bytes: len });
    }
    Ok(())
}

pub(crate) fn check_iterations(iterations: u32) -> Result<(), BlobError> {
    if iterations < MIN_ITERATIONS {
        return Err(BlobError::TooFewIterations { iterations });
    }
    if iterations > MAX_ITERATIONS {
        return Err(BlobError::TooManyIterations { iterations });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const FAST: u32 = 1000;

    fn seal(plaintext: &[u8]) -> Vec<u8> {
        encrypt_with(
            "#pw",
            plaintext,
            FAST,
            [7; SALT_LEN],
            [9; NONCE_LEN],
            &mut KeyCache::default(),
        )
        .unwrap()
    }

    #[test]
    fn blob_layout_matches_documentation() {
        let blob = seal(b"abc");
        assert_eq!(blob.len(), HEADER_LEN + 3 + TAG_LEN);
        assert_eq!(blob[0], 1);
        assert_eq!(blob[1..5], FAST.to_be_bytes());
        assert_eq!(blob[5..13], [7; SALT_LEN]);
        assert_eq!(blob[13..25], [9; NONCE_LEN]);
        assert_ne!(&blob[25..28], b"abc");
    }

    #[test]
    fn blob_key_differs_from_envelope_key() {
        // Sealing by hand with the raw PBKDF2 output as the AES-128 key, as a text envelope
        // with ks 128 would, gives a different ciphertext, so the HMAC step is in effect.
        let blob = seal(b"abc");
        let raw = AesKey::new(
            super::super::kdf::pbkdf2_sha256(b"#pw", &[7; SALT_LEN], FAST).prefix(KEY_LEN),
        )
        .unwrap();
        let mut body = b"abc".to_vec();
        raw.seal_in_place(&[9; NONCE_LEN], &blob[..HEADER_LEN], TAG_LEN, &mut body)
            .unwrap();
        assert_ne!(body, blob[HEADER_LEN..HEADER_LEN + 3]);
    }

    #[test]
    fn eight_mib_round_trips() {
        let plaintext: Vec<u8> = (0..MAX_PLAINTEXT_LEN).map(|i| (i % 251) as u8).collect();
        let mut cache = KeyCache::default();
        let blob = encrypt("#room", &plaintext, &mut cache).unwrap();
        assert_eq!(blob.len(), HEADER_LEN + MAX_PLAINTEXT_LEN + TAG_LEN);
        assert_eq!(decrypt("#room", &blob, &mut cache).unwrap(), plaintext);
    }

    #[test]
    fn oversized_blob_rejected_before_work() {
        let mut cache = KeyCache::default();
        let too_large = vec![0u8; MAX_PLAINTEXT_LEN + 1];
        assert_eq!(
            encrypt("#room", &too_large, &mut cache),
            Err(BlobError::TooLarge {
                bytes: MAX_PLAINTEXT_LEN + 1
            })
        );

        let mut blob = seal(b"");
        blob.splice(
            HEADER_LEN..HEADER_LEN,
            std::iter::repeat_n(0, MAX_PLAINTEXT_LEN + 1),
        );
        assert_eq!(
            decrypt("#pw", &blob, &mut cache),
            Err(BlobError::TooLarge {
                bytes: MAX_PLAINTEXT_LEN + 1
            })
        );
    }

    #[test]
    fn header_fields_checked_before_work() {
        let mut cache = KeyCache::default();
        let blob = seal(b"abc");

        let mut wrong_version = blob.clone();
        wrong_version[0] = 2;
        assert_eq!(
            decrypt("#pw", &wrong_version, &mut cache),
            Err(BlobError::UnsupportedVersion { version: 2 })
        );

        let mut expensive = blob.clone();
        expensive[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decrypt("#pw", &expensive, &mut cache),
            Err(BlobError::TooManyIterations {
                iterations: u32::MAX
            })
        );

        let mut cheap = blob.clone();
        cheap[1..5].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(
            decrypt("#pw", &cheap, &mut cache),
            Err(BlobError::TooFewIterations { iterations: 100 })
        );

        for len in [0, 1, HEADER_LEN, HEADER_LEN + TAG_LEN - 1] {
            assert_eq!(
                decrypt("#pw", &blob[..len], &mut cache),
                Err(BlobError::TooShort {
                    bytes: len,
                    minimum: HEADER_LEN + TAG_LEN
                })
            );
        }
    }

    #[test]
    fn every_flipped_byte_rejected() {
        let mut cache = KeyCache::default();
        let blob = seal(b"seventeen bytes!!");
        for index in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[index] ^= 0x80;
            let result = decrypt("#pw", &tampered, &mut cache);
            // A changed version or iteration count may be caught by its check first; every
            // other change fails the tag.
            let iterations =
                u32::from_be_bytes([tampered[1], tampered[2], tampered[3], tampered[4]]);
            let expected = if index == 0 {
                Err(BlobError::UnsupportedVersion {
                    version: tampered[0],
                })
            } else if iterations > MAX_ITERATIONS {
                Err(BlobError::TooManyIterations { iterations })
            } else {
                Err(BlobError::CannotDecrypt)
            };
            assert_eq!(result, expected, "byte {index}");
        }
    }

    #[test]
    fn wrong_password_cannot_decrypt() {
        let blob = seal(b"abc");
        assert_eq!(
            decrypt("#other", &blob, &mut KeyCache::default()),
            Err(BlobError::CannotDecrypt)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn round_trip_any_content(
            plaintext in prop::collection::vec(any::<u8>(), 0..2000),
            salt in prop::array::uniform8(any::<u8>()),
            nonce in prop::array::uniform12(any::<u8>()),
        ) {
            let mut cache = KeyCache::default();
            let blob = encrypt_with("#r", &plaintext, MIN_ITERATIONS, salt, nonce, &mut cache)
                .unwrap();
            prop_assert_eq!(decrypt("#r", &blob, &mut cache).unwrap(), plaintext);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = decrypt("#r", &bytes, &mut KeyCache::default());
        }
    }
}
