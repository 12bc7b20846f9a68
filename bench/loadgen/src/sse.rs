//! An incremental parser of server-sent event streams (`text/event-stream`), as an
//! EventSource reads them: fields `data`, `event`, `id` and `retry`, comment lines, and line
//! ends of LF, CRLF or a lone CR, with a line split anywhere across reads.

/// Maximum length of a line and of an event's data, in bytes. A relay's events are a few
/// hundred bytes, and the bound keeps a misbehaving server from growing a buffer forever.
pub const MAX_LINE: usize = 64 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; empty for the default type, `message`.
    pub event_type: &'a [u8],
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
    /// The last event id set by an `id:` field on this stream, if any.
    pub id: Option<&'a [u8]>,
}

/// Error from parsing an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event stream line or event exceeds {MAX_LINE} bytes")]
    TooLong,
}

/// Parser state of one stream.
#[derive(Debug, Default)]
pub struct EventParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    data: Vec<u8>,
    event_type: Vec<u8>,
    last_id: Option<Vec<u8>>,
    /// The previous input ended in CR, so an LF that starts the next one ends no line.
    skip_lf: bool,
}

impl EventParser {
    /// Creates a parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `input`, calling `on_event` for each event it completes.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), SseError> {
        while !input.is_empty() {
            if std::mem::take(&mut self.skip_lf) && input[0] == b'\n' {
                input = &input[1..];
                continue;
            }

            let Some(end) = input.iter().position(|b| *b == b'\n' || *b == b'\r') else {
                if self.partial.len() + input.len() > MAX_LINE {
                    return Err(SseError::TooLong);
                }
                self.partial.extend_from_slice(input);
                return Ok(());
            };
            self.skip_lf = input[end] == b'\r';

            if self.partial.is_empty() {
                self.process_line(&input[..end], &mut on_event)?;
            } else {
                if self.partial.len() + end > MAX_LINE {
                    return Err(SseError::TooLong);
                }
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&input[..end]);
                let result = self.process_line(&line, &mut on_event);
                // Keep the allocation for the next split line.
                line.clear();
                self.partial = line;
                result?;
            }
            input = &input[end + 1..];
        }
        Ok(())
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }

        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > MAX_LINE {
                    return Err(SseError::TooLong);
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            // An id containing NUL is ignored, as EventSource does.
            b"id" if !value.contains(&0) => self.last_id = Some(value.to_vec()),
            // `retry` only matters to a client that reconnects; unknown fields are ignored.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if !self.data.is_empty() {
            let data = &self.data[..self.data.len() - 1];
            on_event(Event {
                event_type: &self.event_type,
                data,
                id: self.last_id.as_deref(),
            });
        }
        self.data.clear();
        self.event_type.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned copy of an [`Event`], for comparing.
    #[derive(Debug, PartialEq, Eq)]
    struct Owned {
        event_type: String,
        data: String,
        id: Option<String>,
    }

    fn parse_in_chunks(stream: &[u8], chunk: usize) -> Vec<Owned> {
        let mut parser = EventParser::new();
        let mut events = Vec::new();
        for piece in stream.chunks(chunk) {
            parser
                .feed(piece, |event| {
                    events.push(Owned {
                        event_type: String::from_utf8_lossy(event.event_type).into(),
                        data: String::from_utf8_lossy(event.data).into(),
                        id: event.id.map(|id| String::from_utf8_lossy(id).into()),
                    })
                })
                .unwrap();
        }
        events
    }

    fn owned(event_type: &str, data: &str, id: Option<&str>) -> Owned {
        Owned {
            event_type: event_type.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn parser_reads_relay_streams() {
        let stream = b"retry: 2000\n\nevent: count\ndata: count=1\n\n: keepalive\n\n\
            data: {\"a\":1}\n\nid: 17\ndata: {\"b\":2}\n\n";
        let expected = vec![
            owned("count", "count=1", None),
            owned("", "{\"a\":1}", None),
            owned("", "{\"b\":2}", Some("17")),
        ];
        for chunk in [1, 2, 3, 7, stream.len()] {
            assert_eq!(parse_in_chunks(stream, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn parser_handles_every_line_end() {
        let stream = b": hi\r\n\r\nid: 1:0\r\ndata: x\r\rdata: y\ndata: z\n\n";
        let expected = vec![owned("", "x", Some("1:0")), owned("", "y\nz", Some("1:0"))];
        for chunk in [1, 2, 5, stream.len()] {
            assert_eq!(parse_in_chunks(stream, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn parser_skips_events_without_data() {
        let stream = b"event: count\n\nid\ndata\n\n";
        assert_eq!(parse_in_chunks(stream, 4), vec![owned("", "", Some(""))]);
    }

    #[test]
    fn parser_rejects_endless_line() {
        let mut parser = EventParser::new();
        let long = vec![b'a'; MAX_LINE];
        assert_eq!(parser.feed(&long, |_| {}), Ok(()));
        assert_eq!(parser.feed(b"a", |_| {}), Err(SseError::TooLong));
    }

    #[test]
    fn parser_rejects_endless_event() {
        let mut parser = EventParser::new();
        let line = [b"data: ".as_slice(), &[b'a'; 1000], b"\n"].concat();
        let mut result = Ok(());
        for _ in 0..MAX_LINE / 1000 + 1 {
            result = parser.feed(&line, |_| panic!("no blank line was sent"));
        }
        assert_eq!(result, Err(SseError::TooLong));
    }
}
