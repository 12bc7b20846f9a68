//! The few pieces of an HTTP/1.1 client that the load generator needs: response heads parsed
//! with `httparse`, and body framing by chunked encoding, `Content-Length` or connection close.
//!
//! A hand-written client keeps each subscriber to one socket, one task and small buffers, lets
//! a stalled reader stop reading its socket for real, and names each failure precisely.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header fields parsed in a response head.
const MAX_HEADERS: usize = 32;

/// Error from reading an HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),

    #[error("the server closed the connection before a complete response head")]
    ClosedBeforeHead,

    #[error("the response head exceeds {MAX_HEAD} bytes")]
    HeadTooLarge,

    #[error("invalid response head: {0}")]
    InvalidHead(httparse::Error),

    #[error("invalid Content-Length {value:?}")]
    InvalidContentLength { value: String },

    #[error("invalid chunked body encoding at byte {byte:#04x}")]
    InvalidChunk { byte: u8 },

    #[error("the chunk size does not fit in 64 bits")]
    ChunkTooLarge,
}

/// The way the end of a response body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    /// The body lasts until the server closes the connection (nchan streams this way).
    UntilClose,
}

/// The parts of a response head that the load generator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub content_type: Option<String>,
    pub framing: Framing,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Reads a response head from `stream`.
///
/// `buffer` collects the bytes read; on return its first `consumed` bytes are the head and
/// the rest is the start of the body.
pub async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<(ResponseHead, usize), HttpError> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(parsed) = parse_head(buffer)? {
            return Ok(parsed);
        }
        if buffer.len() >= MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        let want = chunk.len().min(MAX_HEAD - buffer.len());
        let read = stream.read(&mut chunk[..want]).await?;
        if read == 0 {
            return Err(HttpError::ClosedBeforeHead);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Parses a complete head from the start of `bytes`, or returns `None` if more is needed.
fn parse_head(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(bytes).map_err(HttpError::InvalidHead)? {
        httparse::Status::Complete(consumed) => consumed,
        httparse::Status::Partial => return Ok(None),
    };
    // httparse sets the code whenever it returns Complete.
    let status = response.code.unwrap_or(0);

    let mut content_type = None;
    let mut length = None;
    let mut chunked = false;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        if header.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = value
                .parse::<u64>()
                .map_err(|_| HttpError::InvalidContentLength {
                    value: value.chars().take(32).collect(),
                })?;
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }

    // Chunked encoding takes precedence over Content-Length (RFC 9112, section 6.3).
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(length)) => Framing::Length(length),
        (false, None) if status == 204 || status == 304 => Framing::Length(0),
        (false, None) => Framing::UntilClose,
    };
    let close = close || framing == Framing::UntilClose;
    let head = ResponseHead {
        status,
        content_type,
        framing,
        close,
    };
    Ok(Some((head, consumed)))
}

/// Decodes a response body from the bytes that follow its head.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line: the size so far, and whether an extension started.
    ChunkSize {
        size: u64,
        extension: bool,
    },
    ChunkSizeLf {
        size: u64,
    },
    ChunkData {
        remaining: u64,
    },
    ChunkDataCr,
    ChunkDataLf,
    /// Reading trailer lines after the last chunk; `blank` while the line is still empty.
    Trailer {
        blank: bool,
    },
    Length {
        remaining: u64,
    },
    UntilClose,
    Done,
}

impl BodyDecoder {
    /// Creates a decoder for a body with `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::ChunkSize {
                size: 0,
                extension: false,
            },
            Framing::Length(0) => State::Done,
            Framing::Length(remaining) => State::Length { remaining },
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Returns whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, passing each run of body bytes to `on_data`. Returns the number of
    /// bytes of `input` used, which is less than its length only once the body is complete.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, HttpError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Done => break,
                State::UntilClose => {
                    on_data(&input[at..]);
                    at = input.len();
                }
                State::Length { remaining } | State::ChunkData { remaining } => {
                    let take = remaining.min((input.len() - at) as u64) as usize;
                    on_data(&input[at..at + take]);
                    at += take;
                    let remaining = remaining - take as u64;
                    self.state = match (self.state, remaining) {
                        (State::Length { .. }, 0) => State::Done,
                        (State::Length { .. }, _) => State::Length { remaining },
                        (_, 0) => State::ChunkDataCr,
                        (_, _) => State::ChunkData { remaining },
                    };
                }
                _ => {
                    self.state = self.step_framing_byte(input[at])?;
                    at += 1;
                }
            }
        }
        Ok(at)
    }

    /// Advances the chunked-encoding state by one byte outside chunk data.
    fn step_framing_byte(&self, byte: u8) -> Result<State, HttpError> {
        let invalid = HttpError::InvalidChunk { byte };
        let next = match (self.state, byte) {
            (State::ChunkSize { size, .. }, b'\r') => State::ChunkSizeLf { size },
            (State::ChunkSize { size, .. }, b'\n') | (State::ChunkSizeLf { size }, b'\n') => {
                if size == 0 {
                    State::Trailer { blank: true }
                } else {
                    State::ChunkData { remaining: size }
                }
            }
            (State::ChunkSize { size, .. }, b';' | b' ' | b'\t') => State::ChunkSize {
                size,
                extension: true,
            },
            (
                State::ChunkSize {
                    extension: true,
                    size,
                },
                _,
            ) => State::ChunkSize {
                size,
                extension: true,
            },
            (
                State::ChunkSize {
                    size,
                    extension: false,
                },
                _,
            ) => {
                let digit = (byte as char).to_digit(16).ok_or(invalid)?;
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(digit)))
                    .ok_or(HttpError::ChunkTooLarge)?;
                State::ChunkSize {
                    size,
                    extension: false,
                }
            }
            (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
            (State::ChunkDataCr | State::ChunkDataLf, b'\n') => State::ChunkSize {
                size: 0,
                extension: false,
            },
            (State::Trailer { blank: true }, b'\n') => State::Done,
            (State::Trailer { blank }, b'\r') => State::Trailer { blank },
            (State::Trailer { .. }, b'\n') => State::Trailer { blank: true },
            (State::Trailer { .. }, _) => State::Trailer { blank: false },
            _ => return Err(invalid),
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> ResponseHead {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn head_framing_follows_headers() {
        let actix = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n",
        );
        assert_eq!(actix.status, 200);
        assert_eq!(actix.framing, Framing::Chunked);
        assert_eq!(actix.content_type.as_deref(), Some("text/event-stream"));
        assert!(!actix.close);

        let nchan = head(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(nchan.framing, Framing::UntilClose);
        assert!(nchan.close);

        let accepted = head("HTTP/1.1 202 Accepted\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(accepted.framing, Framing::Length(12));
        let closing =
            head("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(closing.close);
    }

    #[test]
    fn head_parse_waits_for_blank_line() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(parse_head(&bytes[..20]).unwrap().is_none());
        let (_, consumed) = parse_head(bytes).unwrap().unwrap();
        assert_eq!(&bytes[consumed..], b"ok");
    }

    #[test]
    fn head_rejects_bad_length() {
        let result = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            result,
            Err(HttpError::InvalidContentLength { .. })
        ));
    }

    fn decode_in_pieces(framing: Framing, body: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut decoder = BodyDecoder::new(framing);
        let mut out = Vec::new();
        for part in body.chunks(piece) {
            let used = decoder
                .decode(part, |data| out.extend_from_slice(data))
                .unwrap();
            assert_eq!(used, part.len());
        }
        (out, decoder.is_done())
    }

    #[test]
    fn chunked_body_decodes_in_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        for piece in [1, 2, 3, body.len()] {
            let (out, done) = decode_in_pieces(Framing::Chunked, body, piece);
            assert_eq!(out, b"hello, world", "piece {piece}");
            assert!(done, "piece {piece}");
        }
    }

    #[test]
    fn chunked_stream_stays_open() {
        let (out, done) = decode_in_pieces(Framing::Chunked, b"9\r\ndata: x\n\n\r\n", 4);
        assert_eq!(out, b"data: x\n\n");
        assert!(!done);
    }

    #[test]
    fn chunked_rejects_bad_size() {
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let result = decoder.decode(b"zz\r\n", |_| {});
        assert!(matches!(
            result,
            Err(HttpError::InvalidChunk { byte: b'z' })
        ));

        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let result = decoder.decode(b"10000000000000000\r\n", |_| {});
        assert!(matches!(result, Err(HttpError::ChunkTooLarge)));

        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let result = decoder.decode(b"1\r\nabc", |_| {});
        assert!(matches!(
            result,
            Err(HttpError::InvalidChunk { byte: b'b' })
        ));
    }

    #[test]
    fn length_body_stops_at_length() {
        let mut decoder = BodyDecoder::new(Framing::Length(3));
        let mut out = Vec::new();
        let used = decoder
            .decode(b"abcdef", |d| out.extend_from_slice(d))
            .unwrap();
        assert_eq!(used, 3);
        assert_eq!(out, b"abc");
        assert!(decoder.is_done());
    }

    #[test]
    fn until_close_takes_everything() {
        let (out, done) = decode_in_pieces(Framing::UntilClose, b": hi\n\ndata: 1\n\n", 5);
        assert_eq!(out, b": hi\n\ndata: 1\n\n");
        assert!(!done);
    }
}
