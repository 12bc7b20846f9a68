//! The response to a subscription served directly: the head, then the broker's frames in
//! HTTP/1.1 chunks, each batch of frames in one vectored write.
//!
//! The writer owns the socket and keeps no buffer of its own while it is idle. Frames are
//! gathered into a batch that belongs to the worker thread and written at once. Only what
//! the socket does not take is kept, as handles to the shared frames, until it can be written.
//! While that rest waits, no more frames are gathered. So a subscriber whose socket stays full
//! falls behind until the broker drops it, and the writer then closes the connection.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::iter;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::broker::batch::MAX_BATCH_FRAMES;
use crate::broker::{Batch, End, Gathered, Subscription};
use crate::limits::StreamPermit;

/// Bytes a client may send after its request head before the relay closes the stream. A
/// subscriber has nothing to send, but a little is tolerated, as from a client that pipelines.
const MAX_INPUT_AFTER_HEAD: usize = 4096;

/// The slices of one vectored write. Most writes carry one frame between the chunk-size line
/// and the chunk's CRLF, and writes of up to six frames fit on the stack. Only a write of more
/// queued frames allocates. Filling a fixed array for the largest batch instead cost about 700
/// instructions per write under callgrind.
type Slices<'a> = SmallVec<[IoSlice<'a>; 8]>;

/// The end of a chunked body: a chunk of length zero and no trailers.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

thread_local! {
    /// The batch each poll gathers into. Every poll leaves it empty, so the frames of one
    /// writer never reach another, and its allocation is reused by all writers of the
    /// worker thread.
    static BATCH: RefCell<Batch> = RefCell::new(Batch::new());
}

/// Future that writes one subscriber's event stream until it ends, the client leaves, or the
/// subscriber is dropped as stalled. It completes when the connection can be closed.
pub struct Writer {
    socket: TcpStream,
    subscription: Subscription,
    /// Bytes gathered but not yet written, in order. It is empty in the common case.
    unsent: Vec<Bytes>,
    /// Set once the last chunk is in `unsent`: the stream ends after it.
    finishing: bool,
    /// Bytes received after the request head.
    input: usize,
    _permit: StreamPermit,
}

impl Writer {
    /// Starts writing on `socket`, from whose input the request head was already consumed,
    /// with `opening` (the response head and first chunk) as the first bytes.
    pub fn new(
        socket: TcpStream,
        subscription: Subscription,
        opening: Bytes,
        permit: StreamPermit,
    ) -> Self {
        Self {
            socket,
            subscription,
            unsent: vec![opening],
            finishing: false,
            input: 0,
            _permit: permit,
        }
    }

    /// Reads and drops what the client sends, returning `true` once the connection is closed
    /// by the client or failed, or the client sent too much.
    fn poll_input_closed(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            // Left uninitialized, because what the client sends is dropped unread.
            let mut storage = [MaybeUninit::<u8>::uninit(); 512];
            let mut buffer = ReadBuf::uninit(&mut storage);
            match Pin::new(&mut self.socket).poll_read(cx, &mut buffer) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(())) if buffer.filled().is_empty() => return true,
                Poll::Ready(Ok(())) => {
                    self.input += buffer.filled().len();
                    if self.input > MAX_INPUT_AFTER_HEAD {
                        return true;
                    }
                }
            }
        }
    }

    /// Writes `unsent` until it is empty or the socket is full.
    fn poll_write_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent.is_empty() {
            let written = {
                let parts = self.unsent.iter().take(MAX_BATCH_FRAMES + 2);
                let slices: Slices<'_> = parts.map(|part| IoSlice::new(part)).collect();
                ready!(Pin::new(&mut self.socket).poll_write_vectored(cx, &slices))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            advance(&mut self.unsent, written);
        }
        self.unsent = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Writes `batch` as one chunk. Returns `Ready` when the socket took all of it, and keeps
    /// what it did not take in `unsent`.
    fn poll_write_batch(&mut self, cx: &mut Context<'_>, batch: &Batch) -> Poll<io::Result<()>> {
        let chunk_size = ChunkSize::new(batch.bytes());
        let frames = batch.frames().iter().map(|frame| &frame[..]);
        let slices: Slices<'_> = iter::once(chunk_size.as_bytes())
            .chain(frames)
            .chain(iter::once(&b"\r\n"[..]))
            .map(IoSlice::new)
            .collect();
        let total = chunk_size.as_bytes().len() + batch.bytes() + 2;

        let written = match Pin::new(&mut self.socket).poll_write_vectored(cx, &slices) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(written)) => written,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => 0,
        };
        if written == total {
            return Poll::Ready(Ok(()));
        }

        // Keep the rest, as handles to the same frames.
        let mut rest = Vec::with_capacity(slices.len());
        rest.push(Bytes::copy_from_slice(chunk_size.as_bytes()));
        rest.extend(batch.frames().iter().cloned());
        rest.push(Bytes::from_static(b"\r\n"));
        advance(&mut rest, written);
        self.unsent = rest;
        Poll::Pending
    }
}

impl Future for Writer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.poll_input_closed(cx) {
            return Poll::Ready(());
        }
        loop {
            if !this.unsent.is_empty() {
                match this.poll_write_unsent(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {
                        // Waiting for the socket: stay registered with the broker too, to
                        // learn if the subscriber is dropped as stalled meanwhile.
                        return match this.subscription.poll_dropped(cx) {
                            Poll::Ready(()) => Poll::Ready(()),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                }
            }
            if this.finishing {
                return Poll::Ready(());
            }

            let step = BATCH.with_borrow_mut(|batch| {
                let gathered = this.subscription.poll_frames(cx, batch);
                let step = match gathered {
                    Poll::Ready(Ok(gathered)) => match this.poll_write_batch(cx, batch) {
                        Poll::Ready(Ok(())) if gathered == Gathered::All => Step::Wait,
                        Poll::Ready(Ok(())) | Poll::Pending => Step::Continue,
                        Poll::Ready(Err(_)) => Step::Close,
                    },
                    Poll::Ready(Err(End::Closed)) => {
                        this.unsent.push(Bytes::from_static(LAST_CHUNK));
                        this.finishing = true;
                        Step::Continue
                    }
                    Poll::Ready(Err(End::Overflow)) => Step::Close,
                    Poll::Pending => Step::Wait,
                };
                batch.clear();
                step
            });
            match step {
                Step::Continue => {}
                // The feed registered this task for the next frames.
                Step::Wait => return Poll::Pending,
                Step::Close => return Poll::Ready(()),
            }
        }
    }
}

/// The writer's next step after gathering.
enum Step {
    /// Loop: write what is left, or gather again.
    Continue,
    /// Nothing is left to write and the broker will wake the task.
    Wait,
    Close,
}

/// Drops the first `written` bytes from `parts`.
fn advance(parts: &mut Vec<Bytes>, mut written: usize) {
    let done = parts
        .iter()
        .take_while(|part| {
            if written >= part.len() {
                written -= part.len();
                true
            } else {
                false
            }
        })
        .count();
    parts.drain(..done);
    if let Some(first) = parts.first_mut() {
        *first = first.slice(written..);
    }
}

/// The line that opens a chunk: its size in hexadecimal digits, then CRLF.
struct ChunkSize {
    bytes: [u8; 18],
    len: usize,
}

impl ChunkSize {
    /// Writes the hex digits by hand rather than through `write!`, which runs the formatting
    /// machinery once per batch.
    fn new(size: usize) -> Self {
        const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        // A usize has at most 64 bits, so at most 16 hex digits, and CRLF makes 18 bytes.
        let mut bytes = [0u8; 18];
        let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
        for (index, byte) in bytes[..digits].iter_mut().enumerate() {
            let shift = 4 * (digits - 1 - index);
            *byte = HEX_DIGITS[(size >> shift) & 0xF];
        }
        bytes[digits..digits + 2].copy_from_slice(b"\r\n");
        Self {
            bytes,
            len: digits + 2,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_is_uppercase_hex() {
        assert_eq!(ChunkSize::new(28).as_bytes(), b"1C\r\n");
        assert_eq!(ChunkSize::new(0).as_bytes(), b"0\r\n");
        assert_eq!(
            ChunkSize::new(usize::MAX).as_bytes(),
            b"FFFFFFFFFFFFFFFF\r\n"
        );
        for size in [
            1,
            15,
            16,
            255,
            256,
            4095,
            4096,
            0x1234_5678,
            usize::MAX >> 1,
        ] {
            let expected = format!("{size:X}\r\n");
            assert_eq!(ChunkSize::new(size).as_bytes(), expected.as_bytes());
        }
    }

    #[test]
    fn advance_drops_written_bytes() {
        let mut parts = vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ];
        advance(&mut parts, 3);
        assert_eq!(parts, [Bytes::from_static(b"de"), Bytes::from_static(b"f")]);
        advance(&mut parts, 0);
        assert_eq!(parts.len(), 2);
        advance(&mut parts, 3);
        assert!(parts.is_empty());
    }
}
