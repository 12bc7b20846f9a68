//! Room links: the 16-byte room key in the URL fragment, and the channel id derived from it.
//!
//! A room link looks like `https://host/#` followed by 22 characters of base64url without
//! padding. Browsers never send the fragment to the server; the server only learns the channel
//! id, a one-way hash of the fragment.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a room key in bytes.
pub const ROOM_KEY_LEN: usize = 16;

/// Length of the fragment text after `#`: 16 bytes in base64url without padding.
pub const FRAGMENT_CHARS: usize = 22;

/// Error from parsing a room link's fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomLinkError {
    #[error("the room link has no key: the part after '#' is empty")]
    Empty,

    #[error("the room key has {actual} characters after '#', expected {FRAGMENT_CHARS}")]
    WrongLength { actual: usize },

    #[error("the room key contains {character:?}, which is not a base64url character")]
    InvalidCharacter { character: char },

    #[error("the room key is not canonical base64url: its last character carries stray bits")]
    NonCanonical,
}

/// A room key: 16 secret bytes. It zeroizes on drop and never prints.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RoomKey([u8; ROOM_KEY_LEN]);

impl RoomKey {
    /// Generates a new room key from the secure random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        super::random_bytes().map(Self)
    }

    /// Parses a fragment, with or without its leading `#`.
    pub fn from_fragment(fragment: &str) -> Result<Self, RoomLinkError> {
        let text = fragment.strip_prefix('#').unwrap_or(fragment);
        if text.is_empty() {
            return Err(RoomLinkError::Empty);
        }

        if let Some(character) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(RoomLinkError::InvalidCharacter { character });
        }

        let actual = text.chars().count();
        if actual != FRAGMENT_CHARS {
            return Err(RoomLinkError::WrongLength { actual });
        }

        // 22 characters carry 132 bits; the base64 engine rejects a last character whose 4
        // spare bits are set, so every key has exactly one spelling.
        let mut key = [0u8; ROOM_KEY_LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut key) {
            Ok(ROOM_KEY_LEN) => Ok(Self(key)),
            _ => Err(RoomLinkError::NonCanonical),
        }
    }

    /// Returns the fragment, `#` included, that names this room in a link.
    pub fn fragment(&self) -> Fragment {
        Fragment(format!("#{}", URL_SAFE_NO_PAD.encode(self.0)))
    }
}

impl std::fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomKey(..)")
    }
}

/// A room link's fragment, `#` included. It is the envelope password of the room, so it
/// zeroizes on drop and never prints.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Fragment(String);

impl Fragment {
    /// Returns the fragment text, `#` included. Callers must not send or log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Derives the channel id: the only name of this room that the server sees.
    pub fn channel_id(&self) -> String {
        channel_id(&self.0)
    }
}

impl std::fmt::Debug for Fragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fragment(..)")
    }
}

/// Derives a channel id from a fragment string, `#` included.
///
/// The rule keeps links of the 2013 JavaScript chat meeting in the same channel: SHA-256 of the
/// UTF-8 fragment, bytes 16..32 of the digest, base64url without padding (22 characters), and
/// the first character dropped, leaving 21.
pub fn channel_id(fragment: &str) -> String {
    let digest = Sha256::digest(fragment.as_bytes());
    let mut id = URL_SAFE_NO_PAD.encode(&digest[16..]);
    id.remove(0);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn generated_fragment_round_trips() {
        let key = RoomKey::generate().unwrap();
        let fragment = key.fragment();
        assert_eq!(fragment.expose().len(), 1 + FRAGMENT_CHARS);
        let parsed = RoomKey::from_fragment(fragment.expose()).unwrap();
        assert_eq!(parsed.0, key.0);
    }

    #[test]
    fn channel_id_has_21_url_safe_characters() {
        let id = channel_id("#AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(id.len(), 21);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn fragment_parse_rejects_bad_input() {
        let error = |text| RoomKey::from_fragment(text).unwrap_err();
        assert_eq!(error("#"), RoomLinkError::Empty);
        assert_eq!(error("#abc"), RoomLinkError::WrongLength { actual: 3 });
        assert_eq!(
            error("#AAAAAAAAAAAAAAAAAAAAA+"),
            RoomLinkError::InvalidCharacter { character: '+' }
        );
        assert_eq!(
            error("#AAAAAAAAAAAAAAAAAAAAAB"),
            RoomLinkError::NonCanonical
        );
    }
}
