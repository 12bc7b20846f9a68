//! PBKDF2-HMAC-SHA256 key derivation, and a small cache of derived keys.
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

/// Number of derived keys a [`KeyCache`] keeps before it forgets the oldest.
///
/// A room needs one key per sender session; 64 covers a busy room while bounding the memory a
/// stream of envelopes with fresh salts can take.
pub const CACHE_CAPACITY: usize = 64;

/// A PBKDF2 output. Zeroizes on drop and never prints.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey([u8; DERIVED_KEY_LEN]);

impl DerivedKey {
    /// Returns the first `len` bytes, the AES key for a key size of `len * 8` bits.
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
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    DerivedKey(out)
}

/// Identifies a cache entry without keeping the password itself.
#[derive(PartialEq, Eq)]
struct CacheKey {
    password_digest: Zeroizing<[u8; 32]>,
    salt: Vec<u8>,
    iterations: u32,
}

/// Derived keys by (password, salt, iterations), plus the salt chosen for each password.
#[derive(Default)]
pub struct KeyCache {
    /// Oldest first; at most [`CACHE_CAPACITY`] entries.
    keys: Vec<(CacheKey, DerivedKey)>,
    /// The salt this page encrypts with, per (password digest, iterations).
    send_salts: Vec<(Zeroizing<[u8; 32]>, u32, [u8; SALT_LEN])>,
}

impl KeyCache {
    /// Returns the key for these inputs, deriving it on first use.
    pub fn derive(&mut self, password: &str, salt: &[u8], iterations: u32) -> DerivedKey {
        let wanted = CacheKey {
            password_digest: digest(password),
            salt: salt.to_vec(),
            iterations,
        };
        if let Some((_, key)) = self.keys.iter().find(|(k, _)| *k == wanted) {
            return key.clone();
        }

        let key = pbkdf2_sha256(password.as_bytes(), salt, iterations);
        if self.keys.len() == CACHE_CAPACITY {
            self.keys.remove(0);
        }
        self.keys.push((wanted, key.clone()));
        key
    }

    /// Returns the salt this page encrypts with for `password` and `iterations`, choosing a
    /// random one on first use.
    pub fn send_salt(
        &mut self,
        password: &str,
        iterations: u32,
    ) -> Result<[u8; SALT_LEN], getrandom::Error> {
        let password_digest = digest(password);
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

fn digest(password: &str) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(Sha256::digest(password.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_returns_same_key_and_salt() {
        let mut cache = KeyCache::default();
        let a = cache.derive("#pw", b"saltsalt", 1000);
        let b = cache.derive("#pw", b"saltsalt", 1000);
        assert_eq!(a.0, b.0);
        assert_eq!(cache.keys.len(), 1);
        assert_eq!(
            cache.send_salt("#pw", 1000).unwrap(),
            cache.send_salt("#pw", 1000).unwrap()
        );
    }

    #[test]
    fn cache_forgets_oldest_beyond_capacity() {
        let mut cache = KeyCache::default();
        for i in 0..(CACHE_CAPACITY + 5) {
            cache.derive("#pw", &i.to_be_bytes(), 2);
        }
        assert_eq!(cache.keys.len(), CACHE_CAPACITY);
    }
}
