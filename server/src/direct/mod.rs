//! Event streams served straight from the socket, without actix-http's per-connection state.
//!
//! actix-http keeps an 8 KiB read buffer and an 8 KiB write buffer for every HTTP/1 connection
//! (`HW_BUFFER_SIZE` in actix-http 3.20's h1 dispatcher, not configurable), more than the rest
//! of an idle subscriber costs together. So on plain HTTP the relay first looks at each new
//! connection's request head without consuming it ([`head`]). When it is a subscription, a
//! [`Writer`] that owns the socket serves it, with the same headers and chunked framing as
//! actix-web, and keeps no buffer while the stream is idle. Every other connection goes to
//! actix-web's HTTP service untouched, and actix-web serves `/sub` itself on it: on TLS
//! connections, which never come here, and on a kept-alive connection after other requests.
//!
//! Requests that limits or the broker reject also go to actix-web unconsumed, which checks
//! them again and answers with the same errors, counts and log lines as any other request.

mod head;
mod writer;

pub use writer::Writer;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;

use actix_http::Protocol;
use actix_http::error::DispatchError;
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use bytes::Bytes;
use tokio::net::TcpStream;

use crate::broker::SubscribeRequest;
use crate::client::ClientKey;
use crate::routes::events::{RETRY_MILLIS, log_opened};
use crate::routes::{AppState, SECURITY_HEADERS};
use crate::sse;
use head::{MAX_HEAD_BYTES, SubscribeHead};

/// Builds the service of one worker for plain-HTTP connections, around `http`, actix-web's
/// HTTP service for the same app, which gets every connection this module does not serve.
pub fn service_factory<F>(
    http: F,
    state: AppState,
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
    let state = Rc::new(state);
    fn_factory(move || {
        let http = http.new_service(());
        let state = state.clone();
        async move {
            let http = Rc::new(http.await?);
            Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                serve(stream, http.clone(), state.clone())
            }))
        }
    })
}

/// Serves one accepted connection, here or through actix-web.
async fn serve<H>(stream: TcpStream, http: Rc<H>, state: Rc<AppState>) -> Result<(), ()>
where
    H: Service<(TcpStream, Protocol, Option<SocketAddr>), Response = (), Error = DispatchError>,
{
    let peer = stream.peer_addr().ok();
    let stream = match head::peek(&stream, peer, &state.proxies).await {
        Some(head) => match open(stream, head, &state).await {
            Opened::Stream(writer) => {
                writer.await;
                return Ok(());
            }
            Opened::Declined(stream) => stream,
            Opened::Failed => return Ok(()),
        },
        None => stream,
    };
    // Boxed, because actix-http's connection state is large, and the subscribers served here
    // should not carry its size in their own futures.
    let _ = Box::pin(http.call((stream, Protocol::Http1, peer))).await;
    Ok(())
}

/// The outcome of [`open`].
enum Opened {
    Stream(Writer),
    /// A limit or the broker rejected the subscription; the head is still unread.
    Declined(TcpStream),
    /// The connection failed while its head was read.
    Failed,
}

/// Takes a stream permit and a subscription for `head`, then consumes the head and prepares
/// the response.
async fn open(stream: TcpStream, head: SubscribeHead, state: &AppState) -> Opened {
    let Ok(permit) = state.streams.acquire(head.client.map(ClientKey::of)) else {
        return Opened::Declined(stream);
    };
    let request = SubscribeRequest {
        channel: head.channel.clone(),
        last_event_id: head.last_event_id,
    };
    let Ok(subscription) = state.broker.subscribe(request).await else {
        return Opened::Declined(stream);
    };
    if consume(&stream, head.len).await.is_err() {
        return Opened::Failed;
    }

    // Frames go out as soon as they are written, each batch in one segment where it fits,
    // rather than waiting for the previous segment's acknowledgement.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot disable Nagle's algorithm on an event stream");
    }
    log_opened(state, &head.channel, head.client);
    Opened::Stream(Writer::new(stream, subscription, opening(), permit))
}

/// Reads and drops the first `len` bytes of `stream`: the request head, already peeked.
async fn consume(stream: &TcpStream, mut len: usize) -> io::Result<()> {
    while len > 0 {
        stream.readable().await?;
        let mut buffer = [0u8; MAX_HEAD_BYTES];
        match stream.try_read(&mut buffer[..len.min(MAX_HEAD_BYTES)]) {
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
         x-accel-buffering: no\r\n",
    );
    for (name, value) in SECURITY_HEADERS {
        text.push_str(&name.to_ascii_lowercase());
        text.push_str(": ");
        text.push_str(value);
        text.push_str("\r\n");
    }
    text.push_str("transfer-encoding: chunked\r\nconnection: close\r\ndate: ");
    text.push_str(&httpdate::fmt_http_date(SystemTime::now()));
    text.push_str("\r\n\r\n");

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
}
