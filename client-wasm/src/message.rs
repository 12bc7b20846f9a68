//! The chat message inside an encrypted envelope, and how a received plaintext is classified.
//!
//! Everything here comes from another room member after decryption, so it is checked like any
//! other untrusted input: an unknown type or a malformed field becomes [`Received::Invalid`],
//! and plaintext that is not JSON at all (for example from a plain SJCL client) is shown as text.

use serde::{Deserialize, Serialize};

/// Longest nick shown, in characters; longer ones are cut.
pub const MAX_NICK_CHARS: usize = 40;

/// A message as this page sends it, serialized to JSON before encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChatMessage {
    Text {
        nick: String,
        /// Send time in milliseconds since the Unix epoch, by the sender's clock.
        sent: u64,
        text: String,
    },
}

/// What a decrypted plaintext turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Message(ChatMessage),
    /// Text that is not one of our messages, shown as it is.
    Plain(String),
    /// JSON that claims to be a message but does not match any known type.
    Invalid {
        reason: String,
    },
}

impl Received {
    /// Classifies a decrypted plaintext.
    pub fn classify(plaintext: String) -> Self {
        let looks_like_ours =
            plaintext.trim_start().starts_with('{') && plaintext.contains("\"type\"");
        if !looks_like_ours {
            return Self::Plain(plaintext);
        }
        match serde_json::from_str::<ChatMessage>(&plaintext) {
            Ok(message) => Self::Message(message.normalized()),
            Err(e) => Self::Invalid {
                reason: e.to_string(),
            },
        }
    }
}

impl ChatMessage {
    /// Cuts fields to the lengths the page shows.
    fn normalized(self) -> Self {
        match self {
            Self::Text { nick, sent, text } => Self::Text {
                nick: nick.chars().take(MAX_NICK_CHARS).collect(),
                sent,
                text,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_message_round_trips() {
        let message = ChatMessage::Text {
            nick: "ada".into(),
            sent: 1,
            text: "<b>hi</b>".into(),
        };
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(Received::classify(json), Received::Message(message));
    }

    #[test]
    fn foreign_plaintext_is_plain() {
        assert_eq!(
            Received::classify("hello".into()),
            Received::Plain("hello".into())
        );
    }

    #[test]
    fn unknown_type_is_invalid() {
        let received = Received::classify(r#"{"type":"video","nick":"x"}"#.into());
        assert!(matches!(received, Received::Invalid { .. }));
    }
}
