//! `GET /sub/{channel}`: a channel's events as a server-sent event stream.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::broker::event_id::MAX_EVENT_ID_LEN;
use crate::broker::{Batch, SubscribeRequest, Subscription};
use crate::channel::ChannelId;
use crate::client::{ClientKey, visible_ascii};
use crate::connection::ConnectionSocket;
use crate::limits::StreamPermit;
use crate::sse;

/// Reconnection delay suggested to browsers, in milliseconds.
pub const RETRY_MILLIS: u64 = 2_000;

/// The query parameters of a subscription.
#[derive(Deserialize)]
struct ResumeQuery {
    /// The last event id, for clients that open a new EventSource instead of letting the
    /// browser reconnect (which sends the `Last-Event-ID` header).
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// Opens an event stream on a channel.
///
/// On plain HTTP, [`crate::direct`] serves most subscriptions itself. This route serves the
/// others: those over TLS, and those on a connection after a request that went to actix-web.
pub async fn subscribe(
    state: web::Data<AppState>,
    channel: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let channel = ChannelId::parse(&channel)?;
    let header = request.headers().get("last-event-id").map(|v| v.as_bytes());
    let last_event_id = last_event_id(header, request.query_string())?;

    let address = state.client_address(&request);
    let permit = state
        .streams
        .acquire(address.map(ClientKey::of))
        .map_err(|e| state.rejected(e.into(), address))?;

    let mut subscription = state
        .broker
        .subscribe(SubscribeRequest {
            channel: channel.clone(),
            last_event_id,
        })
        .await
        .map_err(|e| state.rejected(e.into(), address))?;
    if let Some(socket) = request.conn_data::<ConnectionSocket>() {
        subscription.set_closer(socket.closer());
    }
    log_opened(&state, &channel, address);

    let stream = EventStream {
        opening: Some(sse::retry(RETRY_MILLIS)),
        subscription,
        batch: Batch::new(),
        ready: Vec::new().into_iter(),
        _permit: permit,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // Tells nginx and similar proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        // The connection closes with the stream, so a relay that ends streams for a shutdown
        // keeps no idle connections open and the browser reconnects on a new one.
        .force_close()
        .streaming(stream))
}

/// Logs a new stream, with the client address only when the operator allowed it.
pub fn log_opened(state: &AppState, channel: &ChannelId, address: Option<IpAddr>) {
    match (state.log_client_addresses, address) {
        (true, Some(client)) => tracing::debug!(%channel, %client, "event stream opened"),
        _ => tracing::debug!(%channel, "event stream opened"),
    }
}

/// Returns the id a reconnecting client last received: the `Last-Event-ID` header value, or else
/// the `lastEventId` parameter of the query string. An empty value counts as none.
pub fn last_event_id(header: Option<&[u8]>, query: &str) -> Result<Option<String>, ApiError> {
    // A header value that is not text cannot be one of the relay's ids. It still requests a
    // resume, so it is passed on and the broker returns a reset notice for it.
    let from_header = header.map(|value| visible_ascii(value).unwrap_or("?").to_owned());
    let id = match from_header {
        Some(id) => Some(id),
        None => {
            web::Query::<ResumeQuery>::from_query(query)
                .map_err(|e| ApiError::InvalidQuery {
                    reason: e.to_string(),
                })?
                .into_inner()
                .last_event_id
        }
    };
    // Ids longer than any the relay issues are truncated, so they stay unknown at bounded
    // cost.
    Ok(id
        .filter(|id| !id.is_empty())
        .map(|id| id.chars().take(MAX_EVENT_ID_LEN + 1).collect()))
}

/// The body of one subscriber's response: the retry hint, then the broker's frames. Dropping
/// it ends the subscription and releases the stream's place in the limits.
struct EventStream {
    opening: Option<Bytes>,
    subscription: Subscription,
    batch: Batch,
    /// Frames taken from the broker and not yet handed to actix-web.
    ready: std::vec::IntoIter<Bytes>,
    _permit: StreamPermit,
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(frame) = self.opening.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        // actix polls again at once after each frame and gathers everything ready into one
        // write, so frames that queued up while the socket was busy leave together.
        if let Some(frame) = self.ready.next() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let this = &mut *self;
        match this.subscription.poll_frames(cx, &mut this.batch) {
            Poll::Ready(Ok(_)) => {
                this.ready = this.batch.take_frames().into_iter();
                Poll::Ready(this.ready.next().map(Ok))
            }
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_id_read_leniently() {
        assert_eq!(
            last_event_id(None, "lastEventId=a-1&other=x").unwrap(),
            Some("a-1".to_owned())
        );
        // Malformed percent escapes stay as they are, and other parameters are ignored.
        assert_eq!(
            last_event_id(None, "lastEventId=%ZZ&%%%").unwrap(),
            Some("%ZZ".to_owned())
        );
        assert_eq!(last_event_id(None, "lastEventId=").unwrap(), None);
        // The header wins over the query.
        assert_eq!(
            last_event_id(Some(b"h-2"), "lastEventId=q-1").unwrap(),
            Some("h-2".to_owned())
        );
    }

    #[test]
    fn query_id_given_twice_rejected() {
        let error = last_event_id(None, "lastEventId=a&lastEventId=b").unwrap_err();
        assert!(error.to_string().starts_with("invalid query string"));
    }
}
