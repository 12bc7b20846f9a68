//! `GET /sub/{channel}`: a channel's events as a server-sent event stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Interval, MissedTickBehavior};

use super::AppState;
use super::error::ApiError;
use crate::broker::Subscription;
use crate::channel::ChannelId;
use crate::sse;

/// Reconnection delay suggested to browsers, in milliseconds.
pub const RETRY_MILLIS: u64 = 2_000;

/// Opens an event stream on a channel.
pub async fn subscribe(
    state: web::Data<AppState>,
    channel: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let channel = ChannelId::parse(&channel)?;
    let subscription = state.broker.subscribe(channel).await?;

    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + state.keepalive,
        state.keepalive,
    );
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = EventStream {
        opening: Some(sse::retry(RETRY_MILLIS)),
        subscription,
        keepalive,
    };

    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // Tells nginx and similar proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// The body of one subscriber's response: the opening frame, then the broker's frames with
/// keepalive comments in idle periods. Dropping it ends the subscription.
struct EventStream {
    opening: Option<Bytes>,
    subscription: Subscription,
    keepalive: Interval,
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(frame) = self.opening.take() {
            return Poll::Ready(Some(Ok(frame)));
        }

        match self.subscription.frames.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                self.keepalive.reset();
                return Poll::Ready(Some(Ok(frame)));
            }
            // The broker dropped this subscriber as stalled: end the response.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }

        match self.keepalive.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(sse::KEEPALIVE))),
            Poll::Pending => Poll::Pending,
        }
    }
}
