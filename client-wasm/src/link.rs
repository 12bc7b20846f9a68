//! Room links with and without a passphrase, and the secret each one gives the envelopes.
//!
//! An open room's fragment is `#` and the 22-character room key; its envelope password is the
//! fragment text. A passphrase room's fragment adds a dot and an 8-character check value:
//! `#<room key>.<check>`. The dot makes a joining page prompt for the passphrase, and the check
//! value lets it report a wrong one before any message arrives. The channel id is derived from
//! the whole fragment in both cases, so the relay sees only a hash of it.
//!
//! In a passphrase room the envelope password is
//!
//! ```text
//! "#" || room key text || ".\n" || prehash("dropthat passphrase room", room key text, passphrase)
//! ```
//!
//! `prehash` stretches the passphrase with 25,000 PBKDF2-HMAC-SHA256 iterations under a salt
//! drawn from the room key, so no table serves two rooms. Keeping the fragment in the password
//! means a room with a passphrase is never weaker than one without. The check value is the
//! first 6 bytes of PBKDF2-HMAC-SHA256(password, "dropthat passphrase check", 10,000), so
//! testing a guess against it costs the same 35,000 iterations as testing it against a
//! message encrypted with the default 10,000.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::kdf::{DEFAULT_ITERATIONS, pbkdf2_sha256};
use crate::crypto::prehash::prehash;
use crate::crypto::room::{FRAGMENT_CHARS, RoomKey, RoomLinkError, channel_id};

/// Length of the check value in bytes: 48 bits, so a random wrong passphrase passes with
/// probability 2^-48.
pub const CHECK_LEN: usize = 6;

/// Length of the check value's base64url text.
pub const CHECK_CHARS: usize = 8;

/// Minimum characters of a new passphrase. Joiners may enter anything.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// The `site` input of the prehash for passphrase rooms.
const PREHASH_SITE: &str = "dropthat passphrase room";

/// The PBKDF2 salt of the check value.
const CHECK_SALT: &[u8] = b"dropthat passphrase check";

/// Error from parsing a room link or from a passphrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Key(#[from] RoomLinkError),

    #[error(
        "the passphrase check after '.' has {actual} characters, expected {CHECK_CHARS} base64url characters"
    )]
    InvalidCheck { actual: usize },

    #[error("the passphrase is wrong for this room")]
    WrongPassphrase,

    #[error("the passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters")]
    PassphraseTooShort,

    #[error("the secure random source failed: {0}")]
    Random(getrandom::Error),
}

/// A parsed room link.
#[derive(Debug, Clone)]
pub enum RoomLink {
    /// The key alone opens the room.
    Open(RoomKey),
    /// The key and a passphrase open the room; `check` verifies the passphrase.
    Passphrase {
        key: RoomKey,
        check: [u8; CHECK_LEN],
    },
}

impl RoomLink {
    /// Parses a fragment, with or without its leading `#`.
    pub fn parse(fragment: &str) -> Result<Self, LinkError> {
        let text = fragment.strip_prefix('#').unwrap_or(fragment);
        let Some((key_text, check_text)) = text.split_once('.') else {
            return Ok(Self::Open(RoomKey::from_fragment(text)?));
        };

        let key = RoomKey::from_fragment(key_text)?;
        let mut check = [0u8; CHECK_LEN];
        let decoded = check_text.len() == CHECK_CHARS
            && matches!(
                URL_SAFE_NO_PAD.decode_slice(check_text, &mut check),
                Ok(CHECK_LEN)
            );
        if !decoded {
            return Err(LinkError::InvalidCheck {
                actual: check_text.chars().count(),
            });
        }
        Ok(Self::Passphrase { key, check })
    }

    /// Creates an open room with a new random key.
    pub fn generate_open() -> Result<Self, LinkError> {
        Ok(Self::Open(RoomKey::generate().map_err(LinkError::Random)?))
    }

    /// Creates a passphrase room with a new random key, returning the link and its secret.
    pub fn generate_with_passphrase(passphrase: &str) -> Result<(Self, RoomSecret), LinkError> {
        if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(LinkError::PassphraseTooShort);
        }
        let key = RoomKey::generate().map_err(LinkError::Random)?;
        // The password contains the room key but not the check value, which is computed
        // from the password.
        let password = passphrase_password(&key_text(&key), passphrase);
        let check = check_value(&password);
        let link = Self::Passphrase { key, check };
        Ok((link, RoomSecret(password)))
    }

    /// Returns whether joining needs a passphrase.
    pub fn needs_passphrase(&self) -> bool {
        matches!(self, Self::Passphrase { .. })
    }

    /// Returns the fragment, `#` included, that names this room in a link. Callers must not
    /// send or log it.
    pub fn fragment(&self) -> Zeroizing<String> {
        let key = match self {
            Self::Open(key) | Self::Passphrase { key, .. } => key,
        };
        let mut text = Zeroizing::new(key.fragment().expose().to_owned());
        if let Self::Passphrase { check, .. } = self {
            text.push('.');
            text.push_str(&URL_SAFE_NO_PAD.encode(check));
        }
        text
    }

    /// Derives the channel id from the whole fragment.
    pub fn channel_id(&self) -> String {
        channel_id(&self.fragment())
    }

    /// Returns the envelope secret of an open room; `None` for a passphrase room.
    pub fn open_secret(&self) -> Option<RoomSecret> {
        match self {
            Self::Open(key) => Some(RoomSecret(Zeroizing::new(
                key.fragment().expose().to_owned(),
            ))),
            Self::Passphrase { .. } => None,
        }
    }

    /// Stretches `passphrase` and checks it against the link's check value, returning the
    /// envelope secret. For an open room the passphrase is ignored.
    ///
    /// This costs 35,000 PBKDF2 iterations, an estimated 17 ms in WebAssembly from the PBKDF2
    /// timings in docs/BENCHMARKS.md.
    pub fn unlock(&self, passphrase: &str) -> Result<RoomSecret, LinkError> {
        let (key, check) = match self {
            Self::Open(_) => return self.open_secret().ok_or(LinkError::WrongPassphrase),
            Self::Passphrase { key, check } => (key, check),
        };
        let password = passphrase_password(&key_text(key), passphrase);
        let expected = check_value(&password);
        if bool::from(expected.ct_eq(check)) {
            Ok(RoomSecret(password))
        } else {
            Err(LinkError::WrongPassphrase)
        }
    }
}

/// The password of every envelope in a room. It zeroizes on drop and never prints.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RoomSecret(Zeroizing<String>);

impl RoomSecret {
    /// Returns the password text. Callers must not send, store or log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// Returns the 22 characters of the room key, without `#`.
fn key_text(key: &RoomKey) -> Zeroizing<String> {
    Zeroizing::new(key.fragment().expose()[1..].to_owned())
}

/// Builds a passphrase room's envelope password from the key text and the passphrase.
fn passphrase_password(key_text: &str, passphrase: &str) -> Zeroizing<String> {
    debug_assert_eq!(key_text.len(), FRAGMENT_CHARS);
    let stretched = Zeroizing::new(prehash(PREHASH_SITE, key_text, passphrase));
    let mut password = Zeroizing::new(String::with_capacity(1 + FRAGMENT_CHARS + 2 + 44));
    password.push('#');
    password.push_str(key_text);
    password.push_str(".\n");
    password.push_str(&stretched);
    password
}

/// Returns whether `host`, a page address's host name as `location.hostname` gives it, names
/// this machine: `localhost` or a name under `.localhost` (a trailing dot allowed), an address
/// in 127.0.0.0/8, or `[::1]`. These are the hosts that W3C Secure Contexts counts as
/// potentially trustworthy over plain HTTP, because the room link never leaves the machine.
/// Every other host, IPv4-mapped loopback included, returns false.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let name = host.strip_suffix('.').unwrap_or(&host);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return ip.is_loopback();
    }
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

fn check_value(password: &str) -> [u8; CHECK_LEN] {
    let derived = pbkdf2_sha256(password.as_bytes(), CHECK_SALT, DEFAULT_ITERATIONS);
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(derived.prefix(CHECK_LEN));
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn open_link_round_trips() {
        let link = RoomLink::generate_open().unwrap();
        let fragment = link.fragment();
        assert_eq!(fragment.as_str().len(), 23);
        let parsed = RoomLink::parse(fragment.as_str()).unwrap();
        assert!(!parsed.needs_passphrase());
        assert_eq!(parsed.fragment().as_str(), fragment.as_str());
        assert_eq!(
            parsed.open_secret().unwrap().expose(),
            fragment.as_str(),
            "an open room's password is its fragment, as for SJCL peers"
        );
        assert_eq!(parsed.channel_id(), channel_id(fragment.as_str()));
    }

    #[test]
    fn passphrase_link_unlocks_with_right_passphrase() {
        let (link, secret) = RoomLink::generate_with_passphrase("correct horse").unwrap();
        let fragment = link.fragment();
        let text = fragment.as_str();
        assert_eq!(text.len(), 1 + FRAGMENT_CHARS + 1 + CHECK_CHARS, "{text}");
        assert!(!text.contains("correct"), "the link reveals the passphrase");

        let joined = RoomLink::parse(text).unwrap();
        assert!(joined.needs_passphrase());
        assert!(joined.open_secret().is_none());
        assert_eq!(joined.channel_id(), channel_id(text));
        let unlocked = joined.unlock("correct horse").unwrap();
        assert_eq!(unlocked.expose(), secret.expose());
        assert!(
            unlocked.expose().starts_with(&text[..24]),
            "the password contains the room key"
        );
        assert!(!unlocked.expose().contains("correct"));
    }

    #[test]
    fn passphrase_link_rejects_wrong_passphrase() {
        let (link, _) = RoomLink::generate_with_passphrase("correct horse").unwrap();
        let joined = RoomLink::parse(link.fragment().as_str()).unwrap();
        for wrong in ["correct hors", "Correct horse", "", "correct horse "] {
            assert_eq!(
                joined.unlock(wrong).unwrap_err(),
                LinkError::WrongPassphrase,
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn same_passphrase_differs_per_room() {
        let (_, first) = RoomLink::generate_with_passphrase("same passphrase").unwrap();
        let (_, second) = RoomLink::generate_with_passphrase("same passphrase").unwrap();
        assert_ne!(first.expose(), second.expose());
    }

    #[test]
    fn short_passphrase_is_rejected() {
        assert_eq!(
            RoomLink::generate_with_passphrase("1234567").unwrap_err(),
            LinkError::PassphraseTooShort
        );
    }

    #[test]
    fn malformed_links_are_rejected() {
        let key = "AAAAAAAAAAAAAAAAAAAAAA";
        assert!(matches!(
            RoomLink::parse(&format!("#{key}.")),
            Err(LinkError::InvalidCheck { actual: 0 })
        ));
        assert!(matches!(
            RoomLink::parse(&format!("#{key}.AAAAAAA+")),
            Err(LinkError::InvalidCheck { .. })
        ));
        assert!(matches!(
            RoomLink::parse(&format!("#{key}.AAAAAAAAA")),
            Err(LinkError::InvalidCheck { actual: 9 })
        ));
        assert!(matches!(
            RoomLink::parse("#short.AAAAAAAA"),
            Err(LinkError::Key(RoomLinkError::WrongLength { actual: 5 }))
        ));
        assert!(matches!(
            RoomLink::parse(&format!("#{key}.AAAAAAAA.x")),
            Err(LinkError::InvalidCheck { .. })
        ));
    }

    #[test]
    fn loopback_hosts_are_this_machine() {
        let loopback = [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "chat.localhost",
            "a.b.localhost.",
            "127.0.0.1",
            "127.0.0.2",
            "127.255.255.254",
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
        ];
        for host in loopback {
            assert!(is_loopback_host(host), "{host} is loopback");
        }
        let elsewhere = [
            "",
            "example.com",
            "localhost.example.com",
            "notlocalhost",
            "127.0.0.1.nip.io",
            "128.0.0.1",
            "10.0.0.1",
            "0.0.0.0",
            "192.168.1.10",
            "[::]",
            "[::2]",
            "[::ffff:7f00:1]",
            "[fe80::1]",
            "::1",
        ];
        for host in elsewhere {
            assert!(!is_loopback_host(host), "{host} is not loopback");
        }
    }
}
