//! The relay's two frequent requests served straight from the socket, without actix-http's
//! per-connection state.
//!
//! actix-http keeps an 8 KiB read buffer and an 8 KiB write buffer for every HTTP/1 connection
//! (`HW_BUFFER_SIZE` in actix-http 3.20's h1 dispatcher, not configurable), more than the rest
//! of an idle subscriber costs together. Its handling of a request also costs about twice the
//! CPU time of the publish itself. So on plain HTTP the relay looks at each request of a
//! connection before actix-web reads it, without consuming it ([`request`]):
//!
//! - a subscription is served by a [`Writer`] that owns the socket, with the same headers and
//!   chunked framing as actix-web, and keeps no buffer while the stream is idle;
//! - a publish with a valid envelope is published and answered here, and the connection stays
//!   open for the next request;
//! - at the first other request, the connection goes to actix-web's HTTP service with that
//!   request still unread, and actix-web serves it and the rest of the connection, `/sub` and
//!   `/pub` included. TLS connections never come here.
//!
//! A request that a limit or the broker rejects also goes to actix-web unread, which checks it
//! again and answers with the same errors, counts and log lines as for any other request. A
//! request head that is malformed, too large or too slow is answered here with a one-line
//! error, which actix-web's dispatcher would send with an empty body, and the connection closes.

mod request;
mod writer;

pub use writer::Writer;

use std::cell::RefCell;
use std::fmt::Write;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_http::Protocol;
use actix_http::error::DispatchError;
use actix_server::GracefulShutdownSignal;
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use bytes::Bytes;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::broker::SubscribeRequest as BrokerSubscribeRequest;
use crate::client::ClientKey;
use crate::routes::events::{RETRY_MILLIS, log_opened};
use crate::routes::{AppState, SECURITY_HEADERS};
use crate::sse;
use request::{
    MAX_HEAD_BYTES, Peeked, PublishRequest, Rejection, Request, Rules, SubscribeRequest,
};

/// Time a connection has to send a complete request, and an idle kept-alive connection to
/// begin its next one: actix-web's default client request and keep-alive timeouts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a publish response may take to be written before the connection is closed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a rejected client has to close its side after the error response. Closing sooner, with
/// request bytes still unread, would reset the connection before the client reads the response.
/// It is actix-web's client disconnect timeout.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes read at a time when a request is consumed.
const READ_CHUNK: usize = 8 * 1024;

/// The state that the connections of one worker share.
struct Worker<H> {
    /// actix-web's HTTP service for the same app.
    http: H,
    state: AppState,
    shutdown: GracefulShutdownSignal,
}

/// Builds the service of one worker for plain-HTTP connections, around `http`, actix-web's
/// HTTP service for the same app, which gets every request this module does not serve.
/// `shutdown` closes kept-alive connections when a graceful shutdown starts.
pub fn service_factory<F>(
    http: F,
    state: AppState,
    shutdown: GracefulShutdownSignal,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    F: ServiceFactory<
            (TcpStream, Protocol, Option<SocketAddr>),
            Config = (),
            Response = (),
            Error = DispatchError,
            InitError = (),
        > + 'static,
    F::Service: 'static,
{
    fn_factory(move || {
        let http = http.new_service(());
        let state = state.clone();
        let shutdown = shutdown.clone();
        async move {
            let worker = Rc::new(Worker {
                http: http.await?,
                state,
                shutdown,
            });
            Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                serve(stream, worker.clone())
            }))
        }
    })
}

/// Serves one accepted connection, here or through actix-web.
async fn serve<H>(mut stream: TcpStream, worker: Rc<Worker<H>>) -> Result<(), ()>
where
    H: Service<(TcpStream, Protocol, Option<SocketAddr>), Response = (), Error = DispatchError>,
{
    let peer = stream.peer_addr().ok();
    let state = &worker.state;
    let rules = Rules {
        proxies: &state.proxies,
        max_publish_bytes: state.max_publish_bytes,
    };

    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let stream = match request::peek(&stream, peer, &rules, deadline).await {
        Peeked::Request(Request::Subscribe(request)) => match open(stream, request, state).await {
            Opened::Stream(writer) => {
                writer.await;
                return Ok(());
            }
            Opened::Declined(stream) => stream,
            Opened::Failed => return Ok(()),
        },
        Peeked::Request(Request::Publish(request)) => {
            match publish(&mut stream, request, state).await {
                // Boxed, so that the futures of subscribers do not carry the size of a
                // kept-alive connection's state.
                Answered::KeepAlive => match Box::pin(keep_alive(stream, peer, &worker)).await {
                    Some(stream) => stream,
                    None => return Ok(()),
                },
                Answered::Close => return Ok(()),
                Answered::Declined => stream,
            }
        }
        Peeked::Rejected(rejection) => {
            // Boxed too: the rejection's state would otherwise grow the future of every
            // connection, idle subscribers included.
            Box::pin(reject(stream, rejection, state)).await;
            return Ok(());
        }
        // actix-web sends an idle connection the same 408 as its own, and reads a slow body
        // with its routes' timeouts.
        Peeked::Other | Peeked::Idle | Peeked::BodyPending => stream,
        Peeked::Closed => return Ok(()),
    };

    // Boxed for the same reason: actix-http's connection state is large.
    let _ = Box::pin(worker.http.call((stream, Protocol::Http1, peer))).await;
    Ok(())
}

/// Serves the requests that follow a publish on a kept-alive connection. Returns the
/// connection when its next request goes to actix-web, or `None` once it is done.
async fn keep_alive<H>(
    mut stream: TcpStream,
    peer: Option<SocketAddr>,
    worker: &Worker<H>,
) -> Option<TcpStream> {
    let state = &worker.state;
    let rules = Rules {
        proxies: &state.proxies,
        max_publish_bytes: state.max_publish_bytes,
    };
    // A kept-alive connection closes when a shutdown starts, as actix-web's do.
    let shutdown = worker.shutdown.notified();
    tokio::pin!(shutdown);

    loop {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let peeked = tokio::select! {
            biased;
            () = &mut shutdown => return None,
            peeked = request::peek(&stream, peer, &rules, deadline) => peeked,
        };
        match peeked {
            Peeked::Request(Request::Subscribe(request)) => {
                return match open(stream, request, state).await {
                    Opened::Stream(writer) => {
                        writer.await;
                        None
                    }
                    Opened::Declined(stream) => Some(stream),
                    Opened::Failed => None,
                };
            }
            Peeked::Request(Request::Publish(request)) => {
                match publish(&mut stream, request, state).await {
                    Answered::KeepAlive => {}
                    Answered::Close => return None,
                    Answered::Declined => return Some(stream),
                }
            }
            Peeked::Rejected(rejection) => {
                reject(stream, rejection, state).await;
                return None;
            }
            // An idle connection is closed, as actix-web closes it.
            Peeked::Other | Peeked::BodyPending => return Some(stream),
            Peeked::Closed | Peeked::Idle => return None,
        }
    }
}

/// The outcome of [`open`].
enum Opened {
    Stream(Writer),
    /// A limit or the broker rejected the subscription; the request is still unread.
    Declined(TcpStream),
    /// The connection failed while its request was read.
    Failed,
}

/// Takes a stream permit and a subscription for `request`, then consumes the request and
/// prepares the response.
async fn open(stream: TcpStream, request: SubscribeRequest, state: &AppState) -> Opened {
    let Ok(permit) = state.streams.acquire(request.client.map(ClientKey::of)) else {
        return Opened::Declined(stream);
    };
    let subscribe = BrokerSubscribeRequest {
        channel: request.channel.clone(),
        last_event_id: request.last_event_id,
    };
    let Ok(subscription) = state.broker.subscribe(subscribe).await else {
        return Opened::Declined(stream);
    };
    if consume(&stream, request.len).await.is_err() {
        return Opened::Failed;
    }

    // Frames go out as soon as they are written, each batch in one segment where it fits,
    // rather than waiting for the previous segment's acknowledgement.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot disable Nagle's algorithm on an event stream");
    }
    log_opened(state, &request.channel, request.client);
    Opened::Stream(Writer::new(stream, subscription, opening(), permit))
}

/// The outcome of [`publish`].
enum Answered {
    KeepAlive,
    Close,
    /// The rate limit or the broker rejected the publish; the request is still unread.
    Declined,
}

/// Publishes a checked envelope, consumes the request and writes the 202 response.
async fn publish(stream: &mut TcpStream, request: PublishRequest, state: &AppState) -> Answered {
    if let Some(client) = request.client
        && state
            .publish_rate
            .check(ClientKey::of(client), std::time::Instant::now())
            .is_err()
    {
        return Answered::Declined;
    }
    // NOTE: a publish the broker rejects (only while shutting down) has taken a rate token
    // here, and actix-web takes another when it responds to the request.
    let Ok(published) = state.broker.publish(request.channel, request.event).await else {
        return Answered::Declined;
    };
    if consume(stream, request.len).await.is_err() {
        return Answered::Close;
    }

    let response = accepted(&published, request.close);
    let written = tokio::time::timeout(RESPONSE_TIMEOUT, stream.write_all(&response)).await;
    match written {
        Ok(Ok(())) if !request.close => Answered::KeepAlive,
        _ => Answered::Close,
    }
}

/// Responds to a rejected request with its error, then closes the connection.
async fn reject(mut stream: TcpStream, rejection: Rejection, state: &AppState) {
    let (status, message) = match rejection {
        Rejection::Malformed(error) => (
            "400 Bad Request",
            format!("invalid HTTP request: {error}; send an HTTP/1.1 request"),
        ),
        Rejection::LengthAndTransferEncoding => (
            "400 Bad Request",
            "the request has both Content-Length and Transfer-Encoding; send only one of them"
                .to_owned(),
        ),
        Rejection::DifferingLengths => (
            "400 Bad Request",
            "the request has Content-Length values that differ; send one Content-Length".to_owned(),
        ),
        Rejection::HeadTooLarge => (
            "431 Request Header Fields Too Large",
            format!("the request head is over {MAX_HEAD_BYTES} bytes, the maximum"),
        ),
        Rejection::HeadTimedOut => {
            state
                .rejections
                .requests_timed_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (
                "408 Request Timeout",
                format!(
                    "the request head did not arrive within {}; send it at once",
                    humantime::format_duration(REQUEST_TIMEOUT)
                ),
            )
        }
    };
    tracing::debug!(status, %message, "request rejected before it was read");

    let response = error_response(status, &message);
    let written = tokio::time::timeout(RESPONSE_TIMEOUT, stream.write_all(&response)).await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    // Closing a socket with unread input resets the connection, which can discard the
    // response before the client reads it. So end the output, then read until the client
    // closes its side, for a short time.
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buffer = [0u8; 512];
        while let Ok(read) = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// Returns an error response with a one-line plain-text body that closes the connection.
fn error_response(status: &str, message: &str) -> Bytes {
    let mut text = String::with_capacity(512 + message.len());
    // `fmt::Write` for String never returns an error.
    let _ = write!(
        text,
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\
         content-type: text/plain; charset=utf-8\r\n",
        message.len() + 1
    );
    push_common_headers(&mut text);
    text.push_str(message);
    text.push('\n');
    Bytes::from(text)
}

/// The 202 response body, as `crate::routes::publish` writes it.
#[derive(Serialize)]
struct Accepted<'a> {
    id: &'a str,
    queued: usize,
}

/// Returns the 202 response to a publish: the headers actix-web sends for the route in
/// `crate::routes::publish`, in lower case as actix-web writes them.
fn accepted(published: &crate::broker::Published, close: bool) -> Bytes {
    let body = serde_json::to_string(&Accepted {
        id: &published.id,
        queued: published.queued,
    })
    // serde_json cannot fail on a struct of a string and a number, so the empty default is
    // never sent.
    .unwrap_or_default();
    let mut text = String::with_capacity(512 + body.len());
    // `fmt::Write` for String never returns an error.
    let _ = write!(
        text,
        "HTTP/1.1 202 Accepted\r\ncontent-length: {}\r\n",
        body.len()
    );
    if close {
        text.push_str("connection: close\r\n");
    }
    text.push_str("content-type: application/json\r\n");
    push_common_headers(&mut text);
    text.push_str(&body);
    Bytes::from(text)
}

/// Appends the security headers, the date and the blank line that ends a response head.
fn push_common_headers(text: &mut String) {
    for (name, value) in SECURITY_HEADERS {
        text.push_str(&name.to_ascii_lowercase());
        text.push_str(": ");
        text.push_str(value);
        text.push_str("\r\n");
    }
    text.push_str("date: ");
    DATE.with_borrow_mut(|(second, date)| {
        let now = SystemTime::now();
        let current = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if *second != current || date.is_empty() {
            *date = httpdate::fmt_http_date(now);
            *second = current;
        }
        text.push_str(date);
    });
    text.push_str("\r\n\r\n");
}

thread_local! {
    /// The `date` header value and the second it is for, formatted once a second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Reads and drops the first `len` bytes of `stream`: the request head, already peeked.
async fn consume(stream: &TcpStream, mut len: usize) -> io::Result<()> {
    while len > 0 {
        stream.readable().await?;
        // Left uninitialized, because the bytes are dropped. Zeroing 8 KiB for a head of a few
        // hundred bytes was 11% of the relay's instructions in a callgrind profile of publishing.
        let mut buffer = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut unread = &mut buffer[..len.min(READ_CHUNK)];
        match stream.try_read_buf(&mut unread) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => len -= read,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Returns the response head and the first chunk, the retry hint: the headers actix-web
/// sends for the route in `crate::routes::events`, in lower case as actix-web writes them.
fn opening() -> Bytes {
    let mut text = String::with_capacity(512);
    text.push_str(
        "HTTP/1.1 200 OK\r\n\
         content-type: text/event-stream\r\n\
         cache-control: no-cache, no-store\r\n\
         x-accel-buffering: no\r\n\
         transfer-encoding: chunked\r\n\
         connection: close\r\n",
    );
    push_common_headers(&mut text);

    let retry = sse::retry(RETRY_MILLIS);
    text.push_str(&format!("{:X}\r\n", retry.len()));
    // The retry frame is ASCII, built by `sse::retry` from a number.
    text.push_str(&String::from_utf8_lossy(&retry));
    text.push_str("\r\n");
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_matches_actix_response() {
        let opening = opening();
        let text = std::str::from_utf8(&opening).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
        let headers: Vec<(&str, &str)> = lines.map(|l| l.split_once(": ").unwrap()).collect();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("no {name} header"))
        };
        assert_eq!(value("content-type"), "text/event-stream");
        assert_eq!(value("cache-control"), "no-cache, no-store");
        assert_eq!(value("x-accel-buffering"), "no");
        assert_eq!(value("transfer-encoding"), "chunked");
        assert_eq!(value("connection"), "close");
        assert!(value("date").ends_with(" GMT"));
        for (name, expected) in SECURITY_HEADERS {
            assert_eq!(value(&name.to_ascii_lowercase()), expected);
        }
        assert_eq!(body, "D\r\nretry: 2000\n\n\r\n");
    }

    #[test]
    fn accepted_matches_actix_response() {
        let published = crate::broker::Published {
            id: "00000000000000ab-7".to_owned(),
            queued: 3,
        };
        let response = accepted(&published, false);
        let text = std::str::from_utf8(&response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, r#"{"id":"00000000000000ab-7","queued":3}"#);
        assert!(head.starts_with("HTTP/1.1 202 Accepted\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains("\r\nx-content-type-options: nosniff\r\n"));
        assert!(!head.contains("connection:"));

        let closing = accepted(&published, true);
        assert!(
            std::str::from_utf8(&closing)
                .unwrap()
                .contains("\r\nconnection: close\r\n")
        );
    }
}
