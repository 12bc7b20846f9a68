//! PBKDF2-HMAC-SHA256 key derivation, its cost limits, and a bounded cache of derived keys.
//!
//! Deriving a key costs thousands of HMAC rounds, so, as SJCL's `cachedPbkdf2` does, a page
//! derives the key for each (password, salt, iterations) once and picks one salt per password
//! for everything it encrypts. Sending a message then costs one AES-CCM and no PBKDF2.

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a derived key: one HMAC-SHA256 block, which is what SJCL's `pbkdf2` returns.
pub const DERIVED_KEY_LEN: usize = 32;

/// Length of the salts this crate makes, as SJCL makes them (two 32-bit words).
pub const SALT_LEN: usize = 8;

/// SJCL's default PBKDF2 iteration count, which this crate also encrypts with.
pub const DEFAULT_ITERATIONS: u32 = 10_000;

/// Lowest iteration count accepted: SJCL rejects 100 and below when the key is a password.
pub const MIN_ITERATIONS: u32 = 101;

/// Highest iteration count this crate derives a key for.
///
/// Any room member chooses the count of the envelopes they send, and every reader pays for it
/// before the tag can be checked. Ten times SJCL's default still admits peers that raised the
/// default. One derivation at this cap took 51 ms in WebAssembly and 35 ms through WebCrypto
/// (medians) in headless Chromium 148 on a shared 2-core Xeon (docs/BENCHMARKS.md). A stream of
/// such envelopes, each with a fresh salt, still costs that much per envelope. "Limits" in
/// docs/PROTOCOL.md explains what a page should do about it.
pub const MAX_ITERATIONS: u32 = 100_000;

/// Number of derived keys a [`KeyCache`] keeps before it evicts the least recently used.
///
/// A room needs one key per sender session; 64 covers a busy room while bounding the memory a
/// stream of envelopes with fresh salts can take (each entry is under 100 bytes).
pub const CACHE_CAPACITY: usize = 64;

/// A PBKDF2 output. Zeroizes on drop and never prints.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey([u8; DERIVED_KEY_LEN]);

impl DerivedKey {
    /// Wraps 32 bytes derived elsewhere, for example by WebCrypto's `deriveBits`.
    pub fn from_bytes(bytes: [u8; DERIVED_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Returns the first `len` bytes (at most 32), the AES key for a key size of `len * 8` bits.
    pub fn prefix(&self, len: usize) -> &[u8] {
        &self.0[..len.min(DERIVED_KEY_LEN)]
    }
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// Derives 32 bytes with PBKDF2-HMAC-SHA256.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> DerivedKey {
    let mut out = [0u8; DERIVED_KEY_LEN];
    pbkdf2_sha256_into(password, salt, iterations, &mut out);
    DerivedKey(out)
}

/// Fills `out`, of any length, with PBKDF2-HMAC-SHA256.
///
/// The `pbkdf2` crate keys HMAC once and clones the keyed state for each round, so a round
/// costs two SHA-256 compressions and no allocation.
pub fn pbkdf2_sha256_into(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out);
}

/// Identifies a cache entry by digests, so the cache keeps neither the password nor a salt
/// that a sender made megabytes long.
#[derive(Clone, PartialEq, Eq)]
struct CacheKey {
    password_digest: Zeroizing<[u8; 32]>,
    salt_digest: [u8; 32],
    iterations: u32,
}

impl CacheKey {
    fn new(password: &str, salt: &[u8], iterations: u32) -> Self {
        Self {
            password_digest: digest(password.as_bytes()),
            salt_digest: Sha256::digest(salt).into(),
            iterations,
        }
    }
}

/// Derived keys by (password, salt, iterations), plus the salt chosen for each password.
#[derive(Default)]
pub struct KeyCache {
    /// Least recently used first; at most [`CACHE_CAPACITY`] entries. A linear search over 64
    /// entries costs far less than one PBKDF2 round trip through a hash map's hashing.
    keys: Vec<(CacheKey, DerivedKey)>,
    /// The salt this page encrypts with, per (password digest, iterations); at most
    /// [`CACHE_CAPACITY`] entries, oldest first.
    send_salts: Vec<(Zeroizing<[u8; 32]>, u32, [u8; SALT_LEN])>,
}

impl KeyCache {
    /// Returns the key for these inputs, deriving it with [`pbkdf2_sha256`] on first use.
    pub fn derive(&mut self, password: &str, salt: &[u8], iterations: u32) -> DerivedKey {
        if let Some(key) = self.get(password, salt, iterations) {
            return key;
        }
        let key = pbkdf2_sha256(password.as_bytes(), salt, iterations);
        self.insert(password, salt, iterations, key.clone());
        key
    }

    /// Returns the cached key for these inputs, marking it as recently used.
    pub fn get(&mut self, password: &str, salt: &[u8], iterations: u32) -> Option<DerivedKey> {
        let wanted = CacheKey::new(password, salt, iterations);
        let index = self.keys.iter().position(|(k, _)| *k == wanted)?;
        let entry = self.keys.remove(index);
        let key = entry.1.clone();
        self.keys.push(entry);
        Some(key)
    }

    /// Stores a key derived for these inputs, evicting the least recently used beyond
    /// [`CACHE_CAPACITY`].
    pub fn insert(&mut self, password: &str, salt: &[u8], iterations: u32, key: DerivedKey) {
        let cache_key = CacheKey::new(password, salt, iterations);
        self.keys.retain(|(k, _)| *k != cache_key);
        if self.keys.len() == CACHE_CAPACITY {
            self.keys.remove(0);
        }
        self.keys.push((cache_key, key));
    }

    /// Returns the salt this page encrypts with for `password` and `iterations`, choosing a
    /// random one on first use.
    pub fn send_salt(
        &mut self,
        password: &str,
        iterations: u32,
    ) -> Result<[u8; SALT_LEN], getrandom::Error> {
        let password_digest = digest(password.as_bytes());
        let found = self
            .send_salts
            .iter()
            .find(|(d, i, _)| *d == password_digest && *i == iterations);
        if let Some((_, _, salt)) = found {
            return Ok(*salt);
        }

        let salt = super::random_bytes()?;
        if self.send_salts.len() == CACHE_CAPACITY {
            self.send_salts.remove(0);
        }
        self.send_salts.push((password_digest, iterations, salt));
        Ok(salt)
    }
}

fn digest(bytes: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_support::hex;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn derive_hex(password: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        pbkdf2_sha256_into(password, salt, iterations, &mut out);
        out
    }

    #[test]
    fn rfc7914_section_11_vectors() {
        assert_eq!(
            derive_hex(b"passwd", b"salt", 1, 64),
            hex(concat!(
                "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc",
                "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
            ))
        );
        assert_eq!(
            derive_hex(b"Password", b"NaCl", 80_000, 64),
            hex(concat!(
                "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56",
                "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
            ))
        );
    }

    /// RFC 6070 gives these inputs for PBKDF2-HMAC-SHA1; these are the widely published
    /// outputs of the same inputs with HMAC-SHA256.
    #[test]
    fn rfc6070_inputs_with_sha256() {
        let cases: [(&[u8], &[u8], u32, &str); 5] = [
            (
                b"password",
                b"salt",
                1,
                "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
            ),
            (
                b"password",
                b"salt",
                2,
                "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43",
            ),
            (
                b"password",
                b"salt",
                4096,
                "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
            ),
            (
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096,
                "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9",
            ),
            (
                b"pass\0word",
                b"sa\0lt",
                4096,
                "89b69d0516f829893c696226650a8687",
            ),
        ];
        for (password, salt, iterations, expected) in cases {
            let expected = hex(expected);
            assert_eq!(
                derive_hex(password, salt, iterations, expected.len()),
                expected,
                "{iterations} iterations"
            );
        }
    }

    #[test]
    fn cache_returns_same_key_and_salt() {
        let mut cache = KeyCache::default();
        let a = cache.derive("#pw", b"saltsalt", 1000);
        let b = cache.derive("#pw", b"saltsalt", 1000);
        assert_eq!(a.0, b.0);
        assert_eq!(a.0, pbkdf2_sha256(b"#pw", b"saltsalt", 1000).0);
        assert_eq!(cache.keys.len(), 1);
        assert_eq!(
            cache.send_salt("#pw", 1000).unwrap(),
            cache.send_salt("#pw", 1000).unwrap()
        );
        assert_ne!(
            cache.send_salt("#pw", 1000).unwrap(),
            cache.send_salt("#other", 1000).unwrap()
        );
    }

    #[test]
    fn cache_separates_each_input() {
        let mut cache = KeyCache::default();
        let base = cache.derive("#pw", b"salt", 200);
        assert_ne!(cache.derive("#pW", b"salt", 200).0, base.0);
        assert_ne!(cache.derive("#pw", b"salT", 200).0, base.0);
        assert_ne!(cache.derive("#pw", b"salt", 201).0, base.0);
        assert_eq!(cache.keys.len(), 4);
    }

    #[test]
    fn cache_forgets_least_recently_used() {
        let mut cache = KeyCache::default();
        cache.derive("#pw", b"first", 2);
        for i in 0..CACHE_CAPACITY {
            cache.derive("#pw", &i.to_be_bytes(), 2);
            // Touching the first entry keeps it the most recently used.
            assert!(cache.get("#pw", b"first", 2).is_some());
        }
        assert_eq!(cache.keys.len(), CACHE_CAPACITY);
        assert!(cache.get("#pw", b"first", 2).is_some());
        assert!(cache.get("#pw", &0usize.to_be_bytes(), 2).is_none());
        assert!(cache.get("#pw", &1usize.to_be_bytes(), 2).is_some());
    }

    #[test]
    fn send_salts_stay_bounded() {
        let mut cache = KeyCache::default();
        for i in 0..CACHE_CAPACITY + 10 {
            cache.send_salt(&format!("#room{i}"), 1000).unwrap();
        }
        assert_eq!(cache.send_salts.len(), CACHE_CAPACITY);
    }
}
