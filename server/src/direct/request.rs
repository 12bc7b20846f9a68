//! The next request of a plain-HTTP connection, looked at without consuming it, to tell
//! whether the relay serves it itself.
//!
//! Two kinds qualify, over HTTP/1.1 only. One is a plain `GET /sub/<channel>` (a valid channel
//! id, no body, no upgrade, a query string that parses). The other is a `POST /pub/<channel>`
//! whose `application/json` body has a `Content-Length`, has fully arrived, and is a valid
//! envelope.
//! A head that is malformed, too large, or not complete by the deadline is rejected here, with
//! a one-line message, because actix-web sends those errors with an empty body. Anything else goes
//! to actix-web untouched, which serves it or responds with the usual error.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::channel::ChannelId;
use crate::client::TrustedProxies;
use crate::envelope;
use crate::routes::events::last_event_id;

/// Maximum request head, in bytes. A longer one gets 431. A browser's request is well under
/// 2 KiB, and nginx's default buffers for a proxied head are 8 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Maximum publish body served here, in bytes. Larger ones, up to `--max-publish-bytes`, go
/// to actix-web.
pub const MAX_DIRECT_BODY: usize = 64 * 1024;

/// Maximum bytes one look copies out of the socket: a head and a body.
const MAX_PEEK_BYTES: usize = MAX_HEAD_BYTES + MAX_DIRECT_BODY;

/// Maximum header lines looked at. A request with more goes to actix-web, which accepts up
/// to 96.
const MAX_HEADERS: usize = 32;

/// First and maximum pause before looking again at a request that is not complete yet. A
/// peek that returns data does not wait for more, so the wait between looks is a timer.
const FIRST_RETRY: Duration = Duration::from_millis(1);
const MAX_RETRY: Duration = Duration::from_millis(50);

thread_local! {
    /// The buffer each look copies into, reused by every connection of the worker thread.
    static PEEK_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A request the relay serves itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Subscribe(SubscribeRequest),
    Publish(PublishRequest),
}

/// `GET /sub/<channel>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Length of the request in bytes, still waiting in the socket.
    pub len: usize,
    pub channel: ChannelId,
    /// The `Last-Event-ID` header, or else the `lastEventId` query parameter.
    pub last_event_id: Option<String>,
    /// The client address after trusted proxies, when the peer address is known.
    pub client: Option<IpAddr>,
}

/// `POST /pub/<channel>` with a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Length of the request, head and body, in bytes, still waiting in the socket.
    pub len: usize,
    pub channel: ChannelId,
    /// The envelope, checked and re-encoded as one line of JSON.
    pub event: Bytes,
    /// The client address after trusted proxies, when the peer address is known.
    pub client: Option<IpAddr>,
    /// Whether the client sent `Connection: close`.
    pub close: bool,
}

/// The outcome of waiting for a connection's next request.
#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    Request(Request),
    /// A request that actix-web serves.
    Other,
    /// A request rejected with an error response, after which the connection closes.
    Rejected(Rejection),
    /// The connection was closed or failed before a request began.
    Closed,
    /// No byte of a request arrived by the deadline.
    Idle,
    /// The head of a publish arrived, but not all of its body by the deadline. actix-web
    /// reads the rest, with the body timeouts of its route.
    BodyPending,
}

/// Reason a request is rejected before actix-web reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not an HTTP/1.x request head.
    Malformed(httparse::Error),
    /// The head passed [`MAX_HEAD_BYTES`] without ending.
    HeadTooLarge,
    /// The head had begun but did not end by the deadline.
    HeadTimedOut,
    /// The head has both `Content-Length` and `Transfer-Encoding`, so servers and proxies can
    /// disagree on where the body ends.
    LengthAndTransferEncoding,
    /// The head has `Content-Length` values that differ.
    DifferingLengths,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
enum Inspection {
    Request(Request),
    /// The head has not ended yet.
    PartialHead,
    /// The head of a publish served here has ended, and its body not yet.
    PartialBody,
    Other,
    Rejected(Rejection),
}

/// Settings a look needs.
pub struct Rules<'a> {
    pub proxies: &'a TrustedProxies,
    /// `--max-publish-bytes`: a larger body goes to actix-web, which rejects it.
    pub max_publish_bytes: usize,
}

/// Waits until `deadline` for the connection's next complete request, without consuming it.
pub async fn peek(
    stream: &TcpStream,
    peer: Option<SocketAddr>,
    rules: &Rules<'_>,
    deadline: Instant,
) -> Peeked {
    let mut retry = FIRST_RETRY;
    let mut waiting = Peeked::Idle;
    loop {
        let look = std::future::poll_fn(|cx| {
            PEEK_BUFFER.with_borrow_mut(|buffer| {
                buffer.reserve(MAX_PEEK_BYTES);
                let mut peeked =
                    ReadBuf::uninit(&mut buffer.spare_capacity_mut()[..MAX_PEEK_BYTES]);
                match stream.poll_peek(cx, &mut peeked) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(_)) | Poll::Ready(Ok(0)) => Poll::Ready(None),
                    Poll::Ready(Ok(_)) => Poll::Ready(Some(inspect(peeked.filled(), peer, rules))),
                }
            })
        });
        match tokio::time::timeout_at(deadline, look).await {
            Err(_) => return waiting,
            Ok(None) => return Peeked::Closed,
            Ok(Some(Inspection::Request(request))) => return Peeked::Request(request),
            Ok(Some(Inspection::Other)) => return Peeked::Other,
            Ok(Some(Inspection::Rejected(rejection))) => return Peeked::Rejected(rejection),
            Ok(Some(Inspection::PartialHead)) => {
                waiting = Peeked::Rejected(Rejection::HeadTimedOut);
            }
            Ok(Some(Inspection::PartialBody)) => waiting = Peeked::BodyPending,
        }
        if Instant::now() + retry >= deadline {
            return waiting;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Looks at the bytes a connection has sent so far.
fn inspect(bytes: &[u8], peer: Option<SocketAddr>, rules: &Rules<'_>) -> Inspection {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Inspection::Rejected(Rejection::HeadTooLarge);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD_BYTES => {
            return Inspection::PartialHead;
        }
        Ok(httparse::Status::Partial) => return Inspection::Rejected(Rejection::HeadTooLarge),
        Err(httparse::Error::TooManyHeaders) => return Inspection::Other,
        Err(error) => return Inspection::Rejected(Rejection::Malformed(error)),
    };
    if let Some(rejection) = ambiguous_length(request.headers) {
        return Inspection::Rejected(rejection);
    }
    let served_here = bytes.starts_with(b"GET /sub/") || bytes.starts_with(b"POST /pub/");
    if !served_here || request.version != Some(1) {
        return Inspection::Other;
    }
    let Some(head) = Head::read(&request) else {
        return Inspection::Other;
    };

    let client = |forwarded: &[&[u8]]| {
        peer.map(|peer| rules.proxies.resolve(peer.ip(), forwarded.iter().copied()))
    };
    if let Some(channel) = head.path.strip_prefix("/sub/") {
        return match subscription(&head, channel, head_len) {
            Some(mut request) => {
                request.client = client(&head.forwarded);
                Inspection::Request(Request::Subscribe(request))
            }
            None => Inspection::Other,
        };
    }
    let Some(channel) = head.path.strip_prefix("/pub/") else {
        return Inspection::Other;
    };
    match publication(&head, channel, &bytes[head_len..], rules) {
        Body::Complete {
            channel,
            event,
            body_len,
        } => Inspection::Request(Request::Publish(PublishRequest {
            len: head_len + body_len,
            channel,
            event,
            client: client(&head.forwarded),
            close: head.close,
        })),
        Body::Partial => Inspection::PartialBody,
        Body::Other => Inspection::Other,
    }
}

/// Returns the rejection for a head whose body length two HTTP parsers could read
/// differently, on any path.
fn ambiguous_length(headers: &[httparse::Header<'_>]) -> Option<Rejection> {
    let mut length: Option<&[u8]> = None;
    let mut differing = false;
    let mut transfer_encoding = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = header.value.trim_ascii();
            differing |= length.is_some_and(|first| first != value);
            length.get_or_insert(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        }
    }
    if length.is_some() && transfer_encoding {
        Some(Rejection::LengthAndTransferEncoding)
    } else if differing {
        Some(Rejection::DifferingLengths)
    } else {
        None
    }
}

/// The parts of a request head the relay uses.
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    last_event_id: Option<&'a [u8]>,
    forwarded: Vec<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    /// `Connection: close`.
    close: bool,
}

impl<'a> Head<'a> {
    /// Collects the parts of a parsed head, or returns `None` for any head the relay leaves to
    /// actix-web: a body in chunks, an upgrade, an `Expect`, or a repeated `Content-Length`.
    fn read(request: &httparse::Request<'_, 'a>) -> Option<Self> {
        let target = request.path?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut head = Head {
            method: request.method?,
            path,
            query,
            last_event_id: None,
            forwarded: Vec::new(),
            content_type: None,
            content_length: None,
            close: false,
        };
        for header in request.headers.iter() {
            let (name, value) = (header.name, header.value);
            if name.eq_ignore_ascii_case("last-event-id") {
                // The first value wins, as with actix-web's `HeaderMap::get`.
                head.last_event_id.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("x-forwarded-for") {
                head.forwarded.push(value);
            } else if name.eq_ignore_ascii_case("content-type") {
                head.content_type.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("content-length") {
                if head.content_length.replace(value).is_some() {
                    return None;
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"upgrade") {
                        return None;
                    }
                    head.close |= token.eq_ignore_ascii_case(b"close");
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                return None;
            }
        }
        Some(head)
    }

    /// Returns the declared body length, 0 without a `Content-Length`, or `None` when the
    /// value is not a plain decimal number that fits in `usize`. A sign, which `str::parse`
    /// accepts, or any other character could make two servers read the framing differently,
    /// so such a request is left to actix-web.
    fn body_len(&self) -> Option<usize> {
        let Some(value) = self.content_length else {
            return Some(0);
        };
        let digits = value.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

/// Returns the subscription a head requests, if this module serves it.
fn subscription(head: &Head<'_>, channel: &str, len: usize) -> Option<SubscribeRequest> {
    if head.method != "GET" || head.body_len() != Some(0) {
        return None;
    }
    let channel = ChannelId::parse(channel).ok()?;
    // An invalid query goes to actix-web, which responds with 400 and the reason.
    let last_event_id = last_event_id(head.last_event_id, head.query).ok()?;
    Some(SubscribeRequest {
        len,
        channel,
        last_event_id,
        client: None,
    })
}

/// The body of a publish, as far as it has arrived.
enum Body {
    Complete {
        channel: ChannelId,
        event: Bytes,
        body_len: usize,
    },
    Partial,
    Other,
}

/// Checks a publish request and its body, `received` being the bytes after the head so far.
fn publication(head: &Head<'_>, channel: &str, received: &[u8], rules: &Rules<'_>) -> Body {
    let Ok(channel) = ChannelId::parse(channel) else {
        return Body::Other;
    };
    if head.method != "POST" {
        return Body::Other;
    }
    let json = head.content_type.is_some_and(|value| {
        let essence = value.split(|b| *b == b';').next().unwrap_or_default();
        essence
            .trim_ascii()
            .eq_ignore_ascii_case(b"application/json")
    });
    let Some(body_len) = head.content_length.and(head.body_len()) else {
        return Body::Other;
    };
    if !json || body_len > rules.max_publish_bytes || body_len > MAX_DIRECT_BODY {
        return Body::Other;
    }
    if received.len() < body_len {
        return Body::Partial;
    }
    match envelope::check_and_compact(&received[..body_len]) {
        Ok(event) => Body::Complete {
            channel,
            event,
            body_len,
        },
        Err(_) => Body::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE: &str = r#"{"iv":"AA==","salt":"AA==","ct":"AA=="}"#;

    fn look(request: &str) -> Inspection {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let rules = Rules {
            proxies: &proxies,
            max_publish_bytes: 1024,
        };
        inspect(
            request.as_bytes(),
            Some("10.0.0.1:4000".parse().unwrap()),
            &rules,
        )
    }

    fn subscribe(request: &str) -> SubscribeRequest {
        match look(request) {
            Inspection::Request(Request::Subscribe(subscription)) => subscription,
            other => panic!("{request:?} is not a subscription: {other:?}"),
        }
    }

    fn publish(request: &str) -> PublishRequest {
        match look(request) {
            Inspection::Request(Request::Publish(publication)) => publication,
            other => panic!("{request:?} is not a publish: {other:?}"),
        }
    }

    fn post(extra_headers: &str, body: &str) -> String {
        format!(
            "POST /pub/room HTTP/1.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn plain_subscription_is_served() {
        let head = "GET /sub/room-1 HTTP/1.1\r\nHost: relay\r\nAccept: text/event-stream\r\n\r\n";
        let subscription = subscribe(head);
        assert_eq!(subscription.len, head.len());
        assert_eq!(subscription.channel.as_str(), "room-1");
        assert_eq!(subscription.last_event_id, None);
        assert_eq!(subscription.client, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn resume_and_forwarding_are_read() {
        let header = subscribe(
            "GET /sub/room?lastEventId=b HTTP/1.1\r\nLast-Event-ID: a\r\n\
             X-Forwarded-For: 203.0.113.9\r\n\r\n",
        );
        assert_eq!(header.last_event_id.as_deref(), Some("a"));
        assert_eq!(header.client, Some("203.0.113.9".parse().unwrap()));

        let query = subscribe("GET /sub/room?lastEventId=b HTTP/1.1\r\n\r\n");
        assert_eq!(query.last_event_id.as_deref(), Some("b"));

        // Bytes above 0x7f are allowed in a header value, but no id contains them.
        let not_ascii = subscribe("GET /sub/room HTTP/1.1\r\nLast-Event-ID: \u{e9}\r\n\r\n");
        assert_eq!(not_ascii.last_event_id.as_deref(), Some("?"));
    }

    #[test]
    fn valid_publish_is_served() {
        let request = post("Connection: keep-alive\r\n", ENVELOPE);
        let publication = publish(&format!("{request}GET /next"));
        assert_eq!(publication.len, request.len());
        assert_eq!(publication.channel.as_str(), "room");
        let compact = envelope::check_and_compact(ENVELOPE.as_bytes()).unwrap();
        assert_eq!(publication.event, compact);
        assert!(!publication.close);

        let closing = publish(&post("Connection: close\r\n", ENVELOPE));
        assert!(closing.close);
        let pretty = publish(&post("", &ENVELOPE.replace(',', ",\n ")));
        assert_eq!(pretty.event, compact);
    }

    #[test]
    fn incomplete_requests_wait() {
        let request = post("", ENVELOPE);
        for partial in [
            "G",
            "GET /s",
            "GET /sub/room HTTP/1.1\r\nHost: r",
            "POST /p",
            "GET / HTTP/1.1\r\n",
            &request[..request.len() - ENVELOPE.len() - 1],
        ] {
            assert_eq!(look(partial), Inspection::PartialHead, "{partial:?}");
        }
        assert_eq!(look(&request[..request.len() - 1]), Inspection::PartialBody);
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for (request, error) in [
            (
                "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                httparse::Error::HeaderName,
            ),
            (
                "GET /sub/room HTTP/1.1\r\nBad Header\r\n\r\n",
                httparse::Error::HeaderName,
            ),
            ("GET / HTTP/9.9\r\n\r\n", httparse::Error::Version),
            ("\x00\x01", httparse::Error::Token),
        ] {
            assert_eq!(
                look(request),
                Inspection::Rejected(Rejection::Malformed(error)),
                "{request:?}"
            );
        }
        let huge = format!(
            "GET / HTTP/1.1\r\nA: {}\r\n\r\n",
            "b".repeat(MAX_HEAD_BYTES)
        );
        for seen in [&huge[..MAX_HEAD_BYTES], &huge] {
            assert_eq!(look(seen), Inspection::Rejected(Rejection::HeadTooLarge));
        }
    }

    #[test]
    fn ambiguous_body_lengths_are_rejected() {
        let cases = [
            (
                post("Content-Length: 1\r\n", ENVELOPE),
                Rejection::DifferingLengths,
            ),
            (
                post("Transfer-Encoding: chunked\r\n", ENVELOPE),
                Rejection::LengthAndTransferEncoding,
            ),
            (
                "POST /blob/room HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 3\r\n\r\nabc"
                    .to_owned(),
                Rejection::LengthAndTransferEncoding,
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 2\r\n\r\n".to_owned(),
                Rejection::DifferingLengths,
            ),
        ];
        for (request, rejection) in cases {
            assert_eq!(
                look(&request),
                Inspection::Rejected(rejection),
                "{request:?}"
            );
        }
    }

    #[test]
    fn other_requests_go_to_actix() {
        let too_large = format!(
            r#"{{"iv":"AA==","salt":"AA==","ct":"{}"}}"#,
            "A".repeat(1024)
        );
        for request in [
            "GET / HTTP/1.1\r\n\r\n",
            "POST /sub/room HTTP/1.1\r\n\r\n",
            "GET /sub/a.b HTTP/1.1\r\n\r\n",
            "GET /sub/a%20b HTTP/1.1\r\n\r\n",
            "GET /sub/room/x HTTP/1.1\r\n\r\n",
            "GET /sub/ HTTP/1.1\r\n\r\n",
            "GET /sub/room HTTP/1.0\r\n\r\n",
            "GET /sub/room?lastEventId=%ZZ&lastEventId=1 HTTP/1.1\r\n\r\n",
            "GET /sub/room HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "GET /sub/room HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /sub/room HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET http://relay/sub/room HTTP/1.1\r\n\r\n",
            "GET /pub/room HTTP/1.1\r\n\r\n",
            &post("", "not json"),
            &post("", r#"{"iv":"AA==","salt":"AA=="}"#),
            &post("", &too_large),
            &post("Expect: 100-continue\r\n", ENVELOPE),
            &post(&format!("Content-Length: {}\r\n", ENVELOPE.len()), ENVELOPE),
            &post("", ENVELOPE).replace("POST /pub/room", "POST /pub/a.b"),
            &post("", ENVELOPE).replace("HTTP/1.1", "HTTP/1.0"),
            &post("", ENVELOPE).replace("application/json", "text/plain"),
            &post("", ENVELOPE).replace("Content-Length", "X-Length"),
            &post("", ENVELOPE).replace("Content-Length: ", "Content-Length: +"),
            &format!(
                "POST /pub/room HTTP/1.1\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{:X}\r\n{ENVELOPE}\r\n0\r\n\r\n",
                ENVELOPE.len()
            ),
        ] {
            assert_eq!(look(request), Inspection::Other, "{request:?}");
        }
        let many_headers = format!("GET /sub/room HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(look(&many_headers), Inspection::Other);
    }
}
