//! Encoding of server-sent event frames (the `text/event-stream` format).
//!
//! Each function returns one complete frame, ending in a blank line, ready to be written as is.
//! Callers pass data that contains no line breaks; [`data`] checks it, because a raw `\n` or
//! `\r` would end the event early and let the rest of the line inject fields of its own.

use bytes::{BufMut, Bytes, BytesMut};

/// Error from [`data`]: the payload contains a line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event data must be a single line, but contains a line break at byte {position}")]
pub struct LineBreakInData {
    pub position: usize,
}

/// Encodes an unnamed event: `data: <payload>`.
pub fn data(payload: &[u8]) -> Result<Bytes, LineBreakInData> {
    if let Some(position) = payload.iter().position(|b| *b == b'\n' || *b == b'\r') {
        return Err(LineBreakInData { position });
    }
    let mut frame = BytesMut::with_capacity(payload.len() + 8);
    frame.put_slice(b"data: ");
    frame.put_slice(payload);
    frame.put_slice(b"\n\n");
    Ok(frame.freeze())
}

/// Encodes a subscriber-count event: `event: count` with `data: count=N`.
pub fn count(subscribers: usize) -> Bytes {
    Bytes::from(format!("event: count\ndata: count={subscribers}\n\n"))
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
    fn data_frame_is_one_line() {
        assert_eq!(&data(b"{\"a\":1}").unwrap()[..], b"data: {\"a\":1}\n\n");
    }

    #[test]
    fn data_rejects_line_breaks() {
        assert_eq!(data(b"a\nb"), Err(LineBreakInData { position: 1 }));
        assert_eq!(data(b"ab\r"), Err(LineBreakInData { position: 2 }));
    }

    #[test]
    fn count_frame_is_named() {
        assert_eq!(&count(3)[..], b"event: count\ndata: count=3\n\n");
    }
}
