//! Channel ids: the name of a room as the server sees it.

use std::fmt;
use std::sync::Arc;

/// Longest channel id accepted, in characters.
pub const MAX_CHANNEL_LEN: usize = 64;

/// A channel id of 1 to 64 characters of `[A-Za-z0-9_-]`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(Arc<str>);

/// Error from parsing a channel id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelIdError {
    #[error("the channel id is empty")]
    Empty,

    #[error("the channel id has {length} characters, more than the maximum of {MAX_CHANNEL_LEN}")]
    TooLong { length: usize },

    #[error("the channel id contains {character:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    InvalidCharacter { character: char },
}

impl ChannelId {
    /// Parses and validates a channel id.
    pub fn parse(text: &str) -> Result<Self, ChannelIdError> {
        if text.is_empty() {
            return Err(ChannelIdError::Empty);
        }
        if let Some(character) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(ChannelIdError::InvalidCharacter { character });
        }
        if text.len() > MAX_CHANNEL_LEN {
            return Err(ChannelIdError::TooLong { length: text.len() });
        }
        Ok(Self(text.into()))
    }

    /// Returns the id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_url_safe_ids() {
        assert_eq!(ChannelId::parse("aZ09_-").unwrap().as_str(), "aZ09_-");
        assert!(ChannelId::parse(&"a".repeat(MAX_CHANNEL_LEN)).is_ok());
    }

    #[test]
    fn parse_rejects_bad_ids() {
        assert_eq!(ChannelId::parse(""), Err(ChannelIdError::Empty));
        assert_eq!(
            ChannelId::parse(&"a".repeat(MAX_CHANNEL_LEN + 1)),
            Err(ChannelIdError::TooLong {
                length: MAX_CHANNEL_LEN + 1
            })
        );
        assert_eq!(
            ChannelId::parse("a/b"),
            Err(ChannelIdError::InvalidCharacter { character: '/' })
        );
    }
}
