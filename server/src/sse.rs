//! Encoding of server-sent event frames (the `text/event-stream` format).
//!
//! Each function returns one complete frame, ending in a blank line, ready to be written as is.
//! Callers pass data that contains no line breaks; [`event`] checks it, because a raw `\n` or
//! `\r` would end the event early and let the rest of the line inject fields of its own.

use bytes::{BufMut, Bytes, BytesMut};

/// Error from [`data`]: the payload contains a line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event data must be a single line, but contains a line break at byte {position}")]
pub struct LineBreakInData {
    pub position: usize,
}

/// Encodes an unnamed event with an id: `id: <id>` then `data: <payload>`.
///
/// `id` is one of the relay's event ids, which contain only ASCII letters, digits and `-`.
pub fn event(id: &str, payload: &[u8]) -> Result<Bytes, LineBreakInData> {
    if let Some(position) = memchr::memchr2(b'\n', b'\r', payload) {
        return Err(LineBreakInData { position });
    }
    debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let mut frame = BytesMut::with_capacity(id.len() + payload.len() + 13);
    frame.put_slice(b"id: ");
    frame.put_slice(id.as_bytes());
    frame.put_slice(b"\ndata: ");
    frame.put_slice(payload);
    frame.put_slice(b"\n\n");
    Ok(frame.freeze())
}

/// Encodes a subscriber-count event: `event: count` with `data: count=N`.
pub fn count(subscribers: usize) -> Bytes {
    Bytes::from(format!("event: count\ndata: count={subscribers}\n\n"))
}

/// Encodes the notice that some events may be missing after a reconnect:
/// `event: reset` with `data: reason=<reason>`.
pub fn reset(reason: ResetReason) -> Bytes {
    Bytes::from(format!(
        "event: reset\ndata: reason={}\n\n",
        reason.as_str()
    ))
}

/// The reason a reconnecting subscriber cannot be given exactly the events it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The last event id is not one this relay process issued on this channel, for example
    /// one from before a restart, or the channel's history expired.
    UnknownId,
    /// The id is from this channel, but events after it have already left the history.
    TooOld,
}

impl ResetReason {
    /// Returns the reason as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownId => "unknown-id",
            Self::TooOld => "too-old",
        }
    }
}

/// Encodes the reconnection delay hint that opens every stream.
pub fn retry(milliseconds: u64) -> Bytes {
    Bytes::from(format!("retry: {milliseconds}\n\n"))
}

/// A comment frame that keeps idle connections and the proxies between them open.
pub const KEEPALIVE: Bytes = Bytes::from_static(b": keepalive\n\n");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frame_has_id_and_data() {
        assert_eq!(
            &event("e1-7", b"{\"a\":1}").unwrap()[..],
            b"id: e1-7\ndata: {\"a\":1}\n\n"
        );
    }

    #[test]
    fn event_rejects_line_breaks() {
        assert_eq!(event("1", b"a\nb"), Err(LineBreakInData { position: 1 }));
        assert_eq!(event("1", b"ab\r"), Err(LineBreakInData { position: 2 }));
    }

    #[test]
    fn reset_frame_names_reason() {
        assert_eq!(
            &reset(ResetReason::TooOld)[..],
            b"event: reset\ndata: reason=too-old\n\n"
        );
    }

    #[test]
    fn count_frame_is_named() {
        assert_eq!(&count(3)[..], b"event: count\ndata: count=3\n\n");
    }
}
