//! The first request head of a plain-HTTP connection, looked at without consuming it, to tell
//! whether the relay serves the connection itself.
//!
//! Only a plain `GET /sub/<channel>` over HTTP/1.1 qualifies: a valid channel id, no body, no
//! upgrade, and a query string that parses. Anything else, including heads that are malformed,
//! too large, or slow to arrive, goes to actix-web untouched, which serves it or answers with
//! the usual error.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::channel::ChannelId;
use crate::client::TrustedProxies;
use crate::routes::events::last_event_id;

/// Longest head looked at, in bytes. A browser's subscription sends well under 2 KiB; longer
/// heads go to actix-web, whose limits apply to them.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header lines looked at; a head with more goes to actix-web.
const MAX_HEADERS: usize = 32;

/// How long a connection has to send its first head before it goes to actix-web, whose own
/// request timeout then applies: actix-web's default client request timeout.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// First and longest pause before looking again at a head that is not complete yet. A peek
/// that returns data does not wait for more, so the wait between looks is a timer.
const FIRST_RETRY: Duration = Duration::from_millis(1);
const MAX_RETRY: Duration = Duration::from_millis(50);

/// The request path of subscriptions, up to the channel id.
const PREFIX: &[u8] = b"GET /sub/";

/// A subscription request the relay serves itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeHead {
    /// Length of the head in bytes, still waiting in the socket.
    pub len: usize,
    pub channel: ChannelId,
    /// The `Last-Event-ID` header, or else the `lastEventId` query parameter.
    pub last_event_id: Option<String>,
    /// The client address after trusted proxies, when the peer address is known.
    pub client: Option<IpAddr>,
}

/// What a look at the bytes received so far found.
#[derive(Debug, PartialEq, Eq)]
enum Inspection {
    Subscribe(SubscribeHead),
    /// The bytes so far may begin a subscription, but the head is not complete.
    Partial,
    /// Anything that is not a subscription this module serves.
    Other,
}

/// Waits for the connection's first head and returns it when it is a subscription this module
/// serves. Returns `None`, with nothing consumed, for anything else.
pub async fn peek(
    stream: &TcpStream,
    peer: Option<SocketAddr>,
    proxies: &TrustedProxies,
) -> Option<SubscribeHead> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut retry = FIRST_RETRY;
    loop {
        let look = std::future::poll_fn(|cx| {
            let mut storage = [MaybeUninit::<u8>::uninit(); MAX_HEAD_BYTES];
            let mut buffer = ReadBuf::uninit(&mut storage);
            match stream.poll_peek(cx, &mut buffer) {
                Poll::Pending => Poll::Pending,
                // A closed or failed connection is left to actix-web to close.
                Poll::Ready(Err(_)) | Poll::Ready(Ok(0)) => Poll::Ready(Inspection::Other),
                Poll::Ready(Ok(_)) => Poll::Ready(inspect(buffer.filled(), peer, proxies)),
            }
        });
        match tokio::time::timeout_at(deadline, look).await {
            Ok(Inspection::Subscribe(head)) => return Some(head),
            Ok(Inspection::Other) | Err(_) => return None,
            Ok(Inspection::Partial) => {}
        }
        if Instant::now() + retry >= deadline {
            return None;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Looks at the bytes a connection has sent so far.
fn inspect(bytes: &[u8], peer: Option<SocketAddr>, proxies: &TrustedProxies) -> Inspection {
    let start = bytes.len().min(PREFIX.len());
    if bytes[..start] != PREFIX[..start] {
        return Inspection::Other;
    }

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => match subscription(&request, len, peer, proxies) {
            Some(head) => Inspection::Subscribe(head),
            None => Inspection::Other,
        },
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD_BYTES => Inspection::Partial,
        Ok(httparse::Status::Partial) | Err(_) => Inspection::Other,
    }
}

/// Returns the subscription a complete head asks for, if this module serves it.
fn subscription(
    request: &httparse::Request<'_, '_>,
    len: usize,
    peer: Option<SocketAddr>,
    proxies: &TrustedProxies,
) -> Option<SubscribeHead> {
    if request.version != Some(1) {
        return None;
    }
    let target = request.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let channel = ChannelId::parse(path.strip_prefix("/sub/")?).ok()?;

    let mut last_event_id_header = None;
    let mut forwarded = Vec::new();
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("last-event-id") {
            // The first value wins, as with actix-web's `HeaderMap::get`.
            last_event_id_header.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded.push(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.trim_ascii() != b"0" {
                return None;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return None;
        }
    }

    // An invalid query goes to actix-web, which answers 400 with the reason.
    let last_event_id = last_event_id(last_event_id_header, query).ok()?;
    let client = peer.map(|peer| proxies.resolve(peer.ip(), forwarded.into_iter()));
    Some(SubscribeHead {
        len,
        channel,
        last_event_id,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Option<SocketAddr> {
        Some("10.0.0.1:4000".parse().unwrap())
    }

    fn look(head: &str) -> Inspection {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        inspect(head.as_bytes(), peer(), &proxies)
    }

    fn subscribe(head: &str) -> SubscribeHead {
        match look(head) {
            Inspection::Subscribe(subscription) => subscription,
            other => panic!("{head:?} is not a subscription: {other:?}"),
        }
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
    fn incomplete_heads_wait() {
        for partial in ["G", "GET /s", "GET /sub/room HTTP/1.1\r\nHost: r"] {
            assert_eq!(look(partial), Inspection::Partial, "{partial:?}");
        }
    }

    #[test]
    fn other_requests_go_to_actix() {
        for head in [
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
            "GET /sub/room HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /sub/room HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET http://relay/sub/room HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(look(head), Inspection::Other, "{head:?}");
        }
        let many_headers = format!("GET /sub/room HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(look(&many_headers), Inspection::Other);
        let huge = format!(
            "GET /sub/room HTTP/1.1\r\nA: {}",
            "b".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(look(&huge[..MAX_HEAD_BYTES]), Inspection::Other);
    }
}
