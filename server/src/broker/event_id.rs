//! Event ids: `<epoch>-<sequence>`, unambiguous across restarts of the relay.
//!
//! The epoch is 64 random bits drawn when the broker starts, written as 16 lowercase hex
//! digits. The sequence counts the events of that broker from 1, in decimal. An id from before
//! a restart matches no id issued after it (unless two random epochs collide, a chance of
//! 2^-64). A client that reconnects to a restarted relay therefore gets an `unknown-id`
//! notice and then the channel's whole history, never the events after a foreign id.

use std::fmt;

/// An event id as the relay issues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub epoch: u64,
    pub sequence: u64,
}

/// Maximum length of a `Last-Event-ID` worth parsing: 16 hex digits, `-`, and 20 decimal digits.
pub const MAX_EVENT_ID_LEN: usize = 37;

impl EventId {
    /// Parses an id the relay issued; anything else, of any length, returns `None`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_EVENT_ID_LEN {
            return None;
        }
        let (epoch, sequence) = text.split_once('-')?;
        let epoch_is_canonical = epoch.len() == 16
            && epoch
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let sequence_is_digits =
            !sequence.is_empty() && sequence.bytes().all(|b| b.is_ascii_digit());
        if !epoch_is_canonical || !sequence_is_digits {
            return None;
        }
        Some(Self {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            sequence: sequence.parse().ok()?,
        })
    }

    /// Returns the id as text, as `to_string` does. It skips the formatting machinery, because
    /// the broker makes one for every publish.
    pub fn to_text(self) -> String {
        const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(MAX_EVENT_ID_LEN);
        for shift in (0..16).rev() {
            let digit = (self.epoch >> (4 * shift)) & 0xF;
            text.push(char::from(HEX_DIGITS[digit as usize]));
        }
        text.push('-');
        text.push_str(itoa::Buffer::new().format(self.sequence));
        text
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Draws a random epoch from the operating system's random source.
pub fn random_epoch() -> Result<u64, getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_text() {
        let id = EventId {
            epoch: 0x00ab_cdef_0123_4567,
            sequence: 42,
        };
        assert_eq!(id.to_string(), "00abcdef01234567-42");
        assert_eq!(EventId::parse("00abcdef01234567-42"), Some(id));
        let largest = EventId {
            epoch: u64::MAX,
            sequence: u64::MAX,
        };
        assert_eq!(largest.to_string().len(), MAX_EVENT_ID_LEN);
        assert_eq!(EventId::parse(&largest.to_string()), Some(largest));
    }

    #[test]
    fn text_matches_formatted_id() {
        for (epoch, sequence) in [(0, 0), (1, 9), (0xf0, 10), (u64::MAX >> 4, 1 << 40)] {
            let id = EventId { epoch, sequence };
            assert_eq!(id.to_text(), format!("{epoch:016x}-{sequence}"));
        }
    }

    #[test]
    fn parse_rejects_foreign_ids() {
        for text in [
            "",
            "42",
            "00abcdef01234567",
            "00abcdef01234567-",
            "00ABCDEF01234567-1",
            "abcdef01234567-1",
            "00abcdef01234567-+1",
            "00abcdef01234567-99999999999999999999",
            "00abcdef01234567-1-2",
        ] {
            assert_eq!(EventId::parse(text), None, "{text:?}");
        }
    }
}
