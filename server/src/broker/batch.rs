//! The frames one subscriber's connection writes at its next write. A feed appends them, and
//! the connection writes them with one vectored write and then clears the batch.
//!
//! A frame is a [`Bytes`] handle to an encoding shared by every subscriber of a channel, so
//! filling a batch copies no payload. A batch has limits in frames and bytes, so that one write
//! stays below the kernel's limit on I/O vectors and a subscriber that is far behind still
//! takes turns with the others.

use bytes::Bytes;

/// Maximum frames in one batch, below Linux's `IOV_MAX` of 1024 with room for the chunk
/// framing around them.
pub const MAX_BATCH_FRAMES: usize = 256;

/// Bytes after which a batch takes no more frames. One frame may cross it, so a frame larger
/// than this still goes out alone.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Frames waiting to be written to one connection, with the counts the delivery figures need.
#[derive(Debug, Default)]
pub struct Batch {
    frames: Vec<Bytes>,
    bytes: usize,
    events: usize,
}

impl Batch {
    /// Creates an empty batch; it allocates on the first push.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns whether another frame may be added.
    pub fn has_room(&self) -> bool {
        self.frames.len() < MAX_BATCH_FRAMES && self.bytes < MAX_BATCH_BYTES
    }

    /// Adds a published event's frame.
    pub fn push_event(&mut self, frame: Bytes) {
        self.events += 1;
        self.push_control(frame);
    }

    /// Adds a frame the relay generated itself: a count, keepalive, retry hint or notice.
    pub fn push_control(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    /// Returns the frames in the order they are to be written.
    pub fn frames(&self) -> &[Bytes] {
        &self.frames
    }

    /// Returns whether the batch has no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Returns the number of published events among the frames.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Returns the bytes of all frames.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Removes every frame, keeping the allocation for the next batch.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.events = 0;
    }

    /// Takes the frames out, leaving the batch empty and without an allocation.
    pub fn take_frames(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        self.events = 0;
        std::mem::take(&mut self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_counts_events_and_bytes() {
        let mut batch = Batch::new();
        batch.push_event(Bytes::from_static(b"id: 1\ndata: x\n\n"));
        batch.push_control(Bytes::from_static(b": keepalive\n\n"));
        assert_eq!(batch.events(), 1);
        assert_eq!(batch.bytes(), 15 + 13);
        assert_eq!(batch.frames().len(), 2);
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.bytes(), 0);
    }

    #[test]
    fn batch_full_at_either_limit() {
        let mut by_count = Batch::new();
        for _ in 0..MAX_BATCH_FRAMES {
            assert!(by_count.has_room());
            by_count.push_control(Bytes::from_static(b"x"));
        }
        assert!(!by_count.has_room());

        let mut by_size = Batch::new();
        by_size.push_event(Bytes::from(vec![b'x'; MAX_BATCH_BYTES]));
        assert!(!by_size.has_room());
    }
}
