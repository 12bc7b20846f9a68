//! Fan-out of events to the subscribers of a channel, with history for resuming, subscriber
//! counts and the delivery figures.
//!
//! The routes only talk to a [`Broker`]. This relay runs the in-process [`MemoryBroker`]. A
//! broker that shares channels between relay processes through an external store would
//! implement the same trait, so the routes need no change when one is added. Events travel as
//! encoded server-sent event frames in [`Bytes`]: a broker encodes each event once and hands
//! the same bytes to every subscriber's queue.
//!
//! - [`event_id`]: the `<epoch>-<sequence>` ids of relayed events.
//! - [`queue`]: each subscriber's bounded queue of frames.
//! - [`memory`]: the in-process broker.

pub mod event_id;
mod memory;
pub mod queue;

pub use memory::{BrokerSettings, MemoryBroker};

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::channel::ChannelId;
use crate::connection::ConnectionCloser;
use queue::{End, Frame, FrameKind, QueueReceiver};

/// Publishes events to channels and hands out subscriptions.
pub trait Broker: Send + Sync + 'static {
    /// Adds a subscriber to a channel. The subscription ends when it is dropped.
    ///
    /// With a `last_event_id` the subscription first yields the channel's events after that
    /// id, or an `event: reset` frame when they cannot be given exactly.
    fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>>;

    /// Sends a single-line `payload` as one event to every current subscriber of `channel` and
    /// keeps it in the channel's history.
    fn publish(
        &self,
        channel: ChannelId,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Published, BrokerError>>;

    /// Returns the number of subscribers of `channel`.
    fn subscribers(&self, channel: ChannelId) -> BoxFuture<'_, Result<usize, BrokerError>>;

    /// Returns the broker's figures since it started.
    fn stats(&self) -> BrokerStats;

    /// Ends every stream after the frames already queued and rejects new subscriptions and
    /// publishes: the first step of a graceful shutdown.
    fn close(&self);
}

/// A request to join a channel.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub channel: ChannelId,
    /// The `Last-Event-ID` a reconnecting client sent, as received.
    pub last_event_id: Option<String>,
}

/// One subscriber's end of a channel: a stream of encoded frames to write to its response, in
/// order. The stream ends when the broker closes or drops the subscriber.
pub struct Subscription {
    frames: QueueReceiver,
    delivery: Arc<DeliveryCounters>,
    /// Removes the subscriber from its channel when dropped.
    _membership: Box<dyn Send + Sync>,
}

impl Subscription {
    /// Wraps a queue receiver, the counters its deliveries add to, and a guard whose drop
    /// removes the subscriber.
    pub fn new(
        frames: QueueReceiver,
        delivery: Arc<DeliveryCounters>,
        membership: Box<dyn Send + Sync>,
    ) -> Self {
        Self {
            frames,
            delivery,
            _membership: membership,
        }
    }

    /// Sets what shuts the connection down if this subscriber is dropped as stalled.
    pub fn set_closer(&self, closer: ConnectionCloser) {
        self.frames.set_closer(closer);
    }

    /// Returns why the stream ended, once it has.
    pub fn end(&self) -> Option<End> {
        self.frames.end()
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some(frame) = std::task::ready!(self.frames.poll_next(cx)) else {
            return Poll::Ready(None);
        };
        self.delivery.record(&frame);
        Poll::Ready(Some(frame.bytes))
    }
}

/// Frames handed to subscriber connections, shared by a broker and its subscriptions.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    events: AtomicU64,
    bytes: AtomicU64,
}

impl DeliveryCounters {
    fn record(&self, frame: &Frame) {
        if frame.kind == FrameKind::Event {
            self.events.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes
            .fetch_add(frame.bytes.len() as u64, Ordering::Relaxed);
    }

    /// Returns the relayed events and the bytes of all frames delivered so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event's id, as its `id:` field carries it.
    pub id: String,
    /// Number of subscribers the event was queued for.
    pub queued: usize,
}

/// A broker's figures. Counters run from the broker's start; the others are current values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrokerStats {
    /// Subscribers now, over all channels.
    pub subscribers: u64,
    /// Subscriptions opened.
    pub subscribers_opened: u64,
    /// Subscriptions whose stream has ended, for any reason.
    pub subscribers_closed: u64,
    /// Subscribers dropped because their queue was full.
    pub slow_subscribers_dropped: u64,
    /// Channels now, with subscribers or retained history.
    pub channels: u64,
    /// Events published.
    pub events_published: u64,
    /// Payload bytes of the events published.
    pub bytes_published: u64,
    /// Relayed events handed to subscriber connections.
    pub events_delivered: u64,
    /// Bytes of every frame handed to subscriber connections: events, counts and keepalives.
    pub bytes_delivered: u64,
}

/// Error from a broker operation.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the event payload cannot be sent as server-sent event data: {0}")]
    InvalidPayload(#[from] crate::sse::LineBreakInData),

    #[error("channel {channel} already has {limit} subscribers, the maximum per channel")]
    ChannelFull { channel: ChannelId, limit: usize },

    #[error("the relay is shutting down")]
    ShuttingDown,
}
